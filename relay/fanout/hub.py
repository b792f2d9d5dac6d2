"""In-process wake-ups and the tails, per account.

Waiters arm a per-account future *before* they read, so an append between their read and
their wait always wakes them. Hints come from the wake-up broker (relay.wakeups); each one
extends the account's tail (or reports a gap in it) and wakes the account's waiters, who
then read: from the tail when it covers their cursor, else from the store. A lost hint can
delay but never lose an event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from relay.cursor import Cursor
from relay.fanout.tail import Tails
from relay.metrics import Metrics
from relay.wakeups.base import Hint


class Hub:
    def __init__(
        self,
        watermark_ttl: float = 10.0,
        metrics: Metrics | None = None,
        tail_max_bytes: int = 64 * 1024 * 1024,
        tail_max_events: int = 1000,
    ) -> None:
        self._signals: dict[str, asyncio.Future[None]] = {}
        self.tails = Tails(metrics or Metrics(), tail_max_bytes, tail_max_events, watermark_ttl)
        self.watermark_ttl = watermark_ttl
        self.wakeups = 0
        self._listeners: list[Callable[[str], None]] = []

    def add_listener(self, listener: Callable[[str], None]) -> None:
        """Called with the account at every advance, local or hinted by another replica
        (delivery's "some account advanced")."""
        self._listeners.append(listener)

    @property
    def hints_up(self) -> bool:
        """False until the cross-replica hints are flowing (always True for one process)."""
        return self.tails.up

    @hints_up.setter
    def hints_up(self, up: bool) -> None:
        self.tails.up = up

    def arm(self, account: str) -> asyncio.Future[None]:
        """A future resolved at the account's next advance (or a wake_all)."""
        signal = self._signals.get(account)
        if signal is None or signal.done():
            signal = self._signals[account] = asyncio.get_running_loop().create_future()
        return signal

    def on_hint(self, hint: Hint) -> None:
        """An event was committed: extend the account's tail, wake its waiters."""
        self.tails.hint(hint)
        self._fire(hint.account)
        self._tell_listeners(hint.account)

    def advance(self, account: str, cursor: Cursor) -> None:
        """The account's stream now reaches `cursor` (without the event): wake its waiters."""
        self._fire(account)
        self._tell_listeners(account)

    def is_head(self, account: str, cursor: Cursor) -> bool:
        """True when a read at `cursor` is known to be empty without asking the store."""
        return self.hints_up and self.tails.head(account) == cursor

    def wake_all(self) -> None:
        """Every waiter re-reads: after a hint gap, a reconnect, or on shutdown."""
        for account in list(self._signals):
            self._fire(account)

    def forget_heads(self, reason: str = "resubscribe") -> None:
        """Hints may have been missed: trust no tail until the store re-seeds it."""
        self.tails.clear(reason)

    def forget(self, is_affected: Callable[[str], bool], reason: str = "slot_move") -> None:
        """Hints for some accounts may have been missed: drop their tails and wake their
        waiters."""
        self.tails.forget(is_affected, reason)
        for account in [account for account in self._signals if is_affected(account)]:
            self._fire(account)

    def _tell_listeners(self, account: str) -> None:
        for listener in self._listeners:
            listener(account)

    def _fire(self, account: str) -> None:
        signal = self._signals.pop(account, None)
        if signal is not None and not signal.done():
            signal.set_result(None)
            self.wakeups += 1
