"""Sharded wake-ups on a Redis Cluster (SSUBSCRIBE, Redis 7+): one subscription per master.

The append script SPUBLISHes each hint on the channel of its account's slot, and Redis
delivers it to that shard's subscribers only (a classic PUBLISH would cross the cluster
bus to every node). So each process reads the slot map, opens one connection per master,
subscribes there to the channels of that master's slots, and reports the hints as flowing
while every master's subscription is confirmed.

What can make a hint go missing, and what is reported then (the caller re-reads):
- a master's connection drops or goes silent: "down" until it is back (the other masters'
  hints keep flowing meanwhile), and the map is re-read every second in case a replica
  took over, in which case everything is subscribed again from the new map;
- a slot moves: its old master answers `sunsubscribe` once it gives the slot away; asked
  to subscribe again, it answers MOVED with the new owner, where the slot's channel is
  subscribed; once that is confirmed, the slot's accounts are reported as a gap (hints
  of appends redirected there during the migration went to nobody). One slot costs two
  round trips, so a reshard moving thousands of slots never stops the other slots' hints.
- a slot moves to a master not in the map (a new node): everything again, from a new map.
- a failover: a dead master is the first case. After a manual failover the old master
  gives its slots away (`sunsubscribe`) but, being a replica now, accepts the channels
  again instead of answering MOVED; it would forward the new master's hints only once its
  replication link is up. That is a gap: everything again, from a new map. The map is
  also re-read every `map_check` seconds, in case a change announced itself no other way.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import redis.asyncio as redis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import Connection
from redis.exceptions import MovedError, ResponseError

from relay.wakeups.base import WakeupHandler, parse_hint
from relay.wakeups.channels import account_slot, channel_slot, slot_channel
from relay.wakeups.cluster_map import FAILURES, Master, node_url, read_masters
from relay.wakeups.pubsub import listen
from relay.wakeups.tasks import cancel_and_wait, quietly, raise_if_cancelled


class Reshard(Exception):
    """The slot map changed beyond what following one slot can fix."""


class ShardedBroker:
    """Sharded pub/sub wake-ups (see the module's docstring)."""

    def __init__(
        self, url: str, timeout: float = 2.0, ping_every: float = 1.0, map_check: float = 10.0
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.ping_every = ping_every
        self.map_check = map_check

    async def run(self, handler: WakeupHandler) -> None:
        """Run until cancelled."""
        await ShardHints(self.url, handler, self.timeout, self.ping_every, self.map_check).run()


class ShardHints:
    """The subscriptions of one process: one `_Subscription` per master."""

    def __init__(
        self,
        url: str,
        handler: WakeupHandler,
        timeout: float,
        ping_every: float,
        map_check: float,
    ) -> None:
        self.url = url
        self.map_check = map_check
        self.handler = handler
        self.timeout = timeout
        self.ping_every = ping_every
        self.subscriptions: dict[str, _Subscription] = {}
        self.up: set[str] = set()
        self.flowing = False
        self.flowed = False  # in this round: a round that never got there backs off
        self.hops: dict[int, int] = {}

    async def run(self) -> None:
        known, backoff = [self.url], 0.05
        while True:
            raise_if_cancelled()
            try:
                masters = await read_masters(known, self.timeout)
            except FAILURES as error:
                self.down(f"slot map unreadable: {type(error).__name__}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            known = [self.url, *(node_url(self.url, master.name) for master in masters)]
            self.subscriptions = {m.name: _Subscription(self, m) for m in masters}
            self.up, self.flowed, self.hops = set(), False, {}
            tasks = [asyncio.create_task(s.run()) for s in self.subscriptions.values()]
            try:
                reason = await self._until_reshard(tasks, masters, known)
            finally:
                await cancel_and_wait(tasks)
            self.down(reason)
            if self.flowed:
                backoff = 0.05
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _until_reshard(
        self, tasks: list[asyncio.Task[None]], masters: list[Master], known: list[str]
    ) -> str:
        """Until a subscription gives up on the map, or the map disagrees with ours: read
        every `map_check` seconds, and every second while a master is down (to find the
        replica that took its slots)."""
        checked = time.monotonic()
        suspects: set[int] = set()
        while True:
            done, _ = await asyncio.wait(tasks, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if isinstance(error, Reshard):
                    return str(error)
                raise error or RuntimeError("a shard subscription ended")
            every = self.map_check if self.up >= set(self.subscriptions) else 1.0
            if time.monotonic() - checked < every:
                continue
            checked = time.monotonic()
            try:
                fresh = await read_masters(known, self.timeout)
            except FAILURES:
                continue
            if {m.name for m in fresh} != {m.name for m in masters}:
                return "the masters changed"
            # A slot that moved without our noticing; twice in a row, so that a move whose
            # `sunsubscribe` is still on its way is not taken for one.
            misplaced = self._misplaced(fresh)
            if misplaced & suspects:
                return f"{len(misplaced & suspects)} slots moved unnoticed"
            suspects = misplaced

    def _misplaced(self, fresh: list[Master]) -> set[int]:
        ours = {slot: name for name, sub in self.subscriptions.items() for slot in sub.slots}
        return {
            slot
            for master in fresh
            for slot in master.slots
            if ours.get(slot) != master.name and slot not in self.hops
        }

    # -- reports from the subscriptions -----------------------------------------------

    def mark_up(self, name: str) -> None:
        self.up.add(name)
        for slot in self.subscriptions[name].slots:  # moved here, subscribed on connecting
            self.hops.pop(slot, None)
        if not self.flowing and self.up >= set(self.subscriptions):
            self.flowing = self.flowed = True
            self.handler.on_state(True, f"subscribed on {len(self.up)} masters")

    def mark_down(self, name: str, reason: str) -> None:
        self.up.discard(name)
        self.down(reason)

    def down(self, reason: str) -> None:
        self.flowing = False
        self.handler.on_state(False, reason)

    async def moved(self, slot: int, owner: str) -> None:
        """A master said MOVED for `slot`: subscribe its channel at the new owner."""
        self.hops[slot] = self.hops.get(slot, 0) + 1
        target = self.subscriptions.get(owner)
        if target is None or self.hops[slot] > 8:
            raise Reshard(f"slot {slot} moved to {owner}")
        await target.add(slot)

    def arrived(self, slot: int) -> None:
        """A moved slot is subscribed at its new owner: its accounts re-read."""
        self.hops.pop(slot, None)
        self.handler.on_gap(lambda account: account_slot(account) == slot)


class _Subscription:
    """One master's connection, subscribed to the channels of the slots it owns."""

    def __init__(self, hints: ShardHints, master: Master) -> None:
        self.hints = hints
        self.master = master
        self.slots = set(master.slots)
        self.live: PubSub | None = None  # once every slot's channel is confirmed
        self.adding: set[int] = set()  # slots that moved here, not yet confirmed

    async def run(self) -> None:
        hints, backoff = self.hints, 0.05
        while True:
            raise_if_cancelled()
            pool = redis.ConnectionPool(
                connection_class=self.master.connection_class, **self.master.connection_kwargs
            )
            client = redis.Redis(connection_pool=pool)
            pubsub = client.pubsub()
            try:
                await self._subscribe_all(pubsub)
                self.live = pubsub
                hints.mark_up(self.master.name)
                backoff = 0.05
                while True:
                    try:
                        await listen(pubsub, self._handle, hints.timeout, hints.ping_every)
                    except MovedError as moved:
                        await self.gave_away(moved.slot_id, f"{moved.host}:{moved.port}")
            except ResponseError as error:  # MOVED while subscribing: the map was stale
                raise Reshard(f"subscription refused: {str(error)[:80]}") from error
            except FAILURES as error:
                hints.mark_down(self.master.name, f"{self.master.name}: {type(error).__name__}")
            finally:
                self.live = None
                self.adding.clear()  # the next connection subscribes every slot
                await quietly(pubsub.aclose())
                await quietly(client.aclose())
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def gave_away(self, slot: int, owner: str) -> None:
        """This master said MOVED: the slot is `owner`'s now."""
        self.slots.discard(slot)
        await self.hints.moved(slot, owner)
        if not self.slots:
            # A master drained of every slot has nothing to subscribe to (and a pub/sub
            # connection without a subscription cannot be pinged): start from a new map.
            raise Reshard(f"{self.master.name} gave away its last slot")

    async def add(self, slot: int) -> None:
        """A slot that moved here. Without a connection, the next one subscribes it."""
        self.slots.add(slot)
        if self.live is not None:
            self.adding.add(slot)
            await self.live.execute_command("SSUBSCRIBE", slot_channel(slot))

    async def _subscribe_all(self, pubsub: PubSub) -> None:
        """SSUBSCRIBE takes the channels of one slot only, so the commands go out in one
        pipelined write (one call per channel takes ~1 s for a third of the slots; this
        ~0.2 s), then every confirmation is awaited."""
        pending = set(self.slots)
        await pubsub.ssubscribe(slot_channel(min(pending)))
        # Connected by the ssubscribe above (redis-py's PubSub declares it as only None).
        connection = cast(Connection, pubsub.connection)
        rest = sorted(pending - {min(pending)})
        if rest:
            await connection.send_packed_command(
                connection.pack_commands([("SSUBSCRIBE", slot_channel(slot)) for slot in rest])
            )
        timeout = self.hints.timeout
        async with asyncio.timeout(timeout + len(pending) / 10_000):
            while pending:
                message = await pubsub.get_message(timeout=timeout)
                if message is None:
                    continue
                if message.get("type") == "ssubscribe":
                    pending.discard(channel_slot(message["channel"]))
                else:
                    await self._handle(message, pubsub)

    async def _handle(self, message: dict[str, Any], pubsub: PubSub | None = None) -> None:
        kind = message.get("type")
        if kind == "smessage":
            hint = parse_hint(message["data"])
            if hint is not None:
                self.hints.handler.on_hint(hint)
        elif kind == "sunsubscribe":
            # This master gave the slot away; asked again, it names the new owner (MOVED).
            target = pubsub or self.live
            assert target is not None  # listen() runs only once `live` is set
            await target.execute_command("SSUBSCRIBE", message["channel"])
        elif kind == "ssubscribe":
            slot = channel_slot(message["channel"])
            if slot not in self.adding:
                # Asked where a slot went, this node subscribed us itself: it is now a
                # replica (a failover), which forwards nothing until it has synced.
                raise Reshard(f"{self.master.name} gave its slots to a replica")
            self.adding.discard(slot)
            self.hints.arrived(slot)
