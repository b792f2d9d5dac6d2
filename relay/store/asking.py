"""ASKING on the connection its command goes out on.

After an ASK redirect, redis-py's asyncio cluster client sends ASKING, then the command, as
two calls to the slot's new master, each taking a connection from the node's free list at
the front and giving it back at the end. With more than one connection free, the command
leaves on another connection than its ASKING: the new master, which only imports the slot,
answers MOVED back to the old one, which answers ASK again, until the client's redirects
are spent ("TTL exhausted"). While a slot's keys sit on its new master and before it owns
the slot, concurrent calls for its accounts failed that way (14 of 320 appends here; the
test is tests/test_cluster.py's ask-phase test) and reached senders as 503s.

A connection given back goes to the front instead, so the command takes the one its ASKING
has just left: RedisCluster._execute_command awaits nothing between the two calls. Most
recently used first is also the better pool order: a burst's extra connections rest at the
back. redis-py is pinned below its next major for this and cluster_map's reads.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.cluster import ClusterNode

_release = ClusterNode.release


def _release_to_the_front(self: ClusterNode, connection: Any) -> None:
    _release(self, connection)
    free = self._free
    if free and free[-1] is connection:
        free.rotate(1)  # the one just given back is the next one taken


def send_asking_on_its_commands_connection() -> None:
    """Idempotent; the cluster store calls it before making its client."""
    setattr(ClusterNode, "release", _release_to_the_front)  # noqa: B010 (a named patch)
