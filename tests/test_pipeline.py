"""Pipelined store calls: concurrent calls leave in one write, and each caller gets its own
reply or an error, never another's, even when the connection drops with all in flight."""

from __future__ import annotations

import asyncio

from relay.errors import StoreUnavailable
from relay.events import Event
from relay.store.redis import RedisStore
from tests.proxy_tcp import DroppingProxy


def event(n: int, account: str) -> Event:
    return Event(id=f"{account}-e{n}", type="t", account=account, body={"n": n})


async def test_calls_made_in_one_loop_turn_leave_in_one_pipeline(redis_server, redis_url):
    store = RedisStore.from_url(redis_url)
    try:
        await store.read("warm", None, 1)
        before = store._pipeliner.pipelines
        await asyncio.gather(*(store.read(f"a{n}", None, 1) for n in range(64)))
        assert store._pipeliner.pipelines - before == 1
    finally:
        await store.close()


async def test_a_connection_dropped_with_64_calls_in_flight_mixes_no_replies(redis_server):
    """32 appends and 32 reads, on 64 accounts, in one pipeline whose reply is lost: the
    pipeline is sent again (appends are idempotent), and every caller gets its own
    account's answer or an error; what is stored is stored once."""
    redis_server.client().flushall()
    proxy = await DroppingProxy(redis_server.port).start()
    store = RedisStore.from_url(f"redis://127.0.0.1:{proxy.port}/0", timeout=2.0)
    accounts = [f"acct{n}" for n in range(64)]
    try:
        starts = await asyncio.gather(*(store.read(a, None, 10) for a in accounts))
        for n, account in enumerate(accounts[1::2]):  # the readers have something to read
            await store.append(account, [event(1000 + n, account)])
        proxy.drop_next_script_reply = True

        async def one(n: int, account: str):
            if n % 2 == 0:
                return await store.append(account, [event(n, account)])
            return await store.read(account, starts[n].cursor, 10)

        outcomes = await asyncio.gather(
            *(one(n, a) for n, a in enumerate(accounts)), return_exceptions=True
        )
        assert proxy.dropped == 1
        answered = 0
        for n, (account, outcome) in enumerate(zip(accounts, outcomes, strict=True)):
            if isinstance(outcome, BaseException):
                assert isinstance(outcome, StoreUnavailable), outcome
                continue
            answered += 1
            if n % 2 == 0:
                (appended,) = outcome
                assert appended.id == f"{account}-e{n}"
            else:
                assert all(account.encode() in e.member for e in outcome.events)
                assert len(outcome.events) == 1
        assert answered == 64, "redis-py sent the pipeline again on a new connection"
        # Appends stay idempotent across that retry: each event is stored once, and a
        # caller that retries after an error gets the first answer back.
        for n, account in enumerate(accounts[::2]):
            page = await store.read(account, starts[2 * n].cursor, 10)
            assert [e.timestamp for e in page.events] == [outcomes[2 * n][0].timestamp]
            (again,) = await store.append(account, [event(2 * n, account)])
            assert again.duplicate and again.timestamp == outcomes[2 * n][0].timestamp
    finally:
        await store.close()
        await proxy.close()


async def test_a_caller_that_gives_up_leaves_the_others_calls_alone(redis_server, redis_url):
    store = RedisStore.from_url(redis_url)
    try:
        start = (await store.read("acme", None, 10)).cursor
        quitter = asyncio.ensure_future(store.append("acme", [event(0, "acme")]))
        stayers = [asyncio.ensure_future(store.append("acme", [event(n, "acme")])) for n in (1, 2)]
        await asyncio.sleep(0)
        quitter.cancel()
        done = await asyncio.gather(*stayers)
        assert [d[0].id for d in done] == ["acme-e1", "acme-e2"]
        page = await store.read("acme", start, 10)
        assert {e.timestamp for e in page.events} >= {d[0].timestamp for d in done}
    finally:
        await store.close()
