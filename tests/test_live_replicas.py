"""Live delivery across relay processes sharing one Redis: cross-replica wake-ups, pub/sub
faults, the fast path's Redis silence, and SIGTERM with streams open."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import aiohttp
import pytest

from tests.credentials import API, API_KEY, JWT_SECRET, auth, token
from tests.helpers import until
from tests.servers import RedisServer, RelayProcess
from tests.sse_client import EventSource

POLL = "/api/chats/check-updates/"


def relay_env(redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "RELAY_REDIS_URL": redis_url,
        "RELAY_JWT_SECRET": JWT_SECRET,
        "RELAY_API_KEYS": API_KEY,
        "RELAY_CONFIG": "",
        **extra,
    }


@pytest.fixture
def durable_redis():
    server = RedisServer("--appendonly", "yes", "--appendfsync", "always").start()
    yield server
    server.stop()


@pytest.fixture
def relays(durable_redis, request):
    extra = getattr(request, "param", {})
    started = [RelayProcess(relay_env(durable_redis.url, **extra)).start() for _ in range(2)]
    yield started
    for relay in started:
        relay.stop()


class LongPoller:
    def __init__(self, url: str, user: str) -> None:
        self.url, self.user = url, user
        self.cursor = ""
        self.updates: list[dict] = []

    async def start_cursor(self, session) -> None:
        async with session.get(f"{self.url}{POLL}", headers=auth(user=self.user)) as response:
            self.cursor = (await response.json())["timestamp"]

    async def run(self, session, total: int, deadline: float) -> None:
        while len(self.updates) < total and time.monotonic() < deadline:
            params = {"last_check": self.cursor, "wait": "5", "limit": "1000"}
            try:
                async with session.get(
                    f"{self.url}{POLL}", params=params, headers=auth(user=self.user)
                ) as response:
                    if response.status != 200:
                        await asyncio.sleep(0.05)
                        continue
                    answer = await response.json()
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
                continue
            self.cursor = answer["timestamp"]
            self.updates += answer["updates"]


async def publish_all(session, urls: list[str], publishers: int, each: int, during=None):
    acked: dict[str, str] = {}

    async def publisher(w: int) -> None:
        for i in range(each):
            event = {"account": "acme", "type": "message.created", "id": f"p{w}-{i}"}
            while True:  # retry like a provider would: the id makes it idempotent
                url = urls[(w + i) % len(urls)]
                try:
                    async with session.post(f"{url}/api/publish", json=event, headers=API) as r:
                        if r.status == 201:
                            (stored,) = (await r.json())["events"]
                            acked[stored["id"]] = stored["timestamp"]
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.02)
            if during is not None and w == 0:
                await during(i)

    await asyncio.gather(*(publisher(w) for w in range(publishers)))
    return [event_id for _, event_id in sorted((ts, eid) for eid, ts in acked.items())]


async def test_an_event_published_on_a_reaches_sse_and_long_poll_clients_on_b(relays):
    a, b = relays
    async with aiohttp.ClientSession() as session:
        source = EventSource([b.url], token(user="s")).start(session)
        poller = LongPoller(b.url, "p")
        await poller.start_cursor(session)
        await asyncio.wait_for(source.connected.wait(), 10)
        waiting = asyncio.create_task(poller.run(session, 1, time.monotonic() + 10))
        started = time.monotonic()
        await publish_all(session, [a.url], 1, 1)
        await asyncio.wait_for(waiting, 10)
        await until(lambda: len(source.updates) == 1)
        elapsed = time.monotonic() - started
        await source.stop()
    assert [u["id"] for u in poller.updates] == ["p0-0"] == [u["id"] for u in source.updates]
    assert elapsed < 2  # woken by the hint, far below the 5 s long-poll wait


async def test_2000_events_reach_50_sse_and_50_long_pollers_exactly_once_in_order(relays):
    urls = [relay.url for relay in relays]
    total = 2000
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        sources = [
            EventSource([urls[i % 2]], token(user=f"s{i}")).start(session) for i in range(50)
        ]
        pollers = [LongPoller(urls[i % 2], f"p{i}") for i in range(50)]
        for poller in pollers:
            await poller.start_cursor(session)
        for source in sources:
            await asyncio.wait_for(source.connected.wait(), 20)
        deadline = time.monotonic() + 120
        polling = [asyncio.create_task(p.run(session, total, deadline)) for p in pollers]
        order = await publish_all(session, urls, 8, total // 8)
        await asyncio.gather(*polling)
        await until(lambda: all(len(s.updates) >= total for s in sources), timeout=60)
        await asyncio.sleep(0.2)  # nothing more may arrive: a duplicate would show here
        for source in sources:
            await source.stop()
    for client in [*sources, *pollers]:
        assert [u["id"] for u in client.updates] == order


@pytest.mark.parametrize("relays", [{"RELAY_SAFETY_REREAD": "1s"}], indirect=True)
async def test_pubsub_kills_and_a_redis_restart_lose_nothing(relays, durable_redis):
    a, b = relays
    total = 600
    async with aiohttp.ClientSession() as session:
        sources = [EventSource([b.url], token(user=f"s{i}")).start(session) for i in range(5)]
        pollers = [LongPoller(b.url, f"p{i}") for i in range(5)]
        for poller in pollers:
            await poller.start_cursor(session)
        for source in sources:
            await asyncio.wait_for(source.connected.wait(), 20)
        polling = [
            asyncio.create_task(p.run(session, total, time.monotonic() + 120)) for p in pollers
        ]

        async def faults(i: int) -> None:
            if i in (20, 60, 100):
                durable_redis.client().client_kill_filter(_type="pubsub")
            if i == 140:
                durable_redis.restart()  # AOF (fsync always): the data survives

        order = await publish_all(session, [a.url], 4, total // 4, during=faults)
        await asyncio.gather(*polling)
        await until(lambda: all(len(s.updates) >= total for s in sources), timeout=60)
        await asyncio.sleep(0.2)
        for source in sources:
            await source.stop()
        metrics = await (await session.get(f"{b.url}/metrics")).text()
    for client in [*sources, *pollers]:
        assert [u["id"] for u in client.updates] == order
    reconnects = _metric(metrics, "relay_pubsub_reconnects_total")
    assert reconnects >= 2
    assert "pubsub.down" in b.log() and "pubsub.up" in b.log()


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


async def test_empty_polls_at_the_head_make_no_redis_calls(relays, durable_redis):
    a, b = relays
    async with aiohttp.ClientSession() as session:
        # Until b's hints flow no tail can be kept current, and polls rightly read the store.
        deadline = time.monotonic() + 30
        while _metric(await (await session.get(f"{b.url}/metrics")).text(), "relay_pubsub_up") < 1:
            assert time.monotonic() < deadline, "b's hints never came up"
            await asyncio.sleep(0.05)
        async with session.get(f"{b.url}{POLL}", headers=auth()) as response:
            cursor = (await response.json())["timestamp"]
        # b's own store reads: the server-wide EVALSHA count also moves with whatever a
        # does meanwhile (its start-up, its safety re-reads), which says nothing about b.
        reads = 'relay_store_call_duration_seconds_count{op="read"}'
        before = _metric(await (await session.get(f"{b.url}/metrics")).text(), reads)
        for _ in range(200):
            async with session.get(
                f"{b.url}{POLL}", params={"last_check": cursor}, headers=auth()
            ) as response:
                answer = await response.json()
                assert answer["updates"] == [] and answer["timestamp"] == cursor
        metrics = await (await session.get(f"{b.url}/metrics")).text()
        assert _metric(metrics, reads) == before
        assert _metric(metrics, "relay_fastpath_polls_total") >= 200

        # A poll right after a publish on the other process sees the event, within the
        # documented bound (one pub/sub hop).
        stale = 0
        for n in range(20):
            async with session.post(
                f"{a.url}/api/publish",
                headers=API,
                json={"account": "acme", "type": "t", "id": f"x{n}"},
            ) as r:
                published = time.monotonic()
                assert r.status == 201
            while True:
                async with session.get(
                    f"{b.url}{POLL}", params={"last_check": cursor}, headers=auth()
                ) as response:
                    answer = await response.json()
                if answer["updates"]:
                    break
                stale += 1
                assert time.monotonic() - published < 0.1, "stale beyond the documented bound"
            assert [u["id"] for u in answer["updates"]] == [f"x{n}"]
            cursor = answer["timestamp"]
    print(f"fast path: polls answered before the hint arrived: {stale} of 20")


@pytest.mark.parametrize("relays", [{"RELAY_SHUTDOWN_TIMEOUT": "5s"}], indirect=True)
async def test_sigterm_with_200_streams_exits_in_time_and_clients_lose_nothing(relays):
    a, b = relays
    total = 400
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Every client starts on A; when A goes away it reconnects to B with Last-Event-ID.
        sources = [
            EventSource([a.url, b.url], token(user=f"s{i}")).start(session) for i in range(200)
        ]
        for source in sources:
            await asyncio.wait_for(source.connected.wait(), 30)
        exit_seconds: list[float] = []

        async def stop_a(i: int) -> None:
            if i == 20:
                started = time.monotonic()
                await asyncio.to_thread(a.stop, signal.SIGTERM)
                exit_seconds.append(time.monotonic() - started)

        order = await publish_all(session, [b.url], 4, total // 4, during=stop_a)
        await until(lambda: all(len(s.updates) >= total for s in sources), timeout=60)
        await asyncio.sleep(0.2)
        for source in sources:
            await source.stop()
    assert exit_seconds and exit_seconds[0] < 5 + 2
    for source in sources:
        assert [u["id"] for u in source.updates] == order
        assert source.connects >= 2 and source.resets == 0
    print(json.dumps({"sigterm_exit_seconds": round(exit_seconds[0], 3)}))
