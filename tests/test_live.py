"""Live delivery in one process: long-poll, SSE framing and resume, limits, disconnects."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from relay.app import create_app
from relay.appkeys import LIVE
from relay.settings import LiveSettings
from relay.store.base import Retention
from relay.store.redis import RedisStore, connect
from tests.credentials import auth, token
from tests.helpers import events, publish_to, settings_for, until
from tests.sse_client import EventSource

POLL = "/api/chats/check-updates/"
SSE = "/api/chats/realtime-updates/"


@pytest.fixture
async def live_server(engine, request, aiohttp_server):
    async def make(**overrides):
        url = request.getfixturevalue("redis_url") if engine == "redis" else None
        app = create_app(settings_for(engine, url, **overrides))
        server = await aiohttp_server(app)  # test servers cancel handlers on disconnect
        return server, str(server.make_url("")).rstrip("/"), app

    return make


async def head(session, url, account="acme") -> str:
    async with session.get(f"{url}{POLL}", headers=auth(account)) as response:
        return (await response.json())["timestamp"]


async def test_long_poll_answers_as_soon_as_an_event_arrives(live_server):
    _, url, app = await live_server()
    async with aiohttp.ClientSession() as session:
        cursor = await head(session, url)
        started = time.monotonic()
        waiting = asyncio.create_task(
            session.get(f"{url}{POLL}", params={"last_check": cursor, "wait": "20"}, headers=auth())
        )
        await until(lambda: app[LIVE].waiters.total == 1)
        assert not waiting.done()
        await publish_to(session, url, "m1")
        response = await waiting
        answer = await response.json()
        assert [u["id"] for u in answer["updates"]] == ["m1"]
        assert time.monotonic() - started < 5


async def test_long_poll_times_out_empty_at_the_same_cursor(live_server):
    _, url, _ = await live_server()
    async with aiohttp.ClientSession() as session:
        cursor = await head(session, url)
        started = time.monotonic()
        async with session.get(
            f"{url}{POLL}", params={"last_check": cursor, "wait": "0.3"}, headers=auth()
        ) as response:
            answer = await response.json()
        assert answer["updates"] == [] and answer["timestamp"] == cursor
        assert time.monotonic() - started >= 0.3


async def test_long_poll_wait_is_capped_by_config(live_server):
    _, url, _ = await live_server(live=LiveSettings(max_wait=0.2))
    async with aiohttp.ClientSession() as session:
        cursor = await head(session, url)
        started = time.monotonic()
        async with session.get(
            f"{url}{POLL}", params={"last_check": cursor, "wait": "25"}, headers=auth()
        ) as response:
            assert response.status == 200
        assert time.monotonic() - started < 5


async def test_events_another_viewer_may_not_see_do_not_end_a_long_poll(live_server):
    _, url, app = await live_server()
    async with aiohttp.ClientSession() as session:
        cursor = await head(session, url)
        waiting = asyncio.create_task(
            session.get(
                f"{url}{POLL}",
                params={"last_check": cursor, "wait": "20"},
                headers=auth(chats=["mine"]),
            )
        )
        await until(lambda: app[LIVE].waiters.total == 1)
        await publish_to(session, url, "other", chat_id="theirs")
        await asyncio.sleep(0.1)  # an absence: the long-poll must still be waiting after it
        assert not waiting.done()
        await publish_to(session, url, "for-me", chat_id="mine")
        answer = await (await waiting).json()
        assert [u["id"] for u in answer["updates"]] == ["for-me"]


async def test_a_disconnected_long_poller_frees_its_waiter(live_server):
    _, url, app = await live_server()
    async with aiohttp.ClientSession() as session:
        cursor = await head(session, url)
        request = asyncio.create_task(
            session.get(f"{url}{POLL}", params={"last_check": cursor, "wait": "30"}, headers=auth())
        )
        live = app[LIVE]
        await until(lambda: live.waiters.total == 1)
        request.cancel()
    await until(lambda: live.waiters.total == 0)


async def test_waiter_limits_answer_429_per_user_and_503_per_process(live_server):
    _, url, app = await live_server(live=LiveSettings(max_waiters=3, max_waiters_per_user=2))
    waiters = app[LIVE].waiters
    async with aiohttp.ClientSession() as session:
        cursor = await head(session, url)

        def hold(user):
            return asyncio.create_task(
                session.get(
                    f"{url}{POLL}",
                    params={"last_check": cursor, "wait": "2"},
                    headers=auth(user=user),
                )
            )

        held = [hold("u1"), hold("u1")]
        await until(lambda: waiters.total == 2)
        async with session.get(
            f"{url}{POLL}", params={"last_check": cursor, "wait": "2"}, headers=auth(user="u1")
        ) as refused:
            assert refused.status == 429 and refused.headers["Retry-After"]
            assert (await refused.json())["error"] == "too_many_requests"
        held.append(hold("u2"))
        await until(lambda: waiters.total == 3)
        async with session.get(
            f"{url}{POLL}", params={"last_check": cursor, "wait": "2"}, headers=auth(user="u3")
        ) as refused:
            assert refused.status == 503 and (await refused.json())["error"] == "overloaded"
        for task in held:
            (await task).close()


@pytest.mark.parametrize("accept", [None, "application/json", "text/event-stream", "*/*"])
async def test_sse_is_always_200_event_stream_whatever_accept_says(live_server, accept):
    _, url, _ = await live_server()
    headers = {"Accept": accept} if accept else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}{SSE}", params={"token": token()}, headers=headers) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["X-Accel-Buffering"] == "no"
        assert (
            "Content-Encoding" not in response.headers
            or response.headers["Content-Encoding"] == "identity"
        )
        first = await response.content.readline()
        assert first.startswith(b"retry: ")


async def test_sse_without_a_token_is_a_401_json(live_server):
    _, url, _ = await live_server()
    async with aiohttp.ClientSession() as session, session.get(f"{url}{SSE}") as response:
        assert response.status == 401 and (await response.json())["error"] == "unauthorized"


async def test_sse_delivers_in_order_with_cursor_ids(live_server):
    _, url, _ = await live_server()
    async with aiohttp.ClientSession() as session:
        source = EventSource([url], token()).start(session)
        await asyncio.wait_for(source.connected.wait(), 5)
        stored = await publish_to(session, url, *(f"m{i}" for i in range(5)))
        await until(lambda: len(source.updates) == 5)
        await source.stop()
    assert [u["id"] for u in source.updates] == [f"m{i}" for i in range(5)]
    assert source.last_event_id == stored[-1]["timestamp"]


async def test_sse_resumes_from_last_event_id_without_gap_or_duplicate(live_server):
    _, url, _ = await live_server()
    async with aiohttp.ClientSession() as session:
        source = EventSource([url], token()).start(session)
        await asyncio.wait_for(source.connected.wait(), 5)
        await publish_to(session, url, "a", "b")
        await until(lambda: len(source.updates) == 2)
        await source.stop()  # cut mid-stream
        await publish_to(session, url, "c", "d")
        resumed = EventSource(
            [url], token(), last_event_id=source.last_event_id, updates=source.updates
        ).start(session)
        await publish_to(session, url, "e")
        await until(lambda: len(resumed.updates) == 5)
        await asyncio.sleep(0.1)  # a duplicate would arrive now
        await resumed.stop()
    assert [u["id"] for u in resumed.updates] == ["a", "b", "c", "d", "e"]
    assert resumed.resets == 0


async def test_an_ancient_last_event_id_gets_event_reset(live_server):
    _, url, _app = await live_server(retention=Retention(max_events=2))
    async with aiohttp.ClientSession() as session:
        ancient = await head(session, url)
        await publish_to(session, url, *(f"m{i}" for i in range(4)))
        source = EventSource([url], token(), last_event_id=ancient).start(session)
        await until(lambda: source.resets == 1 and len(source.updates) == 2)
        await source.stop()
        metrics = await (await session.get(f"{url}/metrics")).text()
    assert [u["id"] for u in source.updates] == ["m2", "m3"]
    assert 'relay_resumes_total{result="reset"} 1.0' in metrics


async def test_sse_stream_limits(live_server):
    _, url, _ = await live_server(live=LiveSettings(max_streams_per_user=1))
    async with aiohttp.ClientSession() as session:
        source = EventSource([url], token()).start(session)
        await asyncio.wait_for(source.connected.wait(), 5)
        async with session.get(f"{url}{SSE}", params={"token": token()}) as refused:
            assert refused.status == 429
        await source.stop()


async def test_a_lost_hint_delays_waiters_by_at_most_the_fastpath_ttl(live_server):
    """An append nobody announced (here: written to the engine underneath relay, as a hint
    lost on a migrating cluster slot would leave it) still reaches an SSE stream and a
    long-poll, at the next periodic re-read, while the hints are up."""
    live_settings = LiveSettings(watermark_ttl=0.5, safety_reread=0.1)
    _, url, app = await live_server(live=live_settings)
    engine = app[LIVE].store.inner
    if engine.engine == "redis":  # a store built on a bare client publishes no hints
        engine = RedisStore(connect(engine._url, timeout=2.0))
    async with aiohttp.ClientSession() as session:
        cursor = await head(session, url)
        source = EventSource([url], token()).start(session)
        await asyncio.wait_for(source.connected.wait(), 5)
        waiting = asyncio.create_task(
            session.get(f"{url}{POLL}", params={"last_check": cursor, "wait": "20"}, headers=auth())
        )
        # The long-poll is waiting and the hints are up: only a re-read can find the append.
        await until(lambda: app[LIVE].waiters.total == 1 and app[LIVE].hub.hints_up)
        started = time.monotonic()
        unannounced = events(1, prefix="unannounced-", account="acme")
        await engine.append("acme", unannounced)
        answer = await (await waiting).json()
        await until(lambda: bool(source.updates), 5, "(the SSE stream never re-read)")
        await source.stop()
    if isinstance(engine, RedisStore):
        await engine.close()
    assert [u["id"] for u in answer["updates"]] == [unannounced[0].id]
    assert [u["id"] for u in source.updates] == [unannounced[0].id]
    assert time.monotonic() - started < 5
