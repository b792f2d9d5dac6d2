"""The one place delivery touches the wake-up path: "wait for this account's next append"
and "tell me whenever any account advances" (for subscribers of every account).

Both come from the same hints that wake browsers (local appends and other replicas'
pub/sub), so no delivery worker ever polls the store for new events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from relay.fanout.hub import Hub


class Wakeups:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def next_append(self, account: str) -> asyncio.Future[None]:
        """Resolved at the account's next advance, or when every waiter must re-read (a
        hint gap, a reconnect). Arm it *before* reading, so nothing slips in between."""
        return self._hub.arm(account)

    def on_any_advance(self, listener: Callable[[str], None]) -> None:
        """`listener(account)` at every advance of every account; it must return at once."""
        self._hub.add_listener(listener)
