"""Classic pub/sub wake-ups: one subscription per process to the channel every append
script PUBLISHes on (standalone Redis, or a Redis 6.2 cluster, whose bus broadcasts it).

redis.asyncio does not tell anyone when a subscription silently reconnects, so this uses
its own connection without retries, pings it, and reports every drop and every recovery;
the handler then re-reads everything, because hints sent during the gap are gone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from relay.store.connections import client_from_url
from relay.wakeups.base import WakeupHandler, parse_hint
from relay.wakeups.channels import WAKE_CHANNEL
from relay.wakeups.tasks import quietly, raise_if_cancelled

MessageHandler = Callable[[dict[str, Any]], Awaitable[None]]


def subscriber_options(timeout: float) -> dict[str, Any]:
    """No retries: a silent reconnect would hide the hints lost while it was away."""
    return {
        "protocol": 2,
        "decode_responses": False,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }


class PubSubBroker:
    def __init__(
        self,
        url: str,
        timeout: float = 2.0,
        ping_every: float = 1.0,
        channel: str = WAKE_CHANNEL,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.ping_every = ping_every
        self.channel = channel

    async def run(self, handler: WakeupHandler) -> None:
        """Run until cancelled; `handler.on_state(up, reason)` on each subscription change."""
        backoff = 0.05
        while True:
            raise_if_cancelled()
            client = client_from_url(self.url, **subscriber_options(self.timeout))
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                handler.on_state(True, "subscribed")
                backoff = 0.05
                await listen(pubsub, hints_to(handler, "message"), self.timeout, self.ping_every)
            except (RedisError, OSError, TimeoutError) as error:
                handler.on_state(False, type(error).__name__)
            finally:
                await quietly(pubsub.aclose())
                await quietly(client.aclose())
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)


def hints_to(handler: WakeupHandler, kind: str) -> MessageHandler:
    async def handle(message: dict[str, Any]) -> None:
        if message.get("type") == kind:
            hint = parse_hint(message["data"])
            if hint is not None:
                handler.on_hint(hint)

    return handle


async def listen(pubsub: PubSub, handle: MessageHandler, timeout: float, ping_every: float) -> None:
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
