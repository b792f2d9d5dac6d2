"""The cross-replica wake-up subscription: one pub/sub connection per process.

redis.asyncio does not tell anyone when a subscription silently reconnects, so this uses
its own connection without retries, pings it, and reports every drop and every recovery;
the caller then re-reads everything, because hints sent during the gap are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from relay.cursor import Cursor

WAKE_CHANNEL = "relay:wake"
OnHint = Callable[[str, Cursor], None]
OnState = Callable[[bool, str], None]


def parse_hint(data: bytes) -> tuple[str, Cursor] | None:
    account, _, cursor = data.decode(errors="replace").rpartition(" ")
    if not account or not cursor.isdigit():
        return None
    return account, int(cursor)


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
        _raise_if_cancelled()
        client = redis.Redis.from_url(
            url,
            protocol=2,
            decode_responses=False,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            on_state(True, "subscribed")
            backoff = 0.05
            await _listen(pubsub, on_hint, timeout, ping_every)
        except (RedisError, OSError, TimeoutError) as error:
            on_state(False, type(error).__name__)
        finally:
            await _quietly(pubsub.aclose())
            await _quietly(client.aclose())
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 2.0)


async def _listen(pubsub, on_hint: OnHint, timeout: float, ping_every: float) -> None:
    last_heard = time.monotonic()
    pinged = False
    while True:
        _raise_if_cancelled()
        message = await pubsub.get_message(timeout=ping_every)
        now = time.monotonic()
        if message is not None:
            last_heard, pinged = now, False
            if message.get("type") == "message":
                hint = parse_hint(message["data"])
                if hint is not None:
                    on_hint(*hint)
            continue
        if now - last_heard > ping_every + timeout:
            # A paused or half-open server answers nothing, not even an error.
            raise TimeoutError("the wake-up subscription went silent")
        if not pinged:
            await pubsub.ping()
            pinged = True


def _raise_if_cancelled() -> None:
    """A cancellation can be swallowed inside redis-py's pub/sub read (seen under the chaos
    test: the task stays `cancelling` and the loop reads on); without this check, shutdown
    waits forever for this loop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _quietly(awaitable) -> None:
    # Bounded: a close that races a cancelled connect can wait on a lock nobody releases,
    # and shutdown must not hang on a subscription it is throwing away.
    with contextlib.suppress(RedisError, OSError, TimeoutError, RuntimeError):
        async with asyncio.timeout(1.0):
            await awaitable
