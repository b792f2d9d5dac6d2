"""The hint, and the protocol between a broker and the fan-out that it wakes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from relay.cursor import Cursor, to_cursor
from relay.events import StoredEvent


@dataclass(frozen=True, slots=True)
class Hint:
    """One committed event, as its append announced it.

    `prev` is the account's head just before this event, so a chain of hints whose `prev`
    is the previous hint's `timestamp` proves that nothing was missed in between. `low` is
    the store's low watermark after the append (origin or trim), `member` the stored bytes,
    or None when the event was too large to travel in a hint.
    """

    account: str
    prev: Cursor
    timestamp: Cursor
    low: Cursor
    member: bytes | None
    # One StoredEvent per hint, for the tail and the streams it is pushed to alike: its
    # wire form is then made once (StoredEvent.wire).
    _event: StoredEvent | None = field(default=None, init=False, compare=False, repr=False)

    @property
    def event(self) -> StoredEvent | None:
        event = self._event
        if event is None and self.member is not None:
            event = StoredEvent(self.timestamp, self.member)
            object.__setattr__(self, "_event", event)
        return event

    def encode(self) -> bytes:
        header = b"%s %d %d %d" % (self.account.encode(), self.prev, self.timestamp, self.low)
        return header if self.member is None else header + b"\n" + self.member


def parse_hint(data: bytes) -> Hint | None:
    """`<account> <prev> <ts> <low>[\\n<member>]` as append.lua publishes it; None for
    anything else (the hint is then useless, and the safety re-read covers it)."""
    header, newline, member = data.partition(b"\n")
    fields = header.split(b" ")
    if len(fields) != 4 or not all(f.isdigit() for f in fields[1:]):
        return None
    try:
        account = fields[0].decode()
    except UnicodeDecodeError:
        return None
    prev, timestamp, low = (to_cursor(f) for f in fields[1:])
    return Hint(account, prev, timestamp, low, member if newline else None)


IsAffected = Callable[[str], bool]


class WakeupHandler(Protocol):
    """What a broker reports (centrifuge's BrokerEventHandler). Called on the event loop,
    never concurrently; each method must return quickly."""

    def on_hint(self, hint: Hint) -> None:
        """An event was committed (by any process)."""
        ...

    def on_state(self, up: bool, reason: str) -> None:
        """Hints started (`up`) or stopped flowing; after any stop, hints were missed."""
        ...

    def on_gap(self, is_affected: IsAffected) -> None:
        """The hints of the accounts for which `is_affected` is true may have been missed
        (a cluster slot moved); the others' kept flowing."""
        ...


class Broker(Protocol):
    async def run(self, handler: WakeupHandler) -> None:
        """Report to `handler` until cancelled."""
        ...
