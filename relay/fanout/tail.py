"""The tail: per account with live interest, the latest events known to be complete.

A tail holds every event of its account with `low < timestamp <= head`. It is re-seeded by
store reads (a page that is not `more` is complete from its `since` to its cursor, a page
that is `more` up to its last event) and extended only by a hint whose `prev` is `head`:
the append script names the head each event followed, so a chain of matching hints proves
nothing was missed. Anything else is a gap: the tail keeps only what the gap cannot have
touched. A read at or above `low` is answered from the tail, so the common poll ("what
happened since my last answer") and every delivery woken by a hint cost no store call.

Why a cursor handed out from here is never ahead of the store: `head` only ever comes from
the store itself (a read's cursor, a hint's timestamp). A hint lost silently (without a
gap report) leaves the tail one event behind for at most `ttl` seconds: without fresh
confirmation from the store (a hint or a read reaching `head`), the tail is not used.
"""

from __future__ import annotations

import bisect
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from relay.cursor import ZERO, Cursor
from relay.events import StoredEvent
from relay.metrics import Metrics, Tally
from relay.store.base import Page
from relay.wakeups.base import Hint, IsAffected

# What a tail costs beyond its events' bytes (objects, list slots, the dict entry): an
# estimate that keeps the byte bound honest for tails of many small events.
TAIL_OVERHEAD = 400
EVENT_OVERHEAD = 120
# Accounts without a tail whose latest hint is remembered (for reads in flight).
UNTRACKED_MAX = 4096


def event_bytes(event: StoredEvent) -> int:
    """An event's share of the bound: its stored bytes, and as much again for the wire
    form the first answer that carries it keeps (StoredEvent.wire)."""
    return 2 * len(event.member) + EVENT_OVERHEAD


@dataclass(slots=True)
class _Tail:
    low: Cursor
    head: Cursor
    confirmed_at: float
    # A local append reached here before its hint: until the tail reaches it, reads go to
    # the store, so a process always reads its own writes.
    expected: Cursor = ZERO
    stamps: list[Cursor] = field(default_factory=list)
    events: list[StoredEvent] = field(default_factory=list)
    bytes: int = TAIL_OVERHEAD

    def add(self, event: StoredEvent) -> int:
        self.stamps.append(event.timestamp)
        self.events.append(event)
        size = event_bytes(event)
        self.bytes += size
        return size

    def raise_low(self, low: Cursor) -> int:
        """Forget the events at or below `low`; returns the bytes freed."""
        self.low = max(self.low, low)
        cut = bisect.bisect_right(self.stamps, self.low)
        if not cut:
            return 0
        freed = sum(event_bytes(event) for event in self.events[:cut])
        del self.stamps[:cut], self.events[:cut]
        self.bytes -= freed
        return freed


class Tails:
    """Every tail of this process, least recently used first, within `max_bytes`."""

    def __init__(self, metrics: Metrics, max_bytes: int, max_events: int, ttl: float) -> None:
        self.max_bytes = max_bytes
        self.max_events = max_events
        self.ttl = ttl
        self.up = False  # False: hints do not flow, so no tail can be kept current
        # Moves at every gap: a store read that started before a gap may not seed a tail
        # after it (hints of appends it did not see may be the ones that were lost).
        self.epoch = 0
        # Hints of accounts without a tail, while a read that could seed one is in flight:
        # the hint count when each was last heard, and its timestamp.
        self.heard = 0
        self._untracked: OrderedDict[str, tuple[int, Cursor]] = OrderedDict()
        self._untracked_evicted = 0  # the latest `heard` of an entry pushed out
        self.bytes = 0
        self._tails: OrderedDict[str, _Tail] = OrderedDict()
        self._metrics = metrics
        self._hits = metrics.child(metrics.tail_hits)
        self._bytes_gauge = metrics.tail_bytes
        self._misses: dict[str, Tally] = {}
        self._drops: dict[str, Tally] = {}

    def __len__(self) -> int:
        return len(self._tails)

    def head(self, account: str) -> Cursor | None:
        tail = self._tails.get(account)
        return None if tail is None else tail.head

    # -- reads ------------------------------------------------------------------------

    def read(self, account: str, since: Cursor | None, limit: int) -> Page | None:
        """The page a store read at `since` would give, or None (a miss: read the store).
        `since=None` ("from now") is answered with the head."""
        tail = self._tails.get(account)
        if tail is None:
            self._miss("no_tail" if self.up else "hints_down")
            return None
        if since is None:
            since = tail.head
        if since < tail.low:
            self._miss("below_low")
            return None
        if since > tail.head:
            self._miss("ahead")
            return None
        if tail.expected > tail.head:
            self._miss("behind")
            return None
        if time.monotonic() - tail.confirmed_at >= self.ttl:
            self._remove(account, "unconfirmed")
            self._miss("unconfirmed")
            return None
        self._tails.move_to_end(account)
        self._hits.inc()
        if since == tail.head:  # the common poll: nothing new
            return Page([], since, False, False)
        start = bisect.bisect_right(tail.stamps, since)
        events = tail.events[start : start + limit]
        more = len(tail.events) - start > limit
        return Page(events, events[-1].timestamp if more else tail.head, more, False)

    def vouches_for(self, account: str, cursor: Cursor) -> bool:
        """True when a read at `cursor` would be answered from the tail with nothing new:
        what the safety re-read of a stream parked there would find."""
        tail = self._tails.get(account)
        return (
            self.up
            and tail is not None
            and tail.head == cursor
            and tail.expected <= tail.head
            and time.monotonic() - tail.confirmed_at < self.ttl
        )

    def _miss(self, reason: str) -> None:
        counter = self._misses.get(reason)
        if counter is None:
            counter = self._misses[reason] = self._metrics.child(self._metrics.tail_misses, reason)
        counter.inc()

    # -- what the store says ----------------------------------------------------------

    def ticket(self) -> tuple[int, int]:
        """Taken when a store read is sent; handed back to `seed` with its answer."""
        return self.epoch, self.heard

    def seed(self, account: str, since: Cursor | None, page: Page, ticket: tuple[int, int]) -> None:
        """A store read at `since`, sent at `ticket`, answered `page`: everything in
        (since, page.cursor] is in it. Merge that into the account's tail, or start one.

        Not from a page that is `more` (the store is known to be ahead of it), nor from a
        read that a gap overtook. A hint heard before the read was sent is in its answer
        (hints leave after the commit); one heard while it was in flight may not be, and
        if the account had no tail to take it, the answer may not start one.
        """
        epoch, sent_at = ticket
        if not self.up or self.max_bytes <= 0 or page.reset or page.more or epoch != self.epoch:
            return
        low = page.cursor if since is None else min(since, page.cursor)
        end = page.cursor
        tail = self._tails.get(account)
        if tail is None or low > tail.head:
            if self._untracked_evicted > sent_at:
                return  # a hint heard meanwhile may have been this account's
            heard = self._untracked.get(account)
            if heard is not None and heard[0] > sent_at and heard[1] > end:
                return  # this account moved on while the answer was on its way
            if tail is not None:
                self._remove(account, "reseeded")
            tail = self._tails[account] = _Tail(low, end, time.monotonic())
            self.bytes += tail.bytes
            for event in page.events:
                if event.timestamp > low:
                    self.bytes += tail.add(event)
        else:
            self._tails.move_to_end(account)
            if end < tail.head:
                return  # an answer computed before hints that already arrived
            for event in page.events:
                if event.timestamp > tail.head:
                    self.bytes += tail.add(event)
            tail.head = end
            tail.confirmed_at = time.monotonic()
        self._bound(account, tail)

    def hint(self, hint: Hint) -> None:
        self.heard += 1
        tail = self._tails.get(hint.account)
        if tail is None:
            self._untrack(hint)
            return  # no live interest (yet)
        if hint.timestamp <= tail.head:
            return  # nothing new: a duplicate or a late hint
        event = hint.event
        if hint.prev != tail.head or event is None:
            # Something between head and this event may be unknown here (or this event's
            # body is): keep only what is certain, the head itself.
            self._drop("prev_mismatch" if hint.prev != tail.head else "no_body")
            self.bytes -= tail.raise_low(hint.timestamp)
            tail.head = tail.low = hint.timestamp
        else:
            self.bytes += tail.add(event)
            tail.head = hint.timestamp
        tail.confirmed_at = time.monotonic()
        if hint.low > tail.low:  # a trim passed the tail's low end
            self._drop("trim")
            self.bytes -= tail.raise_low(hint.low)
            tail.head = max(tail.head, tail.low)
        self._bound(hint.account, tail)

    def _untrack(self, hint: Hint) -> None:
        untracked = self._untracked
        untracked[hint.account] = (self.heard, hint.timestamp)
        untracked.move_to_end(hint.account)
        if len(untracked) > UNTRACKED_MAX:
            _, (heard, _) = untracked.popitem(last=False)
            self._untracked_evicted = heard

    def expect(self, account: str, timestamp: Cursor) -> None:
        """This process stored an event at `timestamp`; its hint is on its way."""
        tail = self._tails.get(account)
        if tail is None:
            # Like a hint heard without a tail: a read in flight may not include it.
            self.heard += 1
            self._untrack(Hint(account, ZERO, timestamp, ZERO, None))
        elif timestamp > tail.expected:
            tail.expected = timestamp

    # -- gaps -------------------------------------------------------------------------

    def forget(self, is_affected: IsAffected, reason: str) -> None:
        self.epoch += 1
        for account in [account for account in self._tails if is_affected(account)]:
            self._remove(account, reason)

    def clear(self, reason: str) -> None:
        self.epoch += 1
        for account in list(self._tails):
            self._remove(account, reason)

    # -- bounds -----------------------------------------------------------------------

    def _bound(self, account: str, tail: _Tail) -> None:
        excess = len(tail.stamps) - self.max_events
        if excess > 0:
            self.bytes -= tail.raise_low(tail.stamps[excess - 1])
        while self.bytes > self.max_bytes and self._tails:
            oldest = next(iter(self._tails))
            self._remove(oldest, "evicted")
        self._bytes_gauge.set(self.bytes)

    def _remove(self, account: str, reason: str) -> None:
        tail = self._tails.pop(account, None)
        if tail is not None:
            self.bytes -= tail.bytes
            self._bytes_gauge.set(self.bytes)
            self._drop(reason)

    def _drop(self, reason: str) -> None:
        counter = self._drops.get(reason)
        if counter is None:
            counter = self._drops[reason] = self._metrics.child(self._metrics.tail_drops, reason)
        counter.inc()
