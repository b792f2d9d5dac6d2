"""Timestamps as cursors: integer microseconds on the inside, ISO 8601 on the wire.

Parsing accepts every `last_check` the old frontends send (see DESIGN.md).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NewType, cast

from relay.errors import BadLastCheck

Cursor = NewType("Cursor", int)  # microseconds since the Unix epoch, as the store assigned them
# A store reply's or a hint's number (bytes, text or int) as the cursor it is: int() itself,
# typed, since calling Cursor() too would cost a call per event on the read path.
to_cursor = cast("Callable[[bytes | str | int], Cursor]", int)
ZERO = Cursor(0)  # the epoch: before every event

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_MAX_TEXT = 64
# What an old client sends before it has ever had an answer: "start from now".
_FROM_NOW = frozenset({"", "null", "undefined", "none"})
# A `+` in an unencoded query string arrives as a space: "...655739 00:00".
_SPACE_FOR_PLUS = re.compile(r"(?P<head>.*\d) (?P<offset>\d{2}(?::?\d{2})?)")
_EPOCH_NUMBER = re.compile(r"\d{1,17}(?:\.\d{1,9})?")


def format_cursor(cursor: Cursor) -> str:
    """`2025-07-19T03:54:04.574010+00:00`: always six digits and `+00:00`."""
    seconds, micros = divmod(cursor, 1_000_000)
    prefix = _SECOND_PREFIXES.get(seconds)
    if prefix is None:
        prefix = _second_prefix(seconds)
    return f"{prefix}.{micros:06d}+00:00"


# Every event of a poll or an SSE batch is formatted (7% of a 10-event poll went to
# datetime arithmetic and isoformat); events of one second share their date-time prefix.
_SECOND_PREFIXES: dict[int, str] = {}


def _second_prefix(seconds: int) -> str:
    if len(_SECOND_PREFIXES) >= 4096:
        _SECOND_PREFIXES.clear()
    prefix = (_EPOCH + timedelta(seconds=seconds)).isoformat(timespec="seconds")[:-6]
    _SECOND_PREFIXES[seconds] = prefix
    return prefix


def parse_cursor(text: str | None) -> Cursor | None:
    """Parse a `last_check`; None means "from now". Raises BadLastCheck."""
    if text is None:
        return None
    if len(text) > _MAX_TEXT:
        return _parse_text(text)  # refused or padded: not worth remembering
    return _remembered(text)


def _parse_text(text: str) -> Cursor | None:
    value = text.strip()
    if value.lower() in _FROM_NOW:
        return None
    if len(value) > _MAX_TEXT:
        raise BadLastCheck(f"last_check is longer than {_MAX_TEXT} characters")
    if _EPOCH_NUMBER.fullmatch(value):
        return _from_epoch_number(value)
    return _from_iso(value)


# Pollers at an account's head all send the same few cursors, every few seconds; parsing
# is pure, so short texts' answers are remembered (errors are raised, never cached).
_remembered = functools.lru_cache(maxsize=4096)(_parse_text)


def _from_epoch_number(value: str) -> Cursor:
    number = float(value) if "." in value else int(value)
    # Seconds until the year 5138, then milliseconds, then our own microsecond cursors.
    if number < 1e11:
        return Cursor(round(number * 1_000_000))
    if number < 1e14:
        return Cursor(round(number * 1_000))
    return Cursor(int(number))


def _from_iso(value: str) -> Cursor:
    spaced = _SPACE_FOR_PLUS.fullmatch(value)
    if spaced:
        value = f"{spaced['head']}+{spaced['offset']}"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadLastCheck(
            "last_check must be an ISO 8601 timestamp (e.g. 2025-07-19T03:54:04.574010+00:00) "
            "or epoch seconds/milliseconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        delta = moment - _EPOCH
    except OverflowError:
        raise BadLastCheck("last_check is out of range") from None
    return Cursor(max(0, delta // _ONE_US))
