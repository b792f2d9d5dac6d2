"""Live delivery as domain logic: the empty-poll fast path, long-poll, and the SSE loop.

Every path arms its wake-up *before* it reads, so an append between the read and the wait
always wakes it. A read is answered from the account's tail when the tail covers its
cursor (see fanout/tail.py), else from the store, whose answer re-seeds the tail.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from relay import clock
from relay.auth import Viewer
from relay.cursor import Cursor, format_cursor
from relay.fanout.hub import Hub, Round
from relay.fanout.limits import Slots
from relay.fanout.poll import PollAnswer, SharedAnswers, visible
from relay.fanout.push import Parked, PushTarget
from relay.logs import get_logger
from relay.metrics import Metrics
from relay.settings import LiveSettings
from relay.store.base import Page, Store
from relay.wakeups.base import Broker, Hint, IsAffected
from relay.wakeups.brokers import broker_for
from relay.wakeups.disorder import with_disorder

log = get_logger("relay.live")


@dataclass(frozen=True, slots=True)
class Batch:
    """What an SSE stream writes after one read."""

    page: Page
    wires: list[bytes]
    stamps: list[Cursor]


@dataclass(frozen=True, slots=True)
class _SharedRead:
    round: Round
    task: asyncio.Future[Page]


class Live:
    """The fan-out, and the wake-up broker's handler (relay.wakeups.WakeupHandler)."""

    def __init__(
        self,
        store: Store,
        settings: LiveSettings,
        metrics: Metrics,
        broker: Broker | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.broker = broker if broker is not None else broker_for(store)
        self.hub = Hub(
            settings.watermark_ttl, metrics, settings.tail_max_bytes, settings.tail_max_events
        )
        self.tails = self.hub.tails
        self._fastpath = metrics.child(metrics.fastpath_polls)
        self._sse_lag = metrics.child(metrics.delivery_lag, "sse")
        self._sse_pushed = metrics.child(metrics.sse_pushed_events)
        self._woken = {mode: metrics.child(metrics.wakeups, mode) for mode in ("sse", "longpoll")}

        def refused(limit: str) -> None:
            metrics.limit_refusals.labels(limit).inc()

        self.streams = Slots(
            "SSE streams", settings.max_streams, settings.max_streams_per_user, refused
        )
        self.waiters = Slots(
            "long-poll waiters", settings.max_waiters, settings.max_waiters_per_user, refused
        )
        self._closing: asyncio.Future[None] | None = None
        self._empty_bodies: dict[Cursor, bytes] = {}
        self._answers = SharedAnswers()
        self._shared_reads: dict[tuple[str, Cursor, int], _SharedRead] = {}

    # -- lifecycle --------------------------------------------------------------------

    @property
    def closing(self) -> asyncio.Future[None]:
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_future()
        return self._closing

    def close(self) -> None:
        """Shutdown: long-polls answer now, SSE streams end so browsers reconnect elsewhere."""
        if not self.closing.done():
            self.closing.set_result(None)
        self.hub.wake_all()

    def on_stored(self, account: str, cursor: Cursor) -> None:
        """This process stored events up to `cursor`: read them back even before their
        hint arrives, and wake local waiters now (hints may be down)."""
        self.tails.expect(account, cursor)
        self.hub.advance(account, cursor)

    # -- the broker's handler -----------------------------------------------------------

    def on_hint(self, hint: Hint) -> None:
        self.hub.on_hint(hint)

    def on_state(self, up: bool, reason: str) -> None:
        was_up = self.hub.hints_up
        # Hints sent while they were not flowing are gone: drop every tail, re-read all.
        self.hub.forget_heads("resubscribe" if up else "subscription_drop")
        self.hub.hints_up = up
        self.metrics.pubsub_up.set(1 if up else 0)
        if up:
            self.hub.wake_all()
            if not was_up:
                log.info("pubsub.up", reason=reason)
        elif was_up:
            self.metrics.pubsub_reconnects.inc()
            log.warning("pubsub.down", reason=reason)

    def on_gap(self, is_affected: IsAffected) -> None:
        """Some accounts' hints may have been missed (their cluster slot moved)."""
        self.metrics.pubsub_slot_moves.inc()
        self.hub.forget(is_affected, "slot_move")

    async def watch(self) -> None:
        """Run the wake-up broker and, beside it, the slow safety re-read."""
        safety = asyncio.create_task(self._safety_rereads())
        try:
            await self.broker.run(with_disorder(self))
        finally:
            safety.cancel()

    async def _safety_rereads(self) -> None:
        """Every waiter re-reads every `safety_reread` while hints are down, and every
        `watermark_ttl` while they flow: a hint lost without a reconnect (published on a
        cluster node while its slot was migrating there, say) delays an SSE stream or a
        long-poll no longer than it can delay a plain poll's fast path."""
        since_all = 0.0
        while True:
            await asyncio.sleep(self.settings.safety_reread)
            since_all += self.settings.safety_reread
            if not self.hub.hints_up:
                self.hub.wake_all()
                since_all = 0.0
            elif since_all >= self.settings.watermark_ttl:
                self.hub.recheck()
                since_all = 0.0

    # -- reads ------------------------------------------------------------------------

    def _empty_at(self, cursor: Cursor) -> bytes:
        body = self._empty_bodies.get(cursor)
        if body is None:
            if len(self._empty_bodies) > 4096:
                self._empty_bodies.clear()
            body = self._empty_bodies[cursor] = (
                b'{"timestamp":"%s","updates":[],"has_updates":false,"more":false,"reset":false}'
                % format_cursor(cursor).encode()
            )
        return body

    async def read(
        self,
        viewer: Viewer,
        since: Cursor | None,
        limit: int,
        round_: Round | None = None,
    ) -> PollAnswer:
        """One poll: from the tail when it covers the cursor, else from the store (a read
        shared with the other waiters armed in `round_`, when given)."""
        account = viewer.account
        page = self.tails.read(account, since, limit)
        if page is not None:
            if not page.events and page.cursor == since:
                self._fastpath.inc()
                return PollAnswer(self._empty_at(page.cursor), [], page)
        elif round_ is not None and since is not None:
            page = await self._read_armed(account, round_, since, limit)
        else:
            page = await self._read_store(account, since, limit)
        return self._answers.render(account, since, page, viewer)

    async def long_poll(
        self, viewer: Viewer, since: Cursor | None, limit: int, wait: float
    ) -> PollAnswer:
        """Hold until something visible arrives, `wait` passes, or the process shuts down."""
        deadline = time.monotonic() + min(wait, self.settings.max_wait)
        with self.waiters.hold(viewer.account, viewer.user):
            self.metrics.waiters.inc()
            try:
                while True:
                    waiter = self.hub.arm_waiter(viewer.account)
                    try:
                        answer = await self.read(viewer, since, limit, waiter.round)
                        page = answer.page
                        if answer.delivered or page.reset or page.more:
                            return answer
                        since = page.cursor
                        remaining = deadline - time.monotonic()
                        if remaining <= 0 or self.closing.done():
                            return answer
                        # Only the waiter's own future: close() fires every waiter.
                        if await _woken(waiter.future, remaining):
                            self._woken["longpoll"].inc()
                    finally:
                        self.hub.disarm(waiter)
            finally:
                self.metrics.waiters.dec()

    async def stream(
        self, viewer: Viewer, since: Cursor, limit: int, target: PushTarget
    ) -> AsyncGenerator[Batch, None]:
        """The SSE loop after its cursor is fixed: batches until shutdown. At the head the
        stream parks, and events that follow its cursor are pushed to `target` from their
        hints (fanout/push.py) until something wakes it to read again."""
        account = viewer.account
        while not self.closing.done():
            waiter = self.hub.arm_waiter(account)
            try:
                page = self.tails.read(account, since, limit)
                if page is None:
                    page = await self._read_armed(account, waiter.round, since, limit)
                wires, stamps = visible(page, viewer)
                if wires or page.reset or page.cursor != since:
                    yield Batch(page, wires, stamps)
                since = page.cursor
                if page.more or waiter.future.done():
                    continue  # more to read, or an append arrived while this batch was written
            finally:
                self.hub.disarm(waiter)
            parked = Parked(viewer, since, target, self._sse_lag, self._sse_pushed)
            self.hub.park(account, parked)
            try:
                await parked.woken  # close() wakes every parked stream too
            finally:
                self.hub.unpark(account, parked)
            since = parked.cursor
            self._woken["sse"].inc()

    async def _read_armed(self, account: str, round_: Round, since: Cursor, limit: int) -> Page:
        """One store read for every waiter of an account woken to read the same range.

        An append wakes all of an account's streams and long-polls at once, and they all
        read from the same cursor: a thousand identical store calls per event. A waiter
        joins a read only if it was started in the same round, i.e. after the wake-up that
        preceded the waiter's arming; anything appended later ends the round and wakes the
        waiter to read again, so sharing can never hide an event (see Hub.Round).
        """
        key = (account, since, limit)
        shared = self._shared_reads.get(key)
        if shared is None or shared.round is not round_:
            shared = _SharedRead(round_, asyncio.ensure_future(self._read_store(*key)))
            self._shared_reads[key] = shared
            shared.task.add_done_callback(lambda _task: self._forget(key, shared))
        # A waiter that goes away (client disconnect) must not cancel the others' read.
        return await asyncio.shield(shared.task)

    async def _read_store(self, account: str, since: Cursor | None, limit: int) -> Page:
        ticket = self.tails.ticket()
        page = await self.store.read(account, since, limit)
        self.tails.seed(account, since, page, ticket)
        return page

    def _forget(self, key: tuple[str, Cursor, int], shared: _SharedRead) -> None:
        if self._shared_reads.get(key) is shared:
            del self._shared_reads[key]
        if not shared.task.cancelled():
            shared.task.exception()  # retrieved: every waiter that is left got it raised

    def observe_delivery(self, mode: str, stamps: list[Cursor]) -> None:
        if stamps:
            metrics = self.metrics
            lag = self._sse_lag if mode == "sse" else metrics.child(metrics.delivery_lag, mode)
            lag.observe_lags(clock.now_us(), stamps)


async def _woken(future: asyncio.Future[None], timeout: float) -> bool:
    """Wait for the waiter's `future` at most `timeout` seconds; False if the time ran out
    (the future is then resolved by the timer: it is the waiter's own, nobody else's)."""
    timed_out = False

    def release() -> None:
        nonlocal timed_out
        if not future.done():
            timed_out = True
            future.set_result(None)

    handle = asyncio.get_running_loop().call_later(timeout, release)
    try:
        await future
    finally:
        handle.cancel()
    return not timed_out
