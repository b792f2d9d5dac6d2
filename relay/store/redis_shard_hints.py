"""Sharded wake-ups on a Redis Cluster (SSUBSCRIBE, Redis 7+): one subscription per master.

The append script SPUBLISHes each hint on the channel of its account's slot, and Redis
delivers it to that shard's subscribers only (a classic PUBLISH would cross the cluster
bus to every node). So each process reads the slot map, opens one connection per master,
subscribes there to the channels of that master's slots, and reports the hints as flowing
only while every master's subscription is confirmed.

Each of these is a gap in the hints, reported as such (the caller then re-reads):
- a master's connection drops or goes silent: that master is retried on its own, the
  others' hints keep flowing, and the map is re-read in case a replica took over;
- a slot moves: its old master answers `sunsubscribe` once it gives the slot away, and the
  hints of appends redirected to the new master while the slot was migrating went to the
  new master's (absent) subscribers;
- a subscription is refused with MOVED: the map we read was already stale.
The last two re-read the map and subscribe everywhere again (~0.2 s per master).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError, ResponseError

from relay.store.redis_hints import (
    OnHint,
    OnState,
    listen,
    parse_hint,
    quietly,
    raise_if_cancelled,
    subscriber_options,
)
from relay.store.shard_channels import slot_channel


class Reshard(Exception):
    """The slot map changed under a subscription."""


@dataclass(frozen=True, slots=True)
class Shard:
    """A master and the wake-up channels of its slots."""

    name: str  # host:port
    connection_class: type
    connection_kwargs: dict[str, Any] = field(compare=False)
    channels: tuple[str, ...]


async def read_shards(urls: list[str], timeout: float) -> list[Shard]:
    """The masters and their slots, as the first node that answers sees them."""
    error: BaseException = RedisError("no node to ask")
    for url in urls:
        cluster = RedisCluster.from_url(
            url, **subscriber_options(timeout), require_full_coverage=False
        )
        try:
            await cluster.initialize()
            by_master: dict[str, tuple[Any, list[int]]] = {}
            for slot, nodes in cluster.nodes_manager.slots_cache.items():
                by_master.setdefault(nodes[0].name, (nodes[0], []))[1].append(slot)
            return [
                Shard(
                    name,
                    node.connection_class,
                    {**node.connection_kwargs, **subscriber_options(timeout)},
                    tuple(slot_channel(slot) for slot in sorted(slots)),
                )
                for name, (node, slots) in sorted(by_master.items())
            ]
        except (RedisError, OSError, TimeoutError) as failure:
            error = failure
        finally:
            await quietly(cluster.aclose())
    raise error


def node_url(seed: str, name: str) -> str:
    """The seed URL pointed at another node (same scheme, credentials and options)."""
    parts = urlsplit(seed)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{name}" if credentials else name
    return urlunsplit(parts._replace(netloc=netloc))


class _Board:
    """Which masters' subscriptions are confirmed; hints flow when all of them are."""

    def __init__(self, on_state: OnState) -> None:
        self.on_state = on_state
        self.expected: set[str] = set()
        self.up: set[str] = set()
        self.was_all_up = False  # in this round: a round that never got there backs off

    @property
    def all_up(self) -> bool:
        return bool(self.expected) and self.up >= self.expected

    def expect(self, names: set[str]) -> None:
        self.expected, self.up, self.was_all_up = names, set(), False

    def mark_up(self, name: str) -> None:
        was = self.all_up
        self.up.add(name)
        if self.all_up and not was:
            self.was_all_up = True
            self.on_state(True, f"subscribed on {len(self.expected)} masters")

    def mark_down(self, reason: str, name: str | None = None) -> None:
        if name is None:
            self.up.clear()
        else:
            self.up.discard(name)
        self.on_state(False, reason)


async def watch_shard_hints(
    url: str,
    on_hint: OnHint,
    on_state: OnState,
    timeout: float = 2.0,
    ping_every: float = 1.0,
) -> None:
    """Run until cancelled; `on_state(up, reason)` when all masters' hints start or stop
    flowing."""
    board = _Board(on_state)
    known = [url]
    backoff = 0.05
    while True:
        raise_if_cancelled()
        try:
            shards = await read_shards(known, timeout)
        except (RedisError, OSError, TimeoutError) as error:
            on_state(False, f"slot map unreadable: {type(error).__name__}")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
            continue
        known = [url, *(node_url(url, shard.name) for shard in shards)]
        board.expect({shard.name for shard in shards})
        tasks = [
            asyncio.create_task(_watch_shard(shard, board, on_hint, timeout, ping_every))
            for shard in shards
        ]
        try:
            reason = await _until_reshard(tasks, board, shards, known, timeout)
        finally:
            await _stop(tasks)
        board.mark_down(reason)
        if board.was_all_up:
            backoff = 0.05  # a slot moved: subscribe again at once
        else:
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)


async def _until_reshard(
    tasks: list[asyncio.Task], board: _Board, shards: list[Shard], known: list[str], timeout: float
) -> str:
    """Wait for a shard to see the map change; while a master is down, re-read the map
    every second to find the replica that took its slots."""
    while True:
        done, _ = await asyncio.wait(tasks, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = task.exception()
            if isinstance(error, Reshard):
                return str(error)
            raise error or RuntimeError("a shard subscription ended")
        if not board.all_up:
            try:
                fresh = await read_shards(known, timeout)
            except (RedisError, OSError, TimeoutError):
                continue
            if fresh != shards:
                return "a replica took over"


async def _watch_shard(
    shard: Shard, board: _Board, on_hint: OnHint, timeout: float, ping_every: float
) -> None:
    handle = _handler(on_hint)
    backoff = 0.05
    while True:
        raise_if_cancelled()
        pool = redis.ConnectionPool(
            connection_class=shard.connection_class, **shard.connection_kwargs
        )
        client = redis.Redis(connection_pool=pool)
        pubsub = client.pubsub()
        try:
            await _subscribe(pubsub, shard.channels, handle, timeout)
            board.mark_up(shard.name)
            backoff = 0.05
            await listen(pubsub, handle, timeout, ping_every)
        except ResponseError as error:  # MOVED: this master no longer owns a slot
            raise Reshard(f"subscription refused: {str(error)[:60]}") from error
        except (RedisError, OSError, TimeoutError) as error:
            board.mark_down(f"{shard.name}: {type(error).__name__}", shard.name)
        finally:
            await quietly(pubsub.aclose())
            await quietly(client.aclose())
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 2.0)


def _handler(on_hint: OnHint) -> Callable[[dict], None]:
    def handle(message: dict) -> None:
        kind = message.get("type")
        if kind == "smessage":
            hint = parse_hint(message["data"])
            if hint is not None:
                on_hint(*hint)
        elif kind == "sunsubscribe":
            raise Reshard("a slot moved")

    return handle


async def _subscribe(
    pubsub, channels: tuple[str, ...], handle: Callable[[dict], None], timeout: float
) -> None:
    """Subscribe to every channel and wait for each confirmation. SSUBSCRIBE takes the
    channels of one slot only, so the commands go out in one pipelined write (one call
    per channel takes ~1 s for a third of the slots; this ~0.2 s)."""
    first, rest = channels[0], channels[1:]
    await pubsub.ssubscribe(first)
    connection = pubsub.connection
    if rest:
        await connection.send_packed_command(
            connection.pack_commands([("SSUBSCRIBE", channel) for channel in rest])
        )
    confirmed = 0
    async with asyncio.timeout(timeout + len(channels) / 10_000):
        while confirmed < len(channels):
            message = await pubsub.get_message(timeout=timeout)
            if message is None:
                continue
            if message.get("type") == "ssubscribe":
                confirmed += 1
            else:
                handle(message)


async def _stop(tasks: list[asyncio.Task]) -> None:
    # Repeated: a cancellation swallowed inside redis-py's read is re-delivered (see
    # raise_if_cancelled), and shutdown must not wait on a subscription being replaced.
    for _ in range(50):
        pending = [task for task in tasks if not task.done()]
        if not pending:
            break
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.1)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()
