"""The Store contract, run unchanged against the memory engine and a real Redis."""

from __future__ import annotations

import asyncio

import pytest

from relay import clock
from relay.store.base import Retention
from relay.store.memory import MemoryStore
from relay.store.redis import RedisStore
from tests.helpers import events
from tests.servers import RedisServer


@pytest.fixture
async def make_store(engine, request):
    made = []

    def make(retention: Retention | None = None, url: str | None = None):
        if engine == "memory":
            store = MemoryStore(retention)
        else:
            store = RedisStore.from_url(url or request.getfixturevalue("redis_url"), retention)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


async def test_timestamps_strictly_increase_and_reads_return_them_in_order(make_store):
    store = make_store()
    start = await store.read("acme", None, 10)
    appended = await store.append("acme", events(5))
    stamps = [a.timestamp for a in appended]
    assert stamps == sorted(set(stamps))
    assert stamps[0] > start.cursor
    page = await store.read("acme", start.cursor, 100)
    assert [e.timestamp for e in page.events] == stamps
    assert page.cursor == stamps[-1] and not page.more and not page.reset


async def test_no_cursor_means_from_now(make_store):
    store = make_store()
    await store.append("acme", events(3))
    page = await store.read("acme", None, 100)
    assert page.events == [] and not page.reset
    later = await store.append("acme", events(1, prefix="late"))
    assert (await store.read("acme", page.cursor, 100)).events[0].timestamp == later[0].timestamp


async def test_a_full_page_says_more_and_its_cursor_is_the_last_event(make_store):
    store = make_store()
    start = (await store.read("acme", None, 10)).cursor
    stamps = [a.timestamp for a in await store.append("acme", events(5))]
    first = await store.read("acme", start, 2)
    assert first.more and first.cursor == stamps[1]
    second = await store.read("acme", first.cursor, 2)
    third = await store.read("acme", second.cursor, 2)
    assert [e.timestamp for e in first.events + second.events + third.events] == stamps
    assert not third.more


async def test_same_id_is_stored_once_with_its_original_timestamp(make_store):
    store = make_store()
    start = (await store.read("acme", None, 10)).cursor
    first = await store.append("acme", events(2))
    again = await store.append("acme", events(3))
    assert [a.duplicate for a in again] == [True, True, False]
    assert [a.timestamp for a in again[:2]] == [a.timestamp for a in first]
    assert len((await store.read("acme", start, 100)).events) == 3


async def test_concurrent_appends_never_share_a_timestamp(make_store):
    store = make_store()
    batches = await asyncio.gather(
        *(store.append("acme", events(20, prefix=f"w{w}-")) for w in range(16))
    )
    stamps = [a.timestamp for batch in batches for a in batch]
    assert len(set(stamps)) == 320


async def test_a_future_cursor_is_clamped_to_the_clock(make_store):
    store = make_store()
    now = (await store.read("acme", None, 10)).cursor
    page = await store.read("acme", now + 3_600_000_000, 10)
    assert page.cursor == now and not page.reset
    appended = await store.append("acme", events(1))
    # Lossless: the event appended after the clamped read is still seen.
    assert (await store.read("acme", page.cursor, 10)).events[0].timestamp == appended[0].timestamp


async def test_accounts_are_separate_streams(make_store):
    store = make_store()
    start_b = (await store.read("beta", None, 10)).cursor
    await store.append("acme", events(3))
    assert (await store.read("beta", start_b, 10)).events == []


async def test_max_events_trims_and_an_old_cursor_is_told_to_reset(make_store):
    store = make_store(Retention(max_events=3))
    start = (await store.read("acme", None, 10)).cursor
    stamps = [a.timestamp for a in await store.append("acme", events(5))]
    old = await store.read("acme", start, 100)
    assert old.reset and [e.timestamp for e in old.events] == stamps[2:]
    current = await store.read("acme", stamps[1], 100)
    assert not current.reset
    assert not (await store.read("acme", stamps[-1], 100)).reset


async def test_max_age_trims_on_append(make_store):
    store = make_store(Retention(max_age_us=200_000))
    start = (await store.read("acme", None, 10)).cursor
    first = await store.append("acme", events(2))
    await asyncio.sleep(0.3)
    await store.append("acme", events(1, prefix="new"))
    page = await store.read("acme", start, 100)
    assert page.reset and len(page.events) == 1
    assert not (await store.read("acme", first[-1].timestamp, 100)).reset


async def test_the_dedupe_index_is_bounded(make_store):
    store = make_store(Retention(dedupe_max=5))
    await store.append("acme", events(10))
    again = await store.append("acme", events(10))
    # The oldest ids fell out of the bounded window; the newest are still recognized.
    assert [a.duplicate for a in again][-5:] == [True] * 5


async def test_relay_clock_skew_changes_nothing(make_store):
    store = make_store()
    start = (await store.read("acme", None, 10)).cursor
    stamps = []
    try:
        for step, skew in enumerate((0, 300, -300, 0, -600)):
            clock.set_skew(skew)
            appended = await store.append("acme", events(3, prefix=f"{step}-"))
            stamps += [a.timestamp for a in appended]
    finally:
        clock.set_skew(0)
    assert stamps == sorted(set(stamps))
    page = await store.read("acme", start, 100)
    assert [e.timestamp for e in page.events] == stamps and not page.reset


async def test_a_restarted_memory_store_resets_every_older_cursor():
    before = MemoryStore()
    await before.append("acme", events(2))
    cursor = (await before.read("acme", None, 10)).cursor
    after = MemoryStore()
    assert (await after.read("acme", cursor, 10)).reset


@pytest.fixture
def own_redis():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.mark.parametrize("engine", ["redis"])
async def test_flushall_resets_every_older_cursor(make_store, own_redis):
    store = make_store(url=own_redis.url)
    await store.append("acme", events(2))
    cursor = (await store.read("acme", None, 10)).cursor
    own_redis.client().flushall()
    page = await store.read("acme", cursor, 10)
    assert page.reset
    fresh = await store.read("acme", page.cursor, 10)
    assert not fresh.reset


@pytest.mark.parametrize("engine", ["redis"])
async def test_a_restart_without_persistence_resets_older_cursors(make_store, own_redis):
    store = make_store(url=own_redis.url)
    await store.append("acme", events(2))
    cursor = (await store.read("acme", None, 10)).cursor
    own_redis.restart()
    assert (await store.read("acme", cursor, 10)).reset


@pytest.mark.parametrize("engine", ["redis"])
async def test_scripts_survive_script_flush_and_restart(make_store, own_redis):
    store = make_store(url=own_redis.url)
    start = (await store.read("acme", None, 10)).cursor
    await store.append("acme", events(1, prefix="a"))
    own_redis.client().script_flush()
    await store.append("acme", events(1, prefix="b"))
    assert len((await store.read("acme", start, 10)).events) == 2
    own_redis.restart()
    cursor = (await store.read("acme", None, 10)).cursor
    await store.append("acme", events(1, prefix="c"))
    assert len((await store.read("acme", cursor, 10)).events) == 1


@pytest.mark.parametrize("engine", ["redis"])
async def test_keys_carry_the_account_hash_tag(make_store, redis_server):
    store = make_store()
    await store.append("acme", events(1))
    keys = sorted(k.decode() for k in redis_server.client().keys("relay:*"))
    assert keys == [f"relay:{{acme}}:{name}" for name in ("clock", "ids", "meta", "updates")]


@pytest.mark.parametrize("engine", ["redis"])
async def test_scores_are_exact_integers_in_redis(make_store, redis_server):
    store = make_store()
    appended = await store.append("acme", events(3))
    raw = redis_server.client().zrange("relay:{acme}:updates", 0, -1, withscores=True)
    assert [int(score) for _, score in raw] == [a.timestamp for a in appended]
    assert int(redis_server.client().get("relay:{acme}:clock")) == appended[-1].timestamp
