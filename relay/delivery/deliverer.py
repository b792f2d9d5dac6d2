"""Push delivery: one worker per (subscriber, account) on the replica that holds its lease.

A worker delivers its account's events strictly in stream order, one in flight, the next
only after a 2xx, and moves the durable cursor under its fencing token after each 2xx.
Failures are retried with exponential backoff and jitter while the event is retained;
once it is trimmed the subscriber gets one `relay.reset` and delivery carries on from the
stream's low watermark. Accounts progress in parallel (at most `max_in_flight` requests
per subscriber), so a slow or failing account holds back no other account or subscriber.

Workers start when an account advances (the browsers' hints), and from a periodic sweep
that finds accounts with undelivered events (after a restart, or a holder that died);
an idle worker gives its lease up and ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

import aiohttp

from relay import clock
from relay.cursor import Cursor
from relay.delivery.config import DeliverySettings, Subscriber
from relay.delivery.messages import id_and_type, reset_message
from relay.delivery.sender import post_event
from relay.delivery.wakeups import Wakeups
from relay.errors import StoreUnavailable
from relay.logs import get_logger
from relay.metrics import Metrics
from relay.store.base import Store
from relay.store.delivery_ledger import DeliveryLedger, LedgerEntry

log = get_logger("relay.delivery")


class Sent(Enum):
    DELIVERED = "delivered"  # 2xx, and the cursor moved under our token
    LOST = "lost"  # our token is stale (lease taken, or rewound), or we are stopping
    REREAD = "reread"  # the event is no longer the head (trimmed): read the stream again


@dataclass(slots=True)
class Job:
    """One (subscriber, account) this replica is delivering."""

    subscriber: Subscriber
    account: str
    token: int = 0
    head: Cursor | None = None  # timestamp of the event being delivered (lag), None: caught up
    attempts: int = 0  # failed attempts at the head event
    lost: asyncio.Event = field(default_factory=asyncio.Event)


class Deliverer:
    def __init__(
        self,
        store: Store,
        ledger: DeliveryLedger,
        wakeups: Wakeups,
        subscribers: Iterable[Subscriber],
        settings: DeliverySettings,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.wakeups = wakeups
        self.subscribers = {s.name: s for s in subscribers}
        self.settings = settings
        self.metrics = metrics
        # Unique per process lifetime: a restarted replica never mistakes an old lease for its own.
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._workers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._jobs: dict[tuple[str, str], Job] = {}
        # Keys another replica holds and keeps up with: not asked again before this
        # (monotonic) time, so every append does not cost each other replica two calls.
        self._elsewhere: dict[tuple[str, str], float] = {}
        self._slots = {
            s.name: asyncio.Semaphore(s.max_in_flight) for s in self.subscribers.values()
        }
        self._closing = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle --------------------------------------------------------------------

    async def run(self) -> None:
        """Own the HTTP session, the sweep and the gauges until cancelled."""
        if not self.subscribers:
            return
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
            auto_decompress=False,
        )
        self.wakeups.on_any_advance(self.poke_account)
        log.info("delivery.started", subscribers=sorted(self.subscribers), holder=self.holder)
        gauges = asyncio.create_task(self._update_gauges())
        try:
            while True:
                try:
                    await self.sweep()
                except StoreUnavailable as error:
                    log.warning("delivery.sweep_failed", reason=error.detail)
                await asyncio.sleep(self.settings.sweep)
        finally:
            gauges.cancel()
            await self._stop()

    async def _stop(self) -> None:
        self._closing.set()
        # Hand the leases over at once rather than after they lapse.
        held = [job for job in self._jobs.values() if job.token]
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if held:
            await asyncio.wait(
                [asyncio.ensure_future(self._release(job)) for job in held], timeout=2
            )
        if self._session is not None:
            await self._session.close()
        log.info("delivery.stopped", released=len(held))

    async def _release(self, job: Job) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self.ledger.release(job.subscriber.name, job.account, self.holder, job.token)

    # -- who delivers what ----------------------------------------------------------

    def poke_account(self, account: str) -> None:
        """An account advanced: make sure each of its subscribers has a worker here."""
        if self._closing.is_set():
            return
        for subscriber in self.subscribers.values():
            if subscriber.covers(account):
                self.poke(subscriber.name, account)

    def poke(self, name: str, account: str, force: bool = False) -> None:
        key = (name, account)
        if not force and key in self._elsewhere:
            if time.monotonic() < self._elsewhere[key]:
                return
            del self._elsewhere[key]
        if key not in self._workers and not self._closing.is_set():
            job = Job(self.subscribers[name], account)
            self._jobs[key] = job
            self._workers[key] = asyncio.create_task(self._work(job))

    async def sweep(self) -> None:
        """Start a worker for every covered account with undelivered events: after a
        restart, after a hint was missed, or when another replica's worker died."""
        now = time.monotonic()
        self._elsewhere = {k: t for k, t in self._elsewhere.items() if t > now}
        wildcard = any(s.every_account for s in self.subscribers.values())
        known = await self.ledger.accounts() if wildcard else []
        for subscriber in list(self.subscribers.values()):
            accounts = known if subscriber.every_account else subscriber.accounts
            for account in accounts:
                if (subscriber.name, account) in self._workers:
                    continue
                entry = await self.ledger.state(subscriber.name, account)
                if await self._pending(account, entry):
                    self.poke(subscriber.name, account, force=True)

    async def _pending(self, account: str, entry: LedgerEntry) -> bool:
        page = await self.store.read(account, entry.cursor or 0, 1)
        return bool(page.events) or (page.reset and entry.cursor is not None)

    # -- one worker ---------------------------------------------------------------------

    async def _work(self, job: Job) -> None:
        key = (job.subscriber.name, job.account)
        failures = 0
        try:
            while not self._closing.is_set():
                try:
                    done = await self._hold_and_deliver(job)
                    failures = 0
                except StoreUnavailable as error:
                    failures += 1
                    log.warning(
                        "delivery.store_unavailable",
                        subscriber=job.subscriber.name,
                        account=job.account,
                        reason=error.detail,
                    )
                    await self._pause(self.settings.retry_delay(failures))
                    continue
                if done:
                    return
        finally:
            if self._workers.get(key) is asyncio.current_task():
                del self._workers[key]
                self._jobs.pop(key, None)

    async def _hold_and_deliver(self, job: Job) -> bool:
        """One lease's worth of work. True when the worker may end (idle, or another
        replica is keeping up); False to try again (lease lost, lease held elsewhere)."""
        name, account = job.subscriber.name, job.account
        entry = await self.ledger.acquire(name, account, self.holder, self.settings.lease)
        if entry.refused:
            job.token = 0
            if not await self._pending(account, entry):
                # The holder is keeping up: check again once its lease could have lapsed.
                self._elsewhere[(name, account)] = time.monotonic() + entry.lease_left
                return True
            # The holder is behind, or dead, or handing over: ask again at the account's
            # next append, or once its lease could have lapsed (a third of a lease at most,
            # as a holder that stops releases its leases early).
            signal = self.wakeups.next_append(account)
            pause = min(entry.lease_left, self.settings.lease / 3)
            await self._pause(pause + random.uniform(0, self.settings.lease / 10), signal)
            return False
        job.token, job.attempts = entry.granted, 0
        job.lost = asyncio.Event()
        renewer = asyncio.create_task(self._renew(job))
        try:
            return await self._deliver_stream(job, entry.cursor)
        finally:
            renewer.cancel()
            job.head = None

    async def _renew(self, job: Job) -> None:
        """Keep the lease while delivering; a refused renewal means it was taken."""
        interval = self.settings.lease / 3
        last_renewed = asyncio.get_running_loop().time()
        while not job.lost.is_set():
            await asyncio.sleep(interval)
            try:
                entry = await self.ledger.renew(
                    job.subscriber.name, job.account, self.holder, job.token, self.settings.lease
                )
            except StoreUnavailable:
                if asyncio.get_running_loop().time() - last_renewed > self.settings.lease:
                    job.lost.set()
                continue
            if entry.refused:
                log.warning(
                    "delivery.lease_lost", subscriber=job.subscriber.name, account=job.account
                )
                job.lost.set()
            else:
                last_renewed = asyncio.get_running_loop().time()

    async def _deliver_stream(self, job: Job, cursor: Cursor | None) -> bool:
        subscriber, account = job.subscriber, job.account
        # Wake-ups come without new events too (every waiter re-reads now and then), so
        # idleness is time since the last event, not since the last wake-up.
        active_at = time.monotonic()
        while not (job.lost.is_set() or self._closing.is_set()):
            signal = self.wakeups.next_append(account)  # armed before the read
            page = await self.store.read(
                account, 0 if cursor is None else cursor, self.settings.page
            )
            if page.reset and cursor is not None:
                # Trimmed before it was delivered: say so once, then carry on from here.
                job.head = cursor
                sent = await self._send(
                    job, cursor, *reset_message(account, page.low), page.low, is_reset=True
                )
                if sent is Sent.LOST:
                    return False
                if sent is Sent.DELIVERED:
                    cursor = page.low
                continue
            if cursor is None:
                # First delivery to this subscriber: everything the stream retains.
                cursor = page.low
            if page.events:
                active_at = time.monotonic()
            skipped: Cursor | None = None
            reread = False
            for event in page.events:
                wire = event.wire()
                msg_id, event_type = id_and_type(wire)
                if not subscriber.wants(event_type):
                    skipped = event.timestamp
                    continue
                job.head = event.timestamp
                sent = await self._send(job, cursor, msg_id, wire, event.timestamp)
                if sent is Sent.LOST:
                    return False
                if sent is Sent.REREAD:
                    reread = True
                    break
                cursor, skipped = event.timestamp, None
            job.head = None
            if reread:
                continue
            if skipped is not None:
                entry = await self.ledger.advance(
                    subscriber.name, account, self.holder, job.token, skipped
                )
                if entry.refused:
                    return False
                cursor = skipped
            if page.more:
                continue
            idle_left = self.settings.idle_release - (time.monotonic() - active_at)
            if idle_left <= 0 or not await self._idle(job, signal, idle_left):
                return await self._give_up_if_still_idle(job, signal)
        return False

    async def _idle(self, job: Job, signal: asyncio.Future[None], timeout: float) -> bool:
        """Wait for the next append. False after `timeout` without one."""
        waiters = [
            signal,
            asyncio.ensure_future(job.lost.wait()),
            asyncio.ensure_future(self._closing.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters[1:]:
                waiter.cancel()
        return signal.done() or job.lost.is_set() or self._closing.is_set()

    async def _give_up_if_still_idle(self, job: Job, signal: asyncio.Future[None]) -> bool:
        await self.ledger.release(job.subscriber.name, job.account, self.holder, job.token)
        job.token = 0
        # An append while releasing fired `signal` (poke saw this worker still running):
        # deliver it rather than end.
        return not signal.done()

    async def _send(
        self,
        job: Job,
        cursor: Cursor,
        msg_id: str,
        body: bytes,
        stamp: Cursor,
        is_reset: bool = False,
    ) -> Sent:
        """Deliver one message until a 2xx (then move the cursor to `stamp`), the lease is
        lost, or the message is no longer the one to send (see _still_current)."""
        subscriber, account = job.subscriber, job.account
        assert self._session is not None
        job.attempts = 0
        while True:
            if job.lost.is_set() or self._closing.is_set():
                return Sent.LOST
            async with self._slots[subscriber.name]:
                outcome = await post_event(self._session, subscriber, msg_id, body)
            self.metrics.child(
                self.metrics.subscriber_deliveries, subscriber.name, outcome.label
            ).inc()
            if outcome.delivered:
                entry = await self.ledger.advance(
                    subscriber.name, account, self.holder, job.token, stamp
                )
                job.attempts = 0
                if entry.refused:
                    log.warning("delivery.fenced", subscriber=subscriber.name, account=account)
                    return Sent.LOST
                return Sent.DELIVERED
            job.attempts += 1
            delay = self.settings.retry_delay(job.attempts)
            entry = await self.ledger.fail(
                subscriber.name,
                account,
                self.holder,
                job.token,
                job.attempts,
                outcome.detail,
                clock.now_us() + int(delay * 1e6),
            )
            if entry.refused:
                return Sent.LOST
            if job.attempts in (1, 5) or job.attempts % 20 == 0:
                log.warning(
                    "delivery.failed",
                    subscriber=subscriber.name,
                    account=account,
                    attempts=job.attempts,
                    outcome=outcome.label,
                    detail=outcome.detail,
                    retry_in=round(delay, 3),
                )
            await self._pause(delay, job.lost)
            if not await self._still_current(account, cursor, stamp, is_reset):
                return Sent.REREAD

    async def _still_current(
        self, account: str, cursor: Cursor, stamp: Cursor, is_reset: bool
    ) -> bool:
        """Is the message being retried still the one to send? An event: while it is
        retained (once trimmed, the subscriber is told to reset instead). A reset: while
        the low watermark has not moved on (then a newer reset replaces it)."""
        if is_reset:
            page = await self.store.read(account, cursor, 1)
            return page.reset and page.low == stamp
        # Event timestamps are above the stream's origin, so reading from just below the
        # event says "reset" exactly when the event itself was trimmed.
        page = await self.store.read(account, stamp - 1, 1)
        return not page.reset and bool(page.events) and page.events[0].timestamp == stamp

    async def _pause(
        self, seconds: float, until: asyncio.Event | asyncio.Future[None] | None = None
    ) -> None:
        """Sleep `seconds`, less if the deliverer stops or `until` happens first."""
        waiters: list[asyncio.Future] = [asyncio.ensure_future(self._closing.wait())]
        if isinstance(until, asyncio.Event):
            waiters.append(asyncio.ensure_future(until.wait()))
        try:
            pending = [*waiters, until] if isinstance(until, asyncio.Future) else waiters
            await asyncio.wait(pending, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    # -- observability ----------------------------------------------------------------

    def jobs(self) -> list[Job]:
        return list(self._jobs.values())

    async def _update_gauges(self) -> None:
        while True:
            now = clock.now_us()
            lag = dict.fromkeys(self.subscribers, 0.0)
            failing = dict.fromkeys(self.subscribers, 0)
            for job in self._jobs.values():
                name = job.subscriber.name
                if job.head is not None and job.token:
                    lag[name] = max(lag[name], max(0, now - job.head) / 1e6)
                if job.attempts and job.token:
                    failing[name] = 1
            for name in self.subscribers:
                self.metrics.subscriber_lag.labels(name).set(lag[name])
                self.metrics.subscriber_failing.labels(name).set(failing[name])
            await asyncio.sleep(1.0)
