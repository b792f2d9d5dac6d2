"""What every engine promises: strictly increasing per-account cursors, idempotent
appends, range reads, and a low watermark that announces lost or trimmed history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from relay.cursor import ZERO, Cursor
from relay.events import Appended, Event, StoredEvent


@dataclass(frozen=True, slots=True)
class Retention:
    max_events: int = 10_000
    max_age_us: int = 24 * 3600 * 1_000_000
    dedupe_window_us: int = 7 * 24 * 3600 * 1_000_000
    # Bounds the memory of the idempotency index per account, whatever the window.
    dedupe_max: int = 100_000


@dataclass(frozen=True, slots=True)
class Page:
    """One read: the events after the cursor and the cursor to send back next time."""

    events: list[StoredEvent]
    cursor: Cursor
    more: bool
    reset: bool
    # The stream's low watermark: a cursor at or above it reads without a reset (a
    # subscriber told `relay.reset` carries on from here).
    low: Cursor = ZERO


class Store(Protocol):
    """Append, read, ping and close: wake-ups are the `relay.wakeups` package's."""

    engine: str

    async def append(self, account: str, events: Sequence[Event]) -> list[Appended]:
        """Store events atomically, in order; an id seen within the dedupe window is not
        stored again and is answered with its original timestamp."""
        ...

    async def read(self, account: str, since: Cursor | None, limit: int) -> Page:
        """Events with timestamp > since (none when since is None: "from now")."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def page_from(
    events: list[StoredEvent], clock: Cursor, low: Cursor, since: Cursor | None, limit: int
) -> Page:
    """The cursor rules shared by the engines (the range itself is engine-specific)."""
    if since is None:
        return Page([], clock, more=False, reset=False, low=low)
    more = len(events) >= limit
    cursor = events[-1].timestamp if more else clock
    return Page(events, cursor, more=more, reset=min(since, clock) < low, low=low)
