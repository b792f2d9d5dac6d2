"""Log lines that a flood would multiply: the first few of each window, then a count.

Refusals are logged at info so an operator sees who is being turned away; under a flood
(6 000 forged webhooks in 6 s wrote 6 100 lines) that becomes the flood itself, on disk.
So the first `burst` lines of every `window` seconds are written as they come, the rest
are counted, and one summary line per window says how many were left out, by status.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any


class SampledLog:
    def __init__(self, logger: Any, event: str, burst: int = 20, window: float = 10.0) -> None:
        self.logger = logger
        self.event = event
        self.burst = burst
        self.window = window
        self._started = time.monotonic()
        self._written = 0
        self._left_out: Counter[str] = Counter()
        self._flush_due: asyncio.TimerHandle | None = None

    def info(self, status: object = "", **fields: Any) -> None:
        now = time.monotonic()
        if now - self._started >= self.window:
            self.flush()
            self._started = now
        if self._written < self.burst:
            self._written += 1
            self.logger.info(self.event, status=status, **fields)
            return
        self._left_out[str(status)] += 1
        if self._flush_due is None:
            # A flood that stops still gets its summary, at the end of its window.
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            delay = max(0.0, self.window - (now - self._started))
            self._flush_due = loop.call_later(delay, self.flush)

    def flush(self) -> None:
        """Write the summary of what was left out (at shutdown, too)."""
        if self._flush_due is not None:
            self._flush_due.cancel()
            self._flush_due = None
        if self._left_out:
            self.logger.info(
                f"{self.event}_summary",
                suppressed=sum(self._left_out.values()),
                by_status=dict(self._left_out),
                window_seconds=self.window,
            )
        self._left_out.clear()
        self._written = 0
        self._started = time.monotonic()
