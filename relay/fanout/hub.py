"""In-process wake-ups and the empty-poll watermark, per account.

Waiters arm a per-account future *before* they read, so an append between their read and
their wait always wakes them. Hints ("account X advanced to ts T") come from local appends
and, across replicas, from the store's pub/sub; a hint only wakes waiters, who then read
the sorted set, so a lost hint can delay but never lose an event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from relay.cursor import Cursor


@dataclass(slots=True)
class _Head:
    cursor: Cursor
    confirmed_at: float  # monotonic seconds


class Hub:
    def __init__(self, watermark_ttl: float = 10.0) -> None:
        self._signals: dict[str, asyncio.Future[None]] = {}
        self._heads: dict[str, _Head] = {}
        self.watermark_ttl = watermark_ttl
        # False until the cross-replica hints are flowing (always True for one process).
        self.hints_up = False
        self.wakeups = 0
        self._listeners: list[Callable[[str], None]] = []

    def add_listener(self, listener: Callable[[str], None]) -> None:
        """Called with the account at every advance (delivery's "some account advanced")."""
        self._listeners.append(listener)

    def arm(self, account: str) -> asyncio.Future[None]:
        """A future resolved at the account's next advance (or a wake_all)."""
        signal = self._signals.get(account)
        if signal is None or signal.done():
            signal = self._signals[account] = asyncio.get_running_loop().create_future()
        return signal

    def advance(self, account: str, cursor: Cursor) -> None:
        """The account's stream now reaches `cursor`: wake its waiters."""
        head = self._heads.get(account)
        if head is None or cursor > head.cursor:
            self._heads[account] = _Head(cursor, time.monotonic())
        elif cursor == head.cursor:
            head.confirmed_at = time.monotonic()
        self._fire(account)
        for listener in self._listeners:
            listener(account)

    def confirm(self, account: str, cursor: Cursor) -> None:
        """A read saw the account's clock at `cursor`: the watermark is fresh again."""
        head = self._heads.get(account)
        if head is None or cursor >= head.cursor:
            self._heads[account] = _Head(cursor, time.monotonic())

    def is_head(self, account: str, cursor: Cursor) -> bool:
        """True when a read at `cursor` is known to be empty without asking the store.

        Only while hints flow (any append anywhere reaches `advance` within one pub/sub
        hop) and for at most `watermark_ttl` seconds since the store last confirmed the
        head, which bounds how long a store that lost its data without a reconnect (a
        FLUSHALL) can go unannounced.
        """
        if not self.hints_up:
            return False
        head = self._heads.get(account)
        return (
            head is not None
            and head.cursor == cursor
            and time.monotonic() - head.confirmed_at < self.watermark_ttl
        )

    def wake_all(self) -> None:
        """Every waiter re-reads: after a hint gap, a reconnect, or on shutdown."""
        for account in list(self._signals):
            self._fire(account)

    def forget_heads(self) -> None:
        """Hints may have been missed: trust no watermark until the store confirms it."""
        self._heads.clear()

    def forget(self, is_affected: Callable[[str], bool]) -> None:
        """Hints for some accounts may have been missed: distrust their watermarks and
        wake their waiters."""
        for account in [account for account in self._heads if is_affected(account)]:
            del self._heads[account]
        for account in [account for account in self._signals if is_affected(account)]:
            self._fire(account)

    def _fire(self, account: str) -> None:
        signal = self._signals.pop(account, None)
        if signal is not None and not signal.done():
            signal.set_result(None)
            self.wakeups += 1
