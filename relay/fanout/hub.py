"""In-process wake-ups and the tails, per account.

Waiters arm *before* they read, so an append between their read and their wait always
wakes them. Hints come from the wake-up broker (relay.wakeups); each one extends the
account's tail (or reports a gap in it) and wakes the account's waiters, who then read:
from the tail when it covers their cursor, else from the store. A lost hint can delay but
never lose an event.

SSE streams at the head do not wait like that: they park (fanout/push.py), and a hint that
follows their cursor is written to them from here, without waking a thousand tasks to read
the same event; anything else wakes them to read as above.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from relay.cursor import Cursor
from relay.fanout.push import Parked, push
from relay.fanout.tail import Tails
from relay.metrics import Metrics
from relay.wakeups.base import Hint

# How long a local append waits for its own hint before its waiters are woken without it.
HINT_GRACE = 0.5


class Round:
    """An account's waiters since its last advance. Reads started in one round may be
    shared: an append after the read started ends the round, and its waiters read again."""

    __slots__ = ("signal", "waiters")

    def __init__(self) -> None:
        # One future per waiter: a waiter that goes away cancels only its own, and waking
        # one costs a set_result (asyncio.wait on a shared future cost ten times that).
        self.waiters: dict[asyncio.Future[None], None] = {}
        self.signal: asyncio.Future[None] | None = None


@dataclass(frozen=True, slots=True)
class Waiter:
    round: Round
    future: asyncio.Future[None]


class Hub:
    def __init__(
        self,
        watermark_ttl: float = 10.0,
        metrics: Metrics | None = None,
        tail_max_bytes: int = 64 * 1024 * 1024,
        tail_max_events: int = 1000,
    ) -> None:
        self._rounds: dict[str, Round] = {}
        self._parked: dict[str, dict[Parked, None]] = {}
        self.tails = Tails(metrics or Metrics(), tail_max_bytes, tail_max_events, watermark_ttl)
        self.watermark_ttl = watermark_ttl
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

    def _round(self, account: str) -> Round:
        round_ = self._rounds.get(account)
        if round_ is None:
            round_ = self._rounds[account] = Round()
        return round_

    def arm(self, account: str) -> asyncio.Future[None]:
        """A future shared by everyone armed now, resolved at the account's next advance
        (or a wake_all); for the few long-lived waiters that never disarm (delivery)."""
        round_ = self._round(account)
        if round_.signal is None:
            round_.signal = asyncio.get_running_loop().create_future()
        return round_.signal

    def arm_waiter(self, account: str) -> Waiter:
        """A waiter of its own, resolved at the account's next advance (or a wake_all);
        `disarm` it when leaving without having been woken."""
        round_ = self._round(account)
        future = asyncio.get_running_loop().create_future()
        round_.waiters[future] = None
        return Waiter(round_, future)

    def disarm(self, waiter: Waiter) -> None:
        waiter.round.waiters.pop(waiter.future, None)

    def park(self, account: str, parked: Parked) -> None:
        """From now on, hints that follow `parked.cursor` are pushed to it; anything else
        resolves its `wake`."""
        self._parked.setdefault(account, {})[parked] = None

    def unpark(self, account: str, parked: Parked) -> None:
        streams = self._parked.get(account)
        if streams is not None:
            streams.pop(parked, None)
            if not streams:
                del self._parked[account]

    def on_hint(self, hint: Hint) -> None:
        """An event was committed: extend the account's tail, push it to the streams parked
        just before it, wake the account's waiters."""
        self.tails.hint(hint)
        streams = self._parked.get(hint.account)
        if streams:
            push(hint, streams)
        self._fire(hint.account)
        self._tell_listeners(hint.account)

    def advance(self, account: str, cursor: Cursor) -> None:
        """This process stored events up to `cursor` (without their bytes). While hints
        flow, its waiters and parked streams wait for the hints, which carry the events
        and arrive within a pub/sub hop: woken now, each would find the tail behind its
        own append and read the store for what the hint brings a moment later."""
        if self.hints_up:
            # Unless the hint has come by then (a subscription that died without a word):
            # this process's own appends reach its own clients within HINT_GRACE anyway.
            asyncio.get_running_loop().call_later(HINT_GRACE, self._unless_hinted, account, cursor)
        else:
            self._fire(account)
            self._wake_parked(account)
        self._tell_listeners(account)

    def _unless_hinted(self, account: str, cursor: Cursor) -> None:
        head = self.tails.head(account)
        if head is None or head < cursor:
            self._fire(account)
            self._wake_parked(account)

    def wake_all(self) -> None:
        """Every waiter re-reads: after a hint gap, a reconnect, or on shutdown."""
        for account in list(self._rounds):
            self._fire(account)
        for account in list(self._parked):
            self._wake_parked(account)

    def recheck(self) -> None:
        """The safety re-read (a hint may have been lost without a gap report): every
        waiter re-reads, and so does every parked stream that its tail no longer vouches
        for. The others would only read the tail and park again: at ten thousand streams,
        waking them all at once costs a pause that delays every delivery."""
        for account in list(self._rounds):
            self._fire(account)
        vouches_for = self.tails.vouches_for
        for account, streams in list(self._parked.items()):
            stale = [parked for parked in streams if not vouches_for(account, parked.cursor)]
            for parked in stale:
                del streams[parked]
                parked.wake()
            if not streams:
                del self._parked[account]

    def forget_heads(self, reason: str = "resubscribe") -> None:
        """Hints may have been missed: trust no tail until the store re-seeds it."""
        self.tails.clear(reason)

    def forget(self, is_affected: Callable[[str], bool], reason: str = "slot_move") -> None:
        """Hints for some accounts may have been missed: drop their tails and wake their
        waiters."""
        self.tails.forget(is_affected, reason)
        for account in [account for account in self._rounds if is_affected(account)]:
            self._fire(account)
        for account in [account for account in self._parked if is_affected(account)]:
            self._wake_parked(account)

    def _tell_listeners(self, account: str) -> None:
        for listener in self._listeners:
            listener(account)

    def _fire(self, account: str) -> None:
        round_ = self._rounds.pop(account, None)
        if round_ is None:
            return
        if round_.signal is not None and not round_.signal.done():
            round_.signal.set_result(None)
        for future in round_.waiters:
            if not future.done():
                future.set_result(None)

    def _wake_parked(self, account: str) -> None:
        for parked in self._parked.pop(account, ()):
            parked.wake()
