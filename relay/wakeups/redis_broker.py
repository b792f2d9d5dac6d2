"""Wake-ups for the Redis engine: which broker depends on the server, known once connected."""

from __future__ import annotations

import asyncio

from relay.errors import StoreUnavailable
from relay.store.redis import RedisStore
from relay.wakeups.base import WakeupHandler
from relay.wakeups.pubsub import PubSubBroker
from relay.wakeups.sharded import ShardedBroker


class RedisBroker:
    """One subscription per master on a Redis 7+ cluster (sharded pub/sub), else one to
    the seed node (a classic PUBLISH on a cluster reaches every node's subscribers)."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store

    async def run(self, handler: WakeupHandler) -> None:
        url = self.store.url
        if url is None:
            handler.on_state(False, "no url to subscribe with")
            await asyncio.Event().wait()  # until cancelled
            return
        backoff = 0.05
        while True:  # the mode is known once Redis has answered
            try:
                await self.store.connected_client()
                break
            except StoreUnavailable as error:
                handler.on_state(False, str(error))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        timeout = self.store.timeout
        if self.store.sharded_hints:
            await ShardedBroker(url, timeout=timeout).run(handler)
        else:
            await PubSubBroker(url, timeout=timeout).run(handler)
