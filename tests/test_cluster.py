"""relay on a real 3-master Redis Cluster: the Store contract unchanged, the exactly-once
race with two `relay serve` processes, the same while a slot migrates between masters,
and readiness that follows the masters down and back up by itself."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import time
import urllib.error
import urllib.request

import pytest
import redis

from relay.errors import StoreUnavailable
from relay.events import Event
from relay.store.base import Retention
from relay.store.keys import account_keys, stream_key
from relay.store.redis import RedisStore
from relay.wakeups.channels import WAKE_CHANNEL, account_channel
from tests import test_store_contract as contract
from tests.cluster import LocalCluster, key_slot
from tests.credentials import API
from tests.race import PER_PUBLISHER, PUBLISHERS, run_race
from tests.servers import RelayProcess, redis_cluster_binary, wait_until
from tests.test_exactly_once import relay_env

# Every engine-agnostic contract test (those that take only `make_store`), collected again
# here against the cluster; `make_store` below builds cluster-backed stores.
for _name, _test in inspect.getmembers(contract, inspect.iscoroutinefunction):
    if _name.startswith("test_") and list(inspect.signature(_test).parameters) == ["make_store"]:
        globals()[f"{_name}_on_a_cluster"] = _test
CONTRACT_TESTS = [name for name in globals() if name.endswith("_on_a_cluster")]


@pytest.fixture
async def make_store(cluster_url):
    made = []

    def make(retention=None, url=None):
        store = RedisStore.from_url(url or cluster_url, retention)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


def test_the_contract_suite_was_collected_against_the_cluster():
    assert len(CONTRACT_TESTS) >= 10


async def test_any_node_url_is_detected_as_a_cluster_seed(redis_cluster, cluster_url):
    for url in redis_cluster.urls:
        store = RedisStore.from_url(url)
        try:
            await store.ping()
            assert store.clustered
        finally:
            await store.close()


async def test_every_master_serves_its_accounts_and_keys_stay_on_one_slot(
    redis_cluster, make_store
):
    store = make_store()
    by_master = redis_cluster.accounts_on_each_master()
    for master, accounts in by_master.items():
        for account in accounts:
            start = (await store.read(account, None, 10)).cursor
            appended = await store.append(account, contract.events(3, account=account))
            page = await store.read(account, start, 10)
            assert [e.timestamp for e in page.events] == [a.timestamp for a in appended]
            owner = redis_cluster.nodes[master].client()
            assert all(owner.exists(key) for key in account_keys(account))
            assert len({key_slot(key) for key in account_keys(account)}) == 1


async def test_two_relay_processes_on_the_cluster_deliver_exactly_once(cluster_url):
    relays = [RelayProcess(relay_env(cluster_url)).start() for _ in range(2)]
    try:
        urls = [relay.url for relay in relays]
        await run_race(urls, list(reversed(urls)))
    finally:
        for relay in relays:
            relay.stop()


class Migrator:
    """Moves one account's slot round the masters, in a thread, until told to stop.
    Each phase (slot open, keys moved) is held until the account's stream has grown,
    so appends and reads really meet the MIGRATING and ASK states."""

    def __init__(self, cluster: LocalCluster, account: str, growth: int = 60) -> None:
        self.cluster = cluster
        self.slot = key_slot(stream_key(account))
        self.key = stream_key(account)
        self.growth = growth
        self.stop = threading.Event()
        self.migrations = 0
        self.error: BaseException | None = None
        seed = cluster.nodes[0]
        self.watch = redis.RedisCluster(host="127.0.0.1", port=seed.port, socket_timeout=5)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _size(self) -> int:
        return self.watch.zcard(self.key)

    def _hold(self, phase: str) -> None:
        start = self._size()
        deadline = time.monotonic() + 20
        while not self.stop.is_set() and time.monotonic() < deadline:
            if self._size() >= start + self.growth:
                return
            self.stop.wait(0.005)

    def _run(self) -> None:
        try:
            wait_until(lambda: self.stop.is_set() or self._size() > 0, timeout=60, what="events")
            while not self.stop.is_set():
                target = (self.cluster.owner(self.slot) + 1) % len(self.cluster.nodes)
                self.cluster.migrate_slot(self.slot, target, self._hold)
                self.migrations += 1
        except BaseException as error:
            self.error = error
        finally:
            self.watch.close()

    def __enter__(self) -> Migrator:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive()


async def test_exactly_once_while_the_accounts_slot_migrates_between_masters(
    redis_cluster, cluster_url
):
    relays = [RelayProcess(relay_env(cluster_url)).start() for _ in range(2)]
    try:
        urls = [relay.url for relay in relays]
        with Migrator(redis_cluster, "race") as migrator:
            figures = await run_race(urls, list(reversed(urls)), account="race")
        assert migrator.error is None, migrator.error
        # Each migration holds two phases for 60 appends each: the 3200 events of the
        # race leave room for several round trips of the slot.
        print(f"slot migrations during the race: {migrator.migrations}")
        assert migrator.migrations >= 3, migrator.migrations
        assert figures["events"] == PUBLISHERS * PER_PUBLISHER
    finally:
        for relay in relays:
            relay.stop()


def error_count(cluster: LocalCluster, prefix: str) -> int:
    """Error replies starting with `prefix` (TRYAGAIN, ASK, MOVED) the masters have sent."""
    return sum(
        int(node.client().info("errorstats").get(f"errorstat_{prefix}", {}).get("count", 0))
        for node in cluster.nodes
    )


def tryagain_count(cluster: LocalCluster) -> int:
    return error_count(cluster, "TRYAGAIN")


async def test_an_append_that_meets_tryagain_mid_migration_lands_once(redis_cluster, make_store):
    store = make_store()
    account = "half-moved"
    start = (await store.read(account, None, 10)).cursor  # clock and meta exist, no stream
    slot = key_slot(stream_key(account))
    target = (redis_cluster.owner(slot) + 1) % 3
    loop = asyncio.get_running_loop()
    before = tryagain_count(redis_cluster)
    appended: list = []

    def while_migrating(phase: str) -> None:
        if phase != "migrating":
            return
        # Some of the script's keys exist on the source, some do not: Redis answers
        # TRYAGAIN until MIGRATE has moved them all; the append must wait it out.
        future = asyncio.run_coroutine_threadsafe(
            store.append(account, [Event(id="only", type="t", account=account)]), loop
        )
        appended.append(future)
        wait_until(lambda: tryagain_count(redis_cluster) > before, what="TRYAGAIN")

    await asyncio.to_thread(redis_cluster.migrate_slot, slot, target, while_migrating)
    (result,) = await asyncio.wrap_future(appended[0])
    again = await store.append(account, [Event(id="only", type="t", account=account)])
    assert again[0].duplicate and again[0].timestamp == result.timestamp
    page = await store.read(account, start, 10)
    assert [e.timestamp for e in page.events] == [result.timestamp]
    assert redis_cluster.owner(slot) == target


async def test_concurrent_calls_sent_to_the_slots_new_master_with_ask_all_land(
    redis_cluster, make_store
):
    # Keys moved, ownership not yet: every call is answered ASK by the old master and must
    # be sent with ASKING, on the same connection, to the new one. redis-py sent the two on
    # different connections of a node's pool once several were free, and the new master's
    # MOVED back ran the redirects out (14 of 320 failed here before relay/store/asking.py).
    store = make_store()
    account = "asked"
    await store.append(account, contract.events(2, prefix="seed-", account=account))
    slot = key_slot(stream_key(account))
    target = (redis_cluster.owner(slot) + 1) % 3
    loop = asyncio.get_running_loop()
    before = error_count(redis_cluster, "ASK")
    outcome: dict[str, int] = {}

    async def rounds() -> None:
        async def one(r: int, i: int) -> None:
            for _ in range(i):  # each in its own pipeline, all of them in flight together
                await asyncio.sleep(0)
            batch = contract.events(1, prefix=f"r{r}-{i}-", account=account)
            try:
                await store.append(account, batch)
                outcome["ok"] = outcome.get("ok", 0) + 1
            except StoreUnavailable:
                outcome["failed"] = outcome.get("failed", 0) + 1

        for r in range(40):
            await asyncio.gather(*(one(r, i) for i in range(8)))

    def while_migrating(phase: str) -> None:
        if phase == "moved":
            asyncio.run_coroutine_threadsafe(rounds(), loop).result(timeout=120)

    await asyncio.to_thread(redis_cluster.migrate_slot, slot, target, while_migrating)
    assert error_count(redis_cluster, "ASK") - before >= 320
    assert outcome == {"ok": 320}


async def test_concurrent_appends_and_reads_while_slots_migrate_miss_nothing(
    redis_cluster, make_store
):
    store = make_store()
    account = "moving"
    start = (await store.read(account, None, 10)).cursor
    appended: list[int] = []
    done = asyncio.Event()

    async def writer(w: int) -> None:
        for i in range(150):
            batch = contract.events(2, prefix=f"w{w}-{i}-", account=account)
            # A call that outlives its budget mid-migration (a 503 to a sender) is sent
            # again with the same ids, as a sender would: it lands once either way.
            stored = await retrying(lambda batch=batch: store.append(account, batch))
            appended.extend(a.timestamp for a in stored)

    async def reader() -> list[int]:
        cursor, seen = start, []
        while True:
            page = await retrying(lambda cursor=cursor: store.read(account, cursor, 1000))
            assert not page.reset
            seen += [e.timestamp for e in page.events]
            cursor = page.cursor
            if done.is_set() and not page.more and len(seen) >= len(appended):
                return seen
            await asyncio.sleep(0.001)

    with Migrator(redis_cluster, account, growth=40) as migrator:
        reading = asyncio.create_task(reader())
        await asyncio.gather(*(writer(w) for w in range(4)))
        done.set()
        seen = await asyncio.wait_for(reading, 60)
    assert migrator.error is None, migrator.error
    assert migrator.migrations >= 2
    assert seen == sorted(appended) and len(set(seen)) == 1200


async def retrying(call, attempts: int = 5):
    for attempt in range(attempts):
        try:
            return await call()
        except StoreUnavailable:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.1)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        assert error.headers.get("Retry-After")
        return error.code


def test_readyz_follows_the_masters_down_and_recovers_by_itself(redis_cluster, cluster_url):
    relay = RelayProcess(relay_env(cluster_url, RELAY_REDIS_TIMEOUT="500ms")).start()
    try:
        assert _status(relay.url) == 200
        redis_cluster.pause()
        try:
            wait_until(lambda: _status(relay.url) == 503, timeout=30, what="503 while down")
        finally:
            redis_cluster.resume()
        redis_cluster.wait_ok(timeout=60)
        wait_until(lambda: _status(relay.url) == 200, timeout=60, what="200 once back")
        # And it serves again, on every master, without a restart.
        for accounts in redis_cluster.accounts_on_each_master(per_node=1).values():
            body = json.dumps({"account": accounts[0], "type": "t", "data": {}}).encode()
            request = urllib.request.Request(
                f"{relay.url}/api/publish", data=body, headers=API, method="POST"
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 201
    finally:
        relay.stop()


async def test_a_manual_failover_mid_traffic_loses_and_repeats_nothing():
    cluster = LocalCluster(binary=redis_cluster_binary()).start()
    # No trimming: however long the failover takes, every event stays readable.
    store = RedisStore.from_url(cluster.url, Retention(max_events=0, max_age_us=0))
    try:
        account = cluster.accounts_on_each_master(per_node=1)[0][0]
        replica = cluster.add_replica(0)
        start = (await store.read(account, None, 10)).cursor
        appended: list[int] = []
        failed_over = asyncio.Event()

        async def writer(w: int) -> None:
            i = 0
            while not failed_over.is_set() or i < 50:
                batch = contract.events(1, prefix=f"w{w}-{i}-", account=account)
                appended.extend(a.timestamp for a in await store.append(account, batch))
                i += 1

        async def fail_over() -> None:
            deadline = time.monotonic() + 30
            while len(appended) <= 200:  # poll, with a deadline, for traffic under way
                assert time.monotonic() < deadline, "no traffic before the failover"
                await asyncio.sleep(0.01)
            await asyncio.to_thread(cluster.failover, replica)
            failed_over.set()

        await asyncio.gather(fail_over(), *(writer(w) for w in range(4)))
        assert cluster.owner(key_slot(stream_key(account))) == replica
        seen, cursor = [], start
        while True:
            page = await store.read(account, cursor, 1000)
            assert not page.reset
            seen += [e.timestamp for e in page.events]
            cursor = page.cursor
            if not page.more:
                break
        assert seen == sorted(appended) and len(set(seen)) == len(appended)
    finally:
        await store.close()
        cluster.stop()


async def test_cross_replica_wakeups_on_the_cluster_while_the_slot_migrates(
    redis_cluster, cluster_url
):
    """Live delivery on a cluster: SSE streams and long-polls on B are woken by appends on
    A (the append script's SPUBLISH reaches B's subscription on the account's master),
    while the account's slot moves between masters."""
    import aiohttp

    from tests.credentials import token
    from tests.sse_client import EventSource
    from tests.test_live_replicas import LongPoller, publish_all

    a, b = (RelayProcess(relay_env(cluster_url)).start() for _ in range(2))
    total = 480
    try:
        async with aiohttp.ClientSession() as session:
            sources = [EventSource([b.url], token(user=f"s{i}")).start(session) for i in range(5)]
            pollers = [LongPoller(b.url, f"p{i}") for i in range(5)]
            for poller in pollers:
                await poller.start_cursor(session)
            for source in sources:
                await asyncio.wait_for(source.connected.wait(), 20)
            assert_subscribed_per_shard(redis_cluster, "acme", relays=2)
            with Migrator(redis_cluster, "acme", growth=40) as migrator:
                deadline = time.monotonic() + 120
                polling = [asyncio.create_task(p.run(session, total, deadline)) for p in pollers]
                order = await publish_all(session, [a.url], 4, total // 4)
                await asyncio.gather(*polling)
                while any(len(s.updates) < total for s in sources):
                    assert time.monotonic() < deadline, "SSE clients did not get everything"
                    await asyncio.sleep(0.01)
            for source in sources:
                await source.stop()
            # Each migration was a gap in B's hints; B subscribes again by itself.
            deadline = time.monotonic() + 10
            while True:
                metrics = await (await session.get(f"{b.url}/metrics")).text()
                if "relay_pubsub_up 1.0" in metrics:
                    break
                assert time.monotonic() < deadline, "B's hints did not come back"
                await asyncio.sleep(0.05)
            assert_subscribed_per_shard(redis_cluster, "acme", relays=2)
        assert migrator.error is None, migrator.error
        assert migrator.migrations >= 1
        for client in [*sources, *pollers]:
            assert [u["id"] for u in client.updates] == order
        # B followed the account's slot to each new master rather than losing its hints.
        moves = [m for m in metrics.splitlines() if m.startswith("relay_pubsub_slot_moves")]
        assert float(moves[0].split()[-1]) >= 1
        woken = [line for line in metrics.splitlines() if line.startswith("relay_wakeups_total")]
        assert sum(float(line.split()[-1]) for line in woken) > 0
    finally:
        a.stop()
        b.stop()


def assert_subscribed_per_shard(cluster: LocalCluster, account: str, relays: int) -> None:
    """Every relay listens on the account's shard channel at its master, and nobody on the
    classic broadcast channel."""
    owner = cluster.nodes[cluster.owner(key_slot(stream_key(account)))].client()
    wait_until(
        lambda: (
            owner.execute_command("PUBSUB", "SHARDNUMSUB", account_channel(account))[1] >= relays
        ),
        timeout=10,
        what="both relays to subscribe on the account's master",
    )
    for node in cluster.nodes:
        assert node.client().execute_command("PUBSUB", "NUMSUB", WAKE_CHANNEL)[1] == 0
