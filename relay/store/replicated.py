"""Acknowledged means replicated, when asked: RELAY_REDIS_MIN_REPLICAS.

Redis replication is asynchronous: an append the master applied and relay acknowledged can
be lost when a replica that had not received it yet is promoted. With `min_replicas` > 0 the
append script is followed, on the same connection and in the same round trip (a pipeline),
by `WAIT min_replicas timeout`; fewer replicas than asked within the timeout is a 503, so
the provider retries and the event id keeps the retry idempotent. WAIT cannot run inside
a Lua script, which is why it is a second command and not part of append.lua.

WAIT counts the replicas that acknowledged this connection's last write. A retried append
whose events are all duplicates writes nothing, so the connection's last write could
predate the original append; a tiny write to the account's own slot (`...:replicated`, a
key that expires) after the script makes WAIT cover everything the master applied before
it, the original append included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from relay.errors import StoreUnavailable

MARK_TTL_MS = 60_000


class NotReplicated(StoreUnavailable):
    code = "not_replicated"


class ReplicatedScript:
    """Called like a redis-py Script (`keys=`, `args=`), answering the script's reply once
    `min_replicas` replicas have it, or raising NotReplicated."""

    def __init__(self, script: AsyncScript, min_replicas: int, wait_ms: int) -> None:
        self.script = script
        self.min_replicas = min_replicas
        self.wait_ms = max(1, wait_ms)

    async def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        client = self.script.registered_client
        assert not isinstance(client, RedisCluster)  # RedisStore refuses min_replicas there
        pipe = client.pipeline(transaction=False)
        async with pipe:
            await self.script(keys=keys, args=args, client=pipe)
            pipe.set(f"{keys[0]}:replicated", b"1", px=MARK_TTL_MS)
            pipe.execute_command("WAIT", self.min_replicas, self.wait_ms)
            reply, _, acknowledged = await pipe.execute()
        if int(acknowledged) < self.min_replicas:
            raise NotReplicated(
                f"the append reached {int(acknowledged)} of the {self.min_replicas} replicas "
                f"RELAY_REDIS_MIN_REPLICAS asks for within {self.wait_ms} ms; retry"
            )
        return reply
