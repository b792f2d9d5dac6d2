"""SSE streams parked at the head, and the events pushed to them from their hint.

A stream that has written everything up to its cursor parks. A hint whose `prev` is that
cursor carries exactly the next event (the append script names the head each event
followed), so it is written to the stream right there, in the hint's callback: one frame
built per event, one socket write per stream, and no task woken. Anything that does not
chain (a gap, a body-less hint, a client whose socket is not keeping up, an expired
token) wakes the stream instead, and its task reads from its cursor as before: pushing is
an optimisation of the read, never a second path that could skip or repeat an event.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from relay import clock
from relay.auth import Viewer
from relay.cursor import Cursor, format_cursor
from relay.events import StoredEvent
from relay.fanout.poll import for_everyone, routed_to
from relay.fanout.sse import event_frame
from relay.wakeups.base import Hint


class PushTarget(Protocol):
    def push(self, data: bytes) -> bool:
        """Write `data` at once if the client keeps up; False (nothing written) if not."""
        ...


class Parked:
    """A stream that has written everything up to `cursor`, waiting for what follows."""

    __slots__ = ("cursor", "lag", "pushed", "target", "viewer", "woken")

    def __init__(
        self, viewer: Viewer, cursor: Cursor, target: PushTarget, lag: Any, pushed: Any
    ) -> None:
        self.viewer = viewer
        self.cursor = cursor
        self.target = target
        self.lag = lag  # relay_delivery_lag_seconds{mode="sse"}, a metrics Timing
        self.pushed = pushed  # relay_sse_pushed_events_total, a metrics Tally
        self.woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake(self) -> None:
        """Its task reads from `cursor` again."""
        if not self.woken.done():
            self.woken.set_result(None)


class _Frames:
    """One hint's frames, built once for all the streams it is pushed to."""

    __slots__ = ("_everyone", "_hidden", "_id", "_shown", "event")

    def __init__(self, event: StoredEvent) -> None:
        self.event = event
        self._everyone = for_everyone(event)  # once per hint, not once per stream
        self._id = format_cursor(event.timestamp).encode()
        self._shown: bytes | None = None
        self._hidden: bytes | None = None

    def for_viewer(self, viewer: Viewer) -> bytes:
        if (viewer.chats is None and self._everyone) or routed_to(self.event, viewer):
            if self._shown is None:
                self._shown = event_frame(self.event.wire(), self._id)
            return self._shown
        # Not for this viewer: an id-only frame still moves its Last-Event-ID.
        if self._hidden is None:
            self._hidden = b"id: %s\r\n\r\n" % self._id
        return self._hidden


def push(hint: Hint, streams: dict[Parked, None]) -> None:
    """Push the hinted event to every parked stream it follows; wake the others (and take
    them off `streams`: they park again after reading)."""
    event = hint.event
    frames = None if event is None else _Frames(event)
    now = time.time()
    woken: list[Parked] = []
    lag_seconds = -1.0
    for parked in streams:
        if hint.timestamp <= parked.cursor:
            continue  # a duplicate, or a late hint: already written
        if (
            frames is None
            or hint.prev != parked.cursor
            or parked.viewer.expires_at <= now
            or not parked.target.push(frames.for_viewer(parked.viewer))
        ):
            woken.append(parked)
            continue
        parked.cursor = hint.timestamp
        parked.pushed.inc()
        if lag_seconds < 0:
            lag_seconds = max(0, clock.now_us() - hint.timestamp) / 1e6
        parked.lag.observe(lag_seconds)
    for parked in woken:
        del streams[parked]
        parked.wake()
