"""One message to one subscriber, tried until it is delivered: backoff with jitter between
attempts, each failure recorded in the ledger, given up when the lease is lost or when the
message is no longer the one to send (its event trimmed, its reset overtaken).
"""

from __future__ import annotations

from enum import Enum

from relay import clock
from relay.cursor import Cursor
from relay.delivery.context import DeliveryContext, Job
from relay.delivery.sender import post_event
from relay.logs import get_logger

log = get_logger("relay.delivery")


class Sent(Enum):
    DELIVERED = "delivered"  # 2xx, and the cursor moved under our token
    LOST = "lost"  # our token is stale (lease taken, or rewound), or we are stopping
    REREAD = "reread"  # the event is no longer the head (trimmed): read the stream again


async def send(
    ctx: DeliveryContext,
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
    assert ctx.session is not None
    job.attempts = 0
    while True:
        if job.lost.is_set() or ctx.closing.is_set():
            return Sent.LOST
        async with ctx.slots[subscriber.name]:
            outcome = await post_event(ctx.session, subscriber, msg_id, body)
        ctx.metrics.child(ctx.metrics.subscriber_deliveries, subscriber.name, outcome.label).inc()
        if outcome.delivered:
            entry = await ctx.ledger.advance(subscriber.name, account, ctx.holder, job.token, stamp)
            job.attempts = 0
            if entry.refused:
                log.warning("delivery.fenced", subscriber=subscriber.name, account=account)
                return Sent.LOST
            return Sent.DELIVERED
        job.attempts += 1
        delay = ctx.settings.retry_delay(job.attempts)
        entry = await ctx.ledger.fail(
            subscriber.name,
            account,
            ctx.holder,
            job.token,
            job.attempts,
            outcome.detail,
            Cursor(clock.now_us() + int(delay * 1e6)),
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
        await ctx.pause(delay, job.lost)
        if not await _still_current(ctx, account, cursor, stamp, is_reset):
            return Sent.REREAD


async def _still_current(
    ctx: DeliveryContext, account: str, cursor: Cursor, stamp: Cursor, is_reset: bool
) -> bool:
    """Is the message being retried still the one to send? An event: while it is
    retained (once trimmed, the subscriber is told to reset instead). A reset: while
    the low watermark has not moved on (then a newer reset replaces it)."""
    if is_reset:
        page = await ctx.store.read(account, cursor, 1)
        return page.reset and page.low == stamp
    # Event timestamps are above the stream's origin, so reading from just below the
    # event says "reset" exactly when the event itself was trimmed.
    page = await ctx.store.read(account, Cursor(stamp - 1), 1)
    return not page.reset and bool(page.events) and page.events[0].timestamp == stamp
