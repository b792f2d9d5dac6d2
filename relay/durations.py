"""Durations as operators write them: `500ms`, `90s`, `15m`, `24h`, `7d`, or a bare number
of seconds; one grammar for the environment, the config file and the `relay` command.
"""

from __future__ import annotations

import re

# A decimal number, optional spaces, then a unit (none: seconds). Nothing else: no
# signs, no exponents, no compound forms such as 1h30m.
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_seconds(text: str) -> float:
    """`text` in seconds; ValueError when it is not a duration. Surrounding spaces are
    ignored, and zero is a duration (callers that need more say so)."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_microseconds(text: str) -> int:
    """`text` in whole microseconds (the store's unit); ValueError as parse_seconds."""
    return int(parse_seconds(text) * 1_000_000)
