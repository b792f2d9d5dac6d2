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
import secrets
import socket
import time
from collections.abc import Iterable

import aiohttp

from relay import clock
from relay.delivery.config import DeliverySettings, Subscriber
from relay.delivery.context import DeliveryContext, Job
from relay.delivery.wakeups import Wakeups
from relay.delivery.worker import Worker
from relay.errors import StoreUnavailable
from relay.logs import get_logger
from relay.metrics import Metrics
from relay.store.base import Store
from relay.store.delivery_ledger import DeliveryLedger

log = get_logger("relay.delivery")


class Deliverer:
    """Who delivers what on this replica: starts a Worker (relay.delivery.worker) per
    (subscriber, account) that needs one, and owns the HTTP session and the gauges."""

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
        self._ctx = DeliveryContext(
            store=store,
            ledger=ledger,
            wakeups=wakeups,
            settings=settings,
            metrics=metrics,
            holder=self.holder,
            slots={s.name: asyncio.Semaphore(s.max_in_flight) for s in self.subscribers.values()},
        )
        self._workers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._jobs: dict[tuple[str, str], Job] = {}

    # -- lifecycle --------------------------------------------------------------------

    async def run(self) -> None:
        """Own the HTTP session, the sweep and the gauges until cancelled."""
        if not self.subscribers:
            return
        self._ctx.session = aiohttp.ClientSession(
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
        self._ctx.closing.set()
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
        if self._ctx.session is not None:
            await self._ctx.session.close()
        log.info("delivery.stopped", released=len(held))

    async def _release(self, job: Job) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self.ledger.release(job.subscriber.name, job.account, self.holder, job.token)

    # -- who delivers what ----------------------------------------------------------

    def poke_account(self, account: str) -> None:
        """An account advanced: make sure each of its subscribers has a worker here."""
        if self._ctx.closing.is_set():
            return
        for subscriber in self.subscribers.values():
            if subscriber.covers(account):
                self.poke(subscriber.name, account)

    def poke(self, name: str, account: str, force: bool = False) -> None:
        key = (name, account)
        elsewhere = self._ctx.elsewhere
        if not force and key in elsewhere:
            if time.monotonic() < elsewhere[key]:
                return
            del elsewhere[key]
        if key not in self._workers and not self._ctx.closing.is_set():
            job = Job(self.subscribers[name], account)
            self._jobs[key] = job
            self._workers[key] = asyncio.create_task(self._work(job))

    async def sweep(self) -> None:
        """Start a worker for every covered account with undelivered events: after a
        restart, after a hint was missed, or when another replica's worker died."""
        now = time.monotonic()
        elsewhere = self._ctx.elsewhere
        for key in [k for k, t in elsewhere.items() if t <= now]:
            del elsewhere[key]
        wildcard = any(s.every_account for s in self.subscribers.values())
        known = await self.ledger.accounts() if wildcard else []
        for subscriber in list(self.subscribers.values()):
            accounts = known if subscriber.every_account else subscriber.accounts
            for account in accounts:
                if (subscriber.name, account) in self._workers:
                    continue
                entry = await self.ledger.state(subscriber.name, account)
                if await self._ctx.pending(account, entry):
                    self.poke(subscriber.name, account, force=True)

    async def _work(self, job: Job) -> None:
        key = (job.subscriber.name, job.account)
        try:
            await Worker(self._ctx, job).run()
        finally:
            if self._workers.get(key) is asyncio.current_task():
                del self._workers[key]
                self._jobs.pop(key, None)

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
