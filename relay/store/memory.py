"""The embedded engine: one process, not durable, the same semantics as Redis.

A restarted process gets new origins, so every older cursor is told to reset.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from relay import clock
from relay.cursor import ZERO, Cursor
from relay.events import Appended, Event, StoredEvent
from relay.store.base import Page, Retention, page_from
from relay.wakeups.base import Hint
from relay.wakeups.local import LocalBroker


@dataclass(slots=True)
class _Stream:
    origin: Cursor
    clock: Cursor
    trimmed: Cursor = ZERO
    scores: list[Cursor] = field(default_factory=list)
    members: list[bytes] = field(default_factory=list)
    ids: OrderedDict[str, Cursor] = field(default_factory=OrderedDict)


class MemoryStore:
    engine = "memory"

    def __init__(self, retention: Retention | None = None) -> None:
        self.retention = retention or Retention()
        self._streams: dict[str, _Stream] = {}
        # Every committed event is announced here, as append.lua publishes it on Redis.
        self.hints = LocalBroker()

    def _stream(self, account: str) -> _Stream:
        stream = self._streams.get(account)
        if stream is None:
            now = Cursor(clock.now_us())
            stream = self._streams[account] = _Stream(origin=now, clock=now)
        return stream

    async def append(self, account: str, events: Sequence[Event]) -> list[Appended]:
        stream = self._stream(account)
        now = Cursor(clock.now_us())
        outcomes = []
        stored: list[tuple[Cursor, Cursor, bytes]] = []
        for event in events:
            seen = stream.ids.get(event.id)
            if seen is not None:
                outcomes.append(Appended(event.id, seen, duplicate=True))
                continue
            ts = Cursor(max(now, stream.clock + 1))
            member = event.encode()
            stored.append((stream.clock, ts, member))
            stream.clock = ts
            stream.scores.append(ts)
            stream.members.append(member)
            stream.ids[event.id] = ts
            outcomes.append(Appended(event.id, ts, duplicate=False))
        if stored:
            self._trim(stream, now)
            low = max(stream.origin, stream.trimmed)
            for prev, ts, member in stored:
                self.hints.publish(Hint(account, prev, ts, low, member))
        return outcomes

    def _trim(self, stream: _Stream, now: Cursor) -> None:
        keep_from = 0
        if self.retention.max_age_us > 0:
            keep_from = bisect.bisect_left(stream.scores, now - self.retention.max_age_us)
        if self.retention.max_events > 0:
            keep_from = max(keep_from, len(stream.scores) - self.retention.max_events)
        if keep_from > 0:
            stream.trimmed = max(stream.trimmed, stream.scores[keep_from - 1])
            del stream.scores[:keep_from]
            del stream.members[:keep_from]
        # Ids were inserted in timestamp order, so the oldest are first.
        horizon = now - self.retention.dedupe_window_us
        ids = stream.ids
        while ids and (len(ids) > self.retention.dedupe_max or next(iter(ids.values())) < horizon):
            ids.popitem(last=False)

    async def read(self, account: str, since: Cursor | None, limit: int) -> Page:
        stream = self._stream(account)
        events: list[StoredEvent] = []
        if since is not None:
            start = bisect.bisect_right(stream.scores, min(since, stream.clock))
            stop = min(start + limit, len(stream.scores))
            events = [StoredEvent(stream.scores[i], stream.members[i]) for i in range(start, stop)]
        low = max(stream.origin, stream.trimmed)
        return page_from(events, stream.clock, low, since, limit)

    def accounts(self) -> list[str]:
        """Every account this store knows (delivery's sweep for `accounts = ["*"]`)."""
        return list(self._streams)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._streams.clear()
