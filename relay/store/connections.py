"""The one place a Redis URL becomes a client: `redis://`, `rediss://`, `unix://`, or
`redis+sentinel://` (a master found through Redis Sentinel, and found again after a
failover, by redis-py's sentinel client).

    redis+sentinel://[[user]:password@]host1:26379[,host2:26379...]/<service>[/<db>]

The password (and user) are the master's; the sentinels are asked with the same password
only if RELAY_REDIS_SENTINEL_PASSWORD says so (sentinels usually have none or their own).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import unquote

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel://"
DEFAULT_SENTINEL_PORT = 26379

# What the store holds: a single Redis (found directly or through Sentinel) or a cluster.
RedisClient: TypeAlias = redis.Redis | RedisCluster


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def is_sentinel(url: str) -> bool:
    return url.startswith(SENTINEL_SCHEME)


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Raise ValueError, saying what is wrong, for anything but the form above."""
    rest = url[len(SENTINEL_SCHEME) :]
    credentials, _, rest = rest.rpartition("@")
    hosts, _, path = rest.partition("/")
    parts = [part for part in path.split("/") if part]
    if not hosts or not parts or len(parts) > 2:
        raise ValueError(
            "expected redis+sentinel://[:password@]host:port[,host:port...]/<service>[/<db>]"
        )
    sentinels = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item, "", "")
        host = host.strip("[]") or item.strip()
        try:
            sentinels.append((host, int(port) if port else DEFAULT_SENTINEL_PORT))
        except ValueError:
            raise ValueError(f"{item!r} is not host:port") from None
    try:
        db = int(parts[1]) if len(parts) == 2 else 0
    except ValueError:
        raise ValueError(f"{parts[1]!r} is not a database number") from None
    username, password = None, None
    if credentials:
        user, _, secret = credentials.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    return SentinelTarget(tuple(sentinels), unquote(parts[0]), db, username, password)


def client_from_url(url: str, **options: Any) -> redis.Redis:
    """A client for `url` with redis-py `options` (timeouts, pool size, retry...)."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **options)
    target = parse_sentinel_url(url)
    timeout = options.get("socket_timeout")
    sentinel_options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": options.get("socket_connect_timeout", timeout),
        "protocol": options.get("protocol", 2),
    }
    sentinel_password = os.environ.get("RELAY_REDIS_SENTINEL_PASSWORD")
    if sentinel_password:
        sentinel_options["password"] = sentinel_password
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_options)
    # The pool asks the sentinels for the master's address on every new connection, and a
    # connection that finds its server demoted (READONLY) or gone is dropped: after a
    # failover, the next attempt (redis-py's retry, or the caller's) reaches the new master.
    master: redis.Redis = sentinel.master_for(
        target.service,
        redis_class=redis.Redis,
        db=target.db,
        username=target.username,
        password=target.password,
        **options,
    )
    return master
