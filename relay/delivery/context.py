"""What one replica's delivery workers share: the store, the ledger, the lease holder's
name, the per-subscriber request slots, and the stop signal; and a Job, one worker's state.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from relay.cursor import ZERO, Cursor
from relay.delivery.config import DeliverySettings, Subscriber
from relay.delivery.wakeups import Wakeups
from relay.metrics import Metrics
from relay.store.base import Store
from relay.store.delivery_ledger import DeliveryLedger, LedgerEntry


@dataclass(slots=True)
class Job:
    """One (subscriber, account) this replica is delivering."""

    subscriber: Subscriber
    account: str
    token: int = 0
    head: Cursor | None = None  # timestamp of the event being delivered (lag), None: caught up
    attempts: int = 0  # failed attempts at the head event
    lost: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class DeliveryContext:
    """Owned by the Deliverer; its workers read it and fill `elsewhere`."""

    store: Store
    ledger: DeliveryLedger
    wakeups: Wakeups
    settings: DeliverySettings
    metrics: Metrics
    holder: str  # this replica's name on the leases it takes
    slots: dict[str, asyncio.Semaphore]  # per subscriber: at most max_in_flight requests
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    session: aiohttp.ClientSession | None = None  # open while the Deliverer runs
    # Keys another replica holds and keeps up with: not asked again before this
    # (monotonic) time, so every append does not cost each other replica two calls.
    elsewhere: dict[tuple[str, str], float] = field(default_factory=dict)

    async def pending(self, account: str, entry: LedgerEntry) -> bool:
        """Does the account hold events this ledger entry has not delivered?"""
        page = await self.store.read(account, entry.cursor or ZERO, 1)
        return bool(page.events) or (page.reset and entry.cursor is not None)

    async def pause(
        self, seconds: float, until: asyncio.Event | asyncio.Future[None] | None = None
    ) -> None:
        """Sleep `seconds`, less if the deliverer stops or `until` happens first."""
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self.closing.wait())]
        if isinstance(until, asyncio.Event):
            waiters.append(asyncio.ensure_future(until.wait()))
        try:
            pending = [*waiters, until] if isinstance(until, asyncio.Future) else waiters
            await asyncio.wait(pending, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
