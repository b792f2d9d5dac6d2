"""Which master owns which slots, read the way the subscriptions need it: the map only,
on connections without retries, from the first node of a list that answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisError

from relay.wakeups.pubsub import subscriber_options
from relay.wakeups.tasks import quietly

FAILURES = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Master:
    name: str  # host:port, as MOVED names it
    connection_class: type
    connection_kwargs: dict[str, Any]
    slots: frozenset[int]


async def read_masters(urls: list[str], timeout: float) -> list[Master]:
    """The masters and their slots, as the first node that answers sees them."""
    error: BaseException = RedisError("no node to ask")
    for url in urls:
        cluster = RedisCluster.from_url(
            url, **subscriber_options(timeout), require_full_coverage=False
        )
        try:
            await cluster.nodes_manager.initialize()  # the map only (no COMMAND table)
            by_master: dict[str, tuple[ClusterNode, set[int]]] = {}
            for slot, nodes in cluster.nodes_manager.slots_cache.items():
                by_master.setdefault(nodes[0].name, (nodes[0], set()))[1].add(slot)
            return [
                Master(
                    name,
                    node.connection_class,
                    {**node.connection_kwargs, **subscriber_options(timeout)},
                    frozenset(slots),
                )
                for name, (node, slots) in sorted(by_master.items())
            ]
        except FAILURES as failure:
            error = failure
        finally:
            # cluster.aclose() closes only what cluster.initialize() opened.
            await quietly(cluster.nodes_manager.aclose())
            await quietly(cluster.nodes_manager.aclose("startup_nodes"))
    raise error


def node_url(seed: str, name: str) -> str:
    """The seed URL pointed at another node (same scheme, credentials and options)."""
    parts = urlsplit(seed)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{name}" if credentials else name
    return urlunsplit(parts._replace(netloc=netloc))
