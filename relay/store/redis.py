"""The Redis engine: one Lua script per append and per read (EVALSHA, loaded once),
against a single Redis or a Redis Cluster (every key of one call shares the `{account}` tag).

Timestamps come from Redis `TIME` inside the script, never from this process's clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any, Literal

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    RedisClusterException,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from relay.cursor import Cursor, to_cursor
from relay.errors import StoreUnavailable
from relay.events import Appended, Event, StoredEvent
from relay.store.asking import send_asking_on_its_commands_connection
from relay.store.base import Page, Retention, page_from
from relay.store.connections import RedisClient, client_from_url
from relay.store.keys import clock_key, ids_key, meta_key, stream_key
from relay.store.pipeline import Pipeliner
from relay.store.replicated import ReplicatedScript
from relay.wakeups.channels import WAKE_CHANNEL, account_channel, slot_channel


def _lua(name: str) -> str:
    return resources.files("relay.store").joinpath("lua", name).read_text()


APPEND_LUA = _lua("append.lua")
READ_LUA = _lua("read.lua")

ClusterMode = Literal["auto", "yes", "no"]

# Outcomes that mean "Redis did not answer": the caller gets 503 and the sender retries.
# A cluster that cannot be reached at all, or has no master for a slot, says it with
# RedisClusterException / ClusterDownError rather than a connection error.
UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    asyncio.TimeoutError,
    ClusterError,
    RedisClusterException,
)
# Transient while a slot migrates or a replica is promoted: the client library already
# follows MOVED/ASK; these mean "not yet", so the store tries again until its deadline.
# Safe for appends too: a re-run with the same event ids is a no-op (see append.lua).
TRANSIENT = (TryAgainError, ClusterDownError, ClusterError)
# Pipelines in flight per process (RELAY_REDIS_MAX_CONNECTIONS; see store/pipeline.py).
# redis-py 8 refuses a call beyond its pool size (MaxConnectionsError) rather than waiting,
# so the store queues its pipelines on a semaphore below the pool size: a burst waits its
# turn instead of failing, and the rest of the pool stays free for readiness pings and the
# dead-letter store.
MAX_IN_FLIGHT = 64
POOL_HEADROOM = 16
# Hints carry the stored event up to this size (RELAY_HINT_MAX_BYTES); a larger event's
# hint travels without its body, and the processes that need it read the store.
HINT_MAX_BYTES = 64 * 1024


def _options(timeout: float, in_flight: int) -> dict[str, Any]:
    """What every relay client says explicitly, standalone or cluster."""
    return {
        "protocol": 2,
        "decode_responses": False,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 30,
        # A dropped connection is retried: safe, because appends are idempotent.
        "retry": Retry(ExponentialBackoff(cap=0.25, base=0.02), retries=2),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "max_connections": in_flight + POOL_HEADROOM,
    }


def connect(url: str, timeout: float, in_flight: int = MAX_IN_FLIGHT) -> redis.Redis:
    # redis://, rediss://, unix:// or redis+sentinel:// (see connections.py).
    return client_from_url(url, **_options(timeout, in_flight))


def connect_cluster(url: str, timeout: float, in_flight: int = MAX_IN_FLIGHT) -> RedisCluster:
    """A Cluster client seeded by any node's URL: it learns the slot map, follows MOVED and
    ASK, and re-reads the map after a failover. Nothing is opened until the first call."""
    send_asking_on_its_commands_connection()
    return RedisCluster.from_url(
        url,
        **_options(timeout, in_flight),
        require_full_coverage=False,  # serve the accounts whose masters are up
        # On MOVED, patch the one slot in the map. The default (re-read the whole map every
        # 5th MOVED) closes every connection, in-flight calls of other requests included,
        # and those fail with "Connection closed" while a slot migrates.
        reinitialize_steps=0,
    )


async def is_cluster(url: str, timeout: float) -> bool:
    """Ask the seed node whether it runs in cluster mode (`INFO cluster`, else
    `CLUSTER INFO` for an ACL user that may not run INFO)."""
    probe = connect(url, timeout)
    try:
        try:
            info = await probe.info("cluster")
            return str(info.get("cluster_enabled", 0)) == "1"
        except RedisError as error:
            if isinstance(error, (RedisConnectionError, RedisTimeoutError)):
                raise
        try:
            await probe.execute_command("CLUSTER", "INFO")
            return True
        except RedisError as error:
            if "cluster support disabled" in str(error):
                return False
            if isinstance(error, (RedisConnectionError, RedisTimeoutError)):
                raise
            raise StoreUnavailable(
                f"cannot tell whether Redis is a cluster ({error}): check the URL's user and "
                "database (a cluster has only 0), or set RELAY_REDIS_CLUSTER=yes or no"
            ) from error
    finally:
        await probe.aclose()


class RedisStore:
    engine = "redis"

    def __init__(
        self,
        client: RedisClient | None,
        retention: Retention | None = None,
        timeout: float = 2.0,
        in_flight: int = MAX_IN_FLIGHT,
        hint_max_bytes: int = HINT_MAX_BYTES,
        min_replicas: int = 0,
    ) -> None:
        self.retention = retention or Retention()
        self.min_replicas = min_replicas
        self._replicated_append: ReplicatedScript | None = None
        self.timeout = timeout
        self.hint_max_bytes = hint_max_bytes
        # Constant arguments as bytes: redis-py passes bytes through without converting.
        self._limits = tuple(
            b"%d" % n
            for n in (
                self.retention.max_events,
                self.retention.max_age_us,
                self.retention.dedupe_window_us,
                self.retention.dedupe_max,
            )
        )
        self._hint_max = b"%d" % hint_max_bytes
        # The wake-up hints subscription opens its own connection from this URL.
        self._url: str | None = None
        self._connecting = asyncio.Lock()
        self._max_in_flight = in_flight
        self.client: RedisClient | None = None
        self.clustered = False
        # Redis Cluster 7+: the hint goes to the account's shard only (SPUBLISH).
        self.sharded_hints = False
        self._ready = False
        if client is not None:
            self._bind(client)

    def _bind(self, client: RedisClient) -> None:
        self.client = client
        self.clustered = isinstance(client, RedisCluster)
        self._append = client.register_script(APPEND_LUA)
        self._read = client.register_script(READ_LUA)
        self._pipeliner = Pipeliner(client, self._max_in_flight)
        # RELAY_REDIS_MIN_REPLICAS (see replicated.py): the append and WAIT on one connection,
        # outside the pipeliner (WAIT covers its own connection's writes only).
        self._replicated_append = None
        if self.min_replicas:
            if self.clustered:
                raise StoreUnavailable("RELAY_REDIS_MIN_REPLICAS is not supported on a cluster")
            wait_ms = int(self.timeout * 750)  # below the socket timeout
            self._replicated_append = ReplicatedScript(self._append, self.min_replicas, wait_ms)

    @classmethod
    def from_url(
        cls,
        url: str,
        retention: Retention | None = None,
        timeout: float = 2.0,
        cluster: ClusterMode | str = "auto",
        in_flight: int = MAX_IN_FLIGHT,
        hint_max_bytes: int = HINT_MAX_BYTES,
        min_replicas: int = 0,
    ) -> RedisStore:
        """`cluster="auto"` asks the server on first use (nothing is opened before)."""
        client: RedisClient | None = None
        if cluster == "yes":
            client = connect_cluster(url, timeout, in_flight)
        elif cluster == "no":
            client = connect(url, timeout, in_flight)
        store = cls(client, retention, timeout, in_flight, hint_max_bytes, min_replicas)
        store._url = url
        return store

    @property
    def url(self) -> str | None:
        """The URL the wake-up subscriptions connect with (None: a store built on a bare
        client, which publishes no hints)."""
        return self._url

    async def connected_client(self) -> RedisClient:
        """The redis-py client, once the mode is known (`Redis` or `RedisCluster`): use
        this, not `.client`, which is None until the first call in `auto` mode."""
        if not self._ready:
            async with self._connecting:
                if self.client is None:
                    assert self._url is not None
                    try:
                        clustered = await is_cluster(self._url, self.timeout)
                    except UNAVAILABLE as error:
                        raise _unavailable(error) from error
                    make = connect_cluster if clustered else connect
                    try:
                        self._bind(make(self._url, self.timeout, self._max_in_flight))
                    except RedisClusterException as error:  # e.g. a database other than 0
                        raise StoreUnavailable(f"cannot use this Redis Cluster: {error}") from error
                if isinstance(self.client, RedisCluster) and not self._ready:
                    # Learn the slot map once, before any concurrent call: redis-py 8.1's
                    # async cluster client breaks connections (AttributeError on
                    # `_writer`) when many first commands race to initialize it.
                    try:
                        await self.client.initialize()
                        self.sharded_hints = await _spublish_exists(self.client)
                    except UNAVAILABLE as error:
                        raise _unavailable(error) from error
                self._ready = True
        assert self.client is not None  # bound above, or the call raised
        return self.client

    async def append(self, account: str, events: Sequence[Event]) -> list[Appended]:
        # The script itself publishes one hint per stored event once the append has
        # committed; how depends on the server, known once connected.
        if not self._ready:
            await self.connected_client()
        args: list[Any] = [*self._limits, account, *self._wake_args(account), self._hint_max]
        for event in events:
            args += (event.id, event.encode())
        keys = [stream_key(account), clock_key(account), meta_key(account), ids_key(account)]
        # With RELAY_REDIS_MIN_REPLICAS the script is followed by WAIT on its connection:
        # the events are on that many replicas (or NotReplicated, a 503) before the caller
        # acknowledges its sender.
        script = "_append" if self._replicated_append is None else "_replicated_append"
        reply = await self._call(script, keys, args)
        return [
            Appended(event.id, to_cursor(reply[2 * i]), duplicate=reply[2 * i + 1] == b"1")
            for i, event in enumerate(events)
        ]

    def _wake_args(self, account: str) -> tuple[str, str]:
        if self._url is None:
            return "", ""
        if self.sharded_hints:
            return "SPUBLISH", account_channel(account)
        return "PUBLISH", WAKE_CHANNEL

    async def read(self, account: str, since: Cursor | None, limit: int) -> Page:
        keys = [stream_key(account), clock_key(account), meta_key(account)]
        reply = await self._call("_read", keys, ["" if since is None else since, limit])
        clock, low = to_cursor(reply[0]), to_cursor(reply[1])
        events = [StoredEvent(to_cursor(reply[i + 1]), reply[i]) for i in range(2, len(reply), 2)]
        return page_from(events, clock, low, since, limit)

    async def _call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        # One budget for the whole call, queueing and retries included: a hung server means
        # a 503 within 2 x RELAY_REDIS_TIMEOUT, not one timeout per retry of each layer.
        # Giving up on an append that did land is safe: the sender's retry is a duplicate.
        budget = 2 * self.timeout
        try:
            async with asyncio.timeout(budget):
                return await self._call_now(script, keys, args)
        except TimeoutError as error:
            raise StoreUnavailable(f"redis did not answer within {budget:g}s") from error

    async def _call_now(self, script: str, keys: list[str], args: list[Any]) -> Any:
        if not self._ready:
            await self.connected_client()
        deadline = time.monotonic() + 2 * self.timeout
        pause = 0.01
        while True:
            try:
                target = getattr(self, script)
                if isinstance(target, ReplicatedScript):
                    return await target(keys=keys, args=args)
                return await self._pipeliner.call(target, keys, args)
            except TRANSIENT as error:
                # TRYAGAIN: some of the account's keys moved and some not yet (MIGRATE
                # in progress); CLUSTERDOWN: a failover. Both pass within moments.
                if time.monotonic() + pause > deadline:
                    raise _unavailable(error) from error
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.2)
            except UNAVAILABLE as error:
                raise _unavailable(error) from error

    async def ping(self) -> None:
        """Readiness. On a cluster: ready while at least one master answers; the accounts
        of a master that is down get 503s of their own, and taking every replica out of
        the Service would turn a partial outage into a total one."""
        try:
            client = await self.connected_client()
            async with asyncio.timeout(2 * self.timeout):
                if not isinstance(client, RedisCluster):
                    await client.ping()
                    return
                await client.initialize()
                answers = await asyncio.gather(
                    *(client.ping(target_nodes=node) for node in client.get_primaries()),
                    return_exceptions=True,
                )
                failures = [a for a in answers if isinstance(a, BaseException)]
                if len(failures) == len(answers):
                    raise failures[0] if failures else RedisClusterException("no masters")
        except StoreUnavailable:
            raise
        except (*UNAVAILABLE, RedisError) as error:
            raise _unavailable(error) from error

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


async def _spublish_exists(cluster: RedisCluster) -> bool:
    """Redis 7+ (sharded pub/sub) or 6.2 (classic PUBLISH). An ACL that forbids SPUBLISH
    is reported here rather than by every append."""
    try:
        await cluster.execute_command("SPUBLISH", slot_channel(0), "")
        return True
    except UNAVAILABLE:
        raise
    except RedisError as error:
        if "doesn't exist" in str(error) or "unknown command" in str(error).lower():
            return False
        raise StoreUnavailable(f"cannot publish wake-ups on this cluster: {error}") from error


def _unavailable(error: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"redis did not answer: {type(error).__name__}")
