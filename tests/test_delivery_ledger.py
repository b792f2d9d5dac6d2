"""The delivery ledger's contract (durable cursor, lease, fencing token), run unchanged
against the memory engine and a real Redis."""

from __future__ import annotations

import asyncio

import pytest

from relay.events import Event
from relay.store.delivery_ledger import MemoryLedger
from relay.store.memory import MemoryStore
from relay.store.redis import RedisStore
from relay.store.redis_ledger import RedisLedger

LEASE = 0.3


@pytest.fixture
async def engines(engine, request):
    if engine == "memory":
        store = MemoryStore()
        yield store, MemoryLedger(store.accounts)
    else:
        store = RedisStore.from_url(request.getfixturevalue("redis_url"))
        yield store, RedisLedger(store.connected_client)
    await store.close()


@pytest.fixture
def ledger(engines):
    return engines[1]


async def test_a_new_entry_has_no_cursor_and_one_holder_gets_the_lease(ledger):
    assert (await ledger.state("crm", "acme")).cursor is None
    a = await ledger.acquire("crm", "acme", "replica-a", LEASE)
    assert a.granted > 0 and a.holder == "replica-a" and a.cursor is None
    b = await ledger.acquire("crm", "acme", "replica-b", LEASE)
    assert b.refused and b.holder == "replica-a" and 0 < b.lease_left <= LEASE
    # Leases are per (subscriber, account).
    assert not (await ledger.acquire("crm", "globex", "replica-b", LEASE)).refused
    assert not (await ledger.acquire("audit", "acme", "replica-b", LEASE)).refused


async def test_a_holder_asking_again_gets_a_new_token_and_its_old_one_is_stale(ledger):
    first = await ledger.acquire("crm", "acme", "replica-a", LEASE)
    again = await ledger.acquire("crm", "acme", "replica-a", LEASE)
    assert again.granted == first.granted + 1
    assert (await ledger.advance("crm", "acme", "replica-a", first.granted, 100)).refused
    assert not (await ledger.advance("crm", "acme", "replica-a", again.granted, 100)).refused


async def test_the_cursor_moves_only_under_the_current_token(ledger):
    a = await ledger.acquire("crm", "acme", "replica-a", LEASE)
    assert not (await ledger.advance("crm", "acme", "replica-a", a.granted, 100)).refused
    assert (await ledger.advance("crm", "acme", "replica-b", a.granted, 200)).refused
    assert (await ledger.advance("crm", "acme", "replica-a", a.granted + 1, 200)).refused
    assert (await ledger.state("crm", "acme")).cursor == 100


async def test_a_holder_that_stalled_past_its_lease_can_move_nothing(ledger):
    a = await ledger.acquire("crm", "acme", "replica-a", LEASE)
    await ledger.advance("crm", "acme", "replica-a", a.granted, 100)
    await asyncio.sleep(LEASE * 1.5)
    b = await ledger.acquire("crm", "acme", "replica-b", LEASE)
    assert b.granted > a.granted and b.cursor == 100
    await ledger.advance("crm", "acme", "replica-b", b.granted, 300)
    # The stale holder wakes up: neither back nor forward, nor a renewal or a release.
    assert (await ledger.advance("crm", "acme", "replica-a", a.granted, 200)).refused
    assert (await ledger.advance("crm", "acme", "replica-a", a.granted, 400)).refused
    assert (await ledger.renew("crm", "acme", "replica-a", a.granted, LEASE)).refused
    assert (await ledger.fail("crm", "acme", "replica-a", a.granted, 3, "500", 1)).refused
    await ledger.release("crm", "acme", "replica-a", a.granted)
    state = await ledger.state("crm", "acme")
    assert state.cursor == 300 and state.holder == "replica-b" and state.fence == b.granted


async def test_renewal_keeps_the_lease_and_release_hands_it_over(ledger):
    a = await ledger.acquire("crm", "acme", "replica-a", LEASE)
    for _ in range(3):
        await asyncio.sleep(LEASE / 2)
        assert not (await ledger.renew("crm", "acme", "replica-a", a.granted, LEASE)).refused
    assert (await ledger.acquire("crm", "acme", "replica-b", LEASE)).refused
    await ledger.release("crm", "acme", "replica-a", a.granted)
    b = await ledger.acquire("crm", "acme", "replica-b", LEASE)
    assert b.granted == a.granted + 1


async def test_failures_are_recorded_and_cleared_by_the_next_advance(ledger):
    a = await ledger.acquire("crm", "acme", "replica-a", LEASE)
    await ledger.fail("crm", "acme", "replica-a", a.granted, 2, "HTTP 500", 1_700_000_000_000_000)
    state = await ledger.state("crm", "acme")
    assert (state.attempts, state.last_error, state.next_attempt) == (
        2,
        "HTTP 500",
        1_700_000_000_000_000,
    )
    await ledger.advance("crm", "acme", "replica-a", a.granted, 100)
    state = await ledger.state("crm", "acme")
    assert (state.attempts, state.last_error, state.next_attempt) == (0, "", None)


async def test_rewind_moves_the_cursor_and_makes_the_holders_token_stale(ledger):
    a = await ledger.acquire("crm", "acme", "replica-a", LEASE)
    await ledger.advance("crm", "acme", "replica-a", a.granted, 500)
    rewound = await ledger.rewind("crm", "acme", 100)
    assert rewound.cursor == 100 and rewound.fence > a.granted and rewound.holder == ""
    assert (await ledger.advance("crm", "acme", "replica-a", a.granted, 600)).refused
    again = await ledger.acquire("crm", "acme", "replica-a", LEASE)
    assert again.cursor == 100 and again.granted > rewound.fence - 1


async def test_timestamps_round_trip_as_integers(ledger):
    big = 1_752_897_244_574_010  # what tostring() would print as 1.7529e+15
    a = await ledger.acquire("crm", "acme", "replica-a", LEASE)
    await ledger.advance("crm", "acme", "replica-a", a.granted, big)
    assert (await ledger.state("crm", "acme")).cursor == big


async def test_accounts_lists_every_account_the_store_knows(engines):
    store, ledger = engines
    for account in ("acme", "globex", "a:b@c"):
        await store.append(account, [Event(id="1", type="message.created", account=account)])
    assert sorted(await ledger.accounts()) == ["a:b@c", "acme", "globex"]


async def test_the_ledger_works_on_a_redis_cluster(cluster_url):
    store = RedisStore.from_url(cluster_url)
    ledger = RedisLedger(store.connected_client)
    try:
        for account in ("acme", "globex", "initech", "umbrella"):  # several slots
            await store.append(account, [Event(id="1", type="message.created", account=account)])
            a = await ledger.acquire("crm", account, "replica-a", LEASE)
            assert not (await ledger.advance("crm", account, "replica-a", a.granted, 42)).refused
            assert (await ledger.acquire("crm", account, "replica-b", LEASE)).refused
            assert (await ledger.state("crm", account)).cursor == 42
        assert {"acme", "globex", "initech", "umbrella"} <= set(await ledger.accounts())
    finally:
        await store.close()
