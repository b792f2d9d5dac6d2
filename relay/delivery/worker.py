"""One (subscriber, account) worker: take the account's lease (or learn who holds it), keep
it renewed, and walk the stream in order from the durable cursor, one message in flight,
until the lease is lost, the deliverer stops, or the account stays idle long enough.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from relay.cursor import ZERO, Cursor
from relay.delivery.attempts import Sent, send
from relay.delivery.context import DeliveryContext, Job
from relay.delivery.messages import id_and_type, reset_message
from relay.errors import StoreUnavailable
from relay.logs import get_logger

log = get_logger("relay.delivery")


class Worker:
    def __init__(self, ctx: DeliveryContext, job: Job) -> None:
        self.ctx = ctx
        self.job = job

    async def run(self) -> None:
        """Until the job is done; the store being down only pauses it (with backoff)."""
        job, ctx = self.job, self.ctx
        failures = 0
        while not ctx.closing.is_set():
            try:
                done = await self._hold_and_deliver()
                failures = 0
            except StoreUnavailable as error:
                failures += 1
                log.warning(
                    "delivery.store_unavailable",
                    subscriber=job.subscriber.name,
                    account=job.account,
                    reason=error.detail,
                )
                await ctx.pause(ctx.settings.retry_delay(failures))
                continue
            if done:
                return

    async def _hold_and_deliver(self) -> bool:
        """One lease's worth of work. True when the worker may end (idle, or another
        replica is keeping up); False to try again (lease lost, lease held elsewhere)."""
        job, ctx = self.job, self.ctx
        name, account = job.subscriber.name, job.account
        entry = await ctx.ledger.acquire(name, account, ctx.holder, ctx.settings.lease)
        if entry.refused:
            job.token = 0
            if not await ctx.pending(account, entry):
                # The holder is keeping up: check again once its lease could have lapsed.
                ctx.elsewhere[(name, account)] = time.monotonic() + entry.lease_left
                return True
            # The holder is behind, or dead, or handing over: ask again at the account's
            # next append, or once its lease could have lapsed (a third of a lease at most,
            # as a holder that stops releases its leases early).
            signal = ctx.wakeups.next_append(account)
            pause = min(entry.lease_left, ctx.settings.lease / 3)
            await ctx.pause(pause + random.uniform(0, ctx.settings.lease / 10), signal)
            return False
        job.token, job.attempts = entry.granted, 0
        job.lost = asyncio.Event()
        renewer = asyncio.create_task(self._renew())
        try:
            return await self._deliver_stream(entry.cursor)
        finally:
            renewer.cancel()
            job.head = None

    async def _renew(self) -> None:
        """Keep the lease while delivering; a refused renewal means it was taken."""
        job, ctx = self.job, self.ctx
        interval = ctx.settings.lease / 3
        last_renewed = asyncio.get_running_loop().time()
        while not job.lost.is_set():
            await asyncio.sleep(interval)
            try:
                entry = await ctx.ledger.renew(
                    job.subscriber.name, job.account, ctx.holder, job.token, ctx.settings.lease
                )
            except StoreUnavailable:
                if asyncio.get_running_loop().time() - last_renewed > ctx.settings.lease:
                    job.lost.set()
                continue
            if entry.refused:
                log.warning(
                    "delivery.lease_lost", subscriber=job.subscriber.name, account=job.account
                )
                job.lost.set()
            else:
                last_renewed = asyncio.get_running_loop().time()

    async def _deliver_stream(self, cursor: Cursor | None) -> bool:
        job, ctx = self.job, self.ctx
        subscriber, account = job.subscriber, job.account
        # Wake-ups come without new events too (every waiter re-reads now and then), so
        # idleness is time since the last event, not since the last wake-up.
        active_at = time.monotonic()
        while not (job.lost.is_set() or ctx.closing.is_set()):
            signal = ctx.wakeups.next_append(account)  # armed before the read
            page = await ctx.store.read(
                account, ZERO if cursor is None else cursor, ctx.settings.page
            )
            if page.reset and cursor is not None:
                # Trimmed before it was delivered: say so once, then carry on from here.
                job.head = cursor
                sent = await send(
                    ctx, job, cursor, *reset_message(account, page.low), page.low, is_reset=True
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
                sent = await send(ctx, job, cursor, msg_id, wire, event.timestamp)
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
                entry = await ctx.ledger.advance(
                    subscriber.name, account, ctx.holder, job.token, skipped
                )
                if entry.refused:
                    return False
                cursor = skipped
            if page.more:
                continue
            idle_left = ctx.settings.idle_release - (time.monotonic() - active_at)
            if idle_left <= 0 or not await self._idle(signal, idle_left):
                return await self._give_up_if_still_idle(signal)
        return False

    async def _idle(self, signal: asyncio.Future[None], timeout: float) -> bool:
        """Wait for the next append. False after `timeout` without one."""
        job, ctx = self.job, self.ctx
        waiters: list[asyncio.Future[Any]] = [
            signal,
            asyncio.ensure_future(job.lost.wait()),
            asyncio.ensure_future(ctx.closing.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters[1:]:
                waiter.cancel()
        return signal.done() or job.lost.is_set() or ctx.closing.is_set()

    async def _give_up_if_still_idle(self, signal: asyncio.Future[None]) -> bool:
        job, ctx = self.job, self.ctx
        await ctx.ledger.release(job.subscriber.name, job.account, ctx.holder, job.token)
        job.token = 0
        # An append while releasing fired `signal` (poke saw this worker still running):
        # deliver it rather than end.
        return not signal.done()
