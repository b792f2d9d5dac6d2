"""The Redis engine: one Lua script per append and per read (EVALSHA, loaded once).

Timestamps come from Redis `TIME` inside the script, never from this process's clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from relay.cursor import Cursor
from relay.errors import StoreUnavailable
from relay.events import Appended, Event, StoredEvent
from relay.store.base import Page, Retention, page_from
from relay.store.keys import clock_key, ids_key, meta_key, stream_key
from relay.store.redis_hints import WAKE_CHANNEL, OnHint, OnState, watch_hints


def _lua(name: str) -> str:
    return resources.files("relay.store").joinpath("lua", name).read_text()


APPEND_LUA = _lua("append.lua")
READ_LUA = _lua("read.lua")

# Outcomes that mean "Redis did not answer": the caller gets 503 and the sender retries.
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)


def connect(url: str, timeout: float, max_connections: int = 64) -> redis.Redis:
    """A client that retries a dropped connection (safe: appends are idempotent) and
    queues callers for a pooled connection instead of failing when all are busy."""
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        protocol=2,
        decode_responses=False,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.25, base=0.02), retries=2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return redis.Redis(connection_pool=pool)


class RedisStore:
    engine = "redis"

    def __init__(
        self,
        client: Any,
        retention: Retention | None = None,
        url: str | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.client = client
        # The hints subscription opens its own connection from this URL (see redis_hints).
        self.url = url
        self.timeout = timeout
        self.retention = retention or Retention()
        self._append = client.register_script(APPEND_LUA)
        self._read = client.register_script(READ_LUA)
        self._limits = (
            self.retention.max_events,
            self.retention.max_age_us,
            self.retention.dedupe_window_us,
            self.retention.dedupe_max,
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        retention: Retention | None = None,
        timeout: float = 2.0,
        max_connections: int = 64,
    ) -> RedisStore:
        return cls(connect(url, timeout, max_connections), retention, url, timeout)

    async def append(self, account: str, events: Sequence[Event]) -> list[Appended]:
        args: list[Any] = [*self._limits, account, WAKE_CHANNEL if self.url else ""]
        for event in events:
            args += (event.id, event.encode())
        keys = [stream_key(account), clock_key(account), meta_key(account), ids_key(account)]
        reply = await self._call(self._append, keys, args)
        return [
            Appended(event.id, int(reply[2 * i]), duplicate=reply[2 * i + 1] == b"1")
            for i, event in enumerate(events)
        ]

    async def read(self, account: str, since: Cursor | None, limit: int) -> Page:
        keys = [stream_key(account), clock_key(account), meta_key(account)]
        reply = await self._call(self._read, keys, ["" if since is None else since, limit])
        clock, low = int(reply[0]), int(reply[1])
        events = [StoredEvent(int(reply[i + 1]), reply[i]) for i in range(2, len(reply), 2)]
        return page_from(events, clock, low, since, limit)

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except UNAVAILABLE as error:
            raise StoreUnavailable(f"redis did not answer: {type(error).__name__}") from error

    async def watch(self, on_hint: OnHint, on_state: OnState) -> None:
        """Deliver the hints of every replica's appends until cancelled."""
        if self.url is None:
            on_state(False, "no url to subscribe with")
            return
        await watch_hints(self.url, on_hint, on_state, timeout=self.timeout)

    async def ping(self) -> None:
        try:
            await self.client.ping()
        except (*UNAVAILABLE, RedisError) as error:
            raise StoreUnavailable(f"redis did not answer: {type(error).__name__}") from error

    async def close(self) -> None:
        await self.client.aclose()
