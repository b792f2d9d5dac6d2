"""The relay process's own wall clock, used only where no store clock exists.

The memory engine reads it; cursors never come from it when Redis is the store.
`RELAY_CLOCK_SKEW_SECONDS` shifts it: a test hook that proves clock independence.
"""

from __future__ import annotations

import os
import time

_skew_us = int(float(os.environ.get("RELAY_CLOCK_SKEW_SECONDS", "0") or 0) * 1_000_000)


def now_us() -> int:
    return time.time_ns() // 1000 + _skew_us


def set_skew(seconds: float) -> None:
    """Shift this process's clock (tests only)."""
    global _skew_us
    _skew_us = int(seconds * 1_000_000)
