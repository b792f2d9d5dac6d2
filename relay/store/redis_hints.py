"""The cross-replica wake-up subscription: one pub/sub connection per process.

redis.asyncio does not tell anyone when a subscription silently reconnects, so this uses
its own connection without retries, pings it, and reports every drop and every recovery;
the caller then re-reads everything, because hints sent during the gap are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from relay.cursor import Cursor
from relay.store.connections import client_from_url

WAKE_CHANNEL = "relay:wake"
OnHint = Callable[[str, Cursor], None]
OnState = Callable[[bool, str], None]
Handler = Callable[[dict], Awaitable[None]]


def parse_hint(data: bytes) -> tuple[str, Cursor] | None:
    account, _, cursor = data.decode(errors="replace").rpartition(" ")
    if not account or not cursor.isdigit():
        return None
    return account, int(cursor)


def subscriber_options(timeout: float) -> dict:
    """No retries: a silent reconnect would hide the hints lost while it was away."""
    return {
        "protocol": 2,
        "decode_responses": False,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }


async def watch_hints(
    url: str,
    on_hint: OnHint,
    on_state: OnState,
    timeout: float = 2.0,
    ping_every: float = 1.0,
    channel: str = WAKE_CHANNEL,
) -> None:
    """Run until cancelled; `on_state(up, reason)` on each subscription change."""
    backoff = 0.05
    while True:
        raise_if_cancelled()
        client = client_from_url(url, **subscriber_options(timeout))
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            on_state(True, "subscribed")
            backoff = 0.05
            await listen(pubsub, _hints_to(on_hint, "message"), timeout, ping_every)
        except (RedisError, OSError, TimeoutError) as error:
            on_state(False, type(error).__name__)
        finally:
            await quietly(pubsub.aclose())
            await quietly(client.aclose())
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 2.0)


def _hints_to(on_hint: OnHint, kind: str) -> Handler:
    async def handle(message: dict) -> None:
        if message.get("type") == kind:
            hint = parse_hint(message["data"])
            if hint is not None:
                on_hint(*hint)

    return handle


async def listen(pubsub, handle: Handler, timeout: float, ping_every: float) -> None:
    """Hand every message to `handle` until the connection fails or goes silent."""
    last_heard = time.monotonic()
    pinged = False
    while True:
        raise_if_cancelled()
        message = await pubsub.get_message(timeout=ping_every)
        now = time.monotonic()
        if message is not None:
            last_heard, pinged = now, False
            await handle(message)
            continue
        if now - last_heard > ping_every + timeout:
            # A paused or half-open server answers nothing, not even an error.
            raise TimeoutError("the wake-up subscription went silent")
        if not pinged:
            await pubsub.ping()
            pinged = True


def raise_if_cancelled() -> None:
    """A cancellation can be swallowed inside redis-py's pub/sub read (seen under the chaos
    test: the task stays `cancelling` and the loop reads on); without this check, shutdown
    waits forever for this loop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def quietly(awaitable) -> None:
    # Bounded: a close that races a cancelled connect can wait on a lock nobody releases,
    # and shutdown must not hang on a subscription it is throwing away.
    with contextlib.suppress(RedisError, OSError, TimeoutError, RuntimeError):
        async with asyncio.timeout(1.0):
            await awaitable
