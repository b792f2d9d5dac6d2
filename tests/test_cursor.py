"""Cursor parsing and formatting: every old format, exact round trips, garbage is a 400."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.cursor import format_cursor, parse_cursor
from relay.errors import BadLastCheck

INSTANT = 1752897190655739  # 2025-07-19T03:53:10.655739+00:00


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-07-19T03:53:10.655739+00:00", INSTANT),
        ("2025-07-19T03:53:10.655739 00:00", INSTANT),  # `+` decoded as a space
        ("2025-07-19T03:53:10.655739Z", INSTANT),
        ("2025-07-19T03:53:10.655739", INSTANT),  # no offset: UTC
        ("2025-07-19T00:53:10.655739-03:00", INSTANT),
        ("2025-07-19T06:23:10.655739+02:30", INSTANT),
        ("2025-07-19T03:53:10.6557+00:00", INSTANT - 39),
        ("2025-07-19T03:53:10.6Z", 1752897190600000),
        ("2025-07-19T03:53:10Z", 1752897190000000),
        ("2025-07-18T23:00:00Z", 1752879600000000),  # the seed's own curl
        ("2025-07-19 03:53:10.655739+00:00", INSTANT),
        ("1752897190", 1752897190000000),  # epoch seconds
        ("1752897190.655739", INSTANT),
        ("1752897190655", 1752897190655000),  # epoch milliseconds
        (str(INSTANT), INSTANT),  # our own microsecond cursor as a number
        ("  2025-07-19T03:53:10.655739+00:00 ", INSTANT),
    ],
)
def test_every_format_the_old_clients_send_means_the_right_instant(text, expected):
    assert parse_cursor(text) == expected


@pytest.mark.parametrize("text", [None, "", "null", "undefined", "NULL", " "])
def test_absent_values_mean_from_now(text):
    assert parse_cursor(text) is None


def test_wire_format_is_exact():
    assert format_cursor(INSTANT) == "2025-07-19T03:53:10.655739+00:00"
    assert format_cursor(1752897190000000) == "2025-07-19T03:53:10.000000+00:00"


@given(st.integers(min_value=0, max_value=253402300799999999))
def test_cursors_round_trip_to_the_same_integer(cursor):
    assert parse_cursor(format_cursor(cursor)) == cursor


@given(st.datetimes(timezones=st.timezones()))
def test_any_aware_datetime_parses_to_its_instant(moment):
    try:
        expected = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    except OverflowError:
        return
    assert parse_cursor(moment.isoformat()) == max(0, expected)


@given(st.text(max_size=100))
def test_garbage_is_rejected_cleanly_or_parsed(text):
    try:
        result = parse_cursor(text)
    except BadLastCheck as error:
        assert error.status == 400 and error.detail
        return
    assert result is None or (isinstance(result, int) and result >= 0)


@given(st.integers(min_value=0, max_value=253_402_300_799_999_999))
def test_the_cached_formatter_writes_what_isoformat_writes(cursor):
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=cursor)
    assert format_cursor(cursor) == moment.isoformat(timespec="microseconds")
