"""The tail under fire: two relay processes whose hints are dropped, duplicated, delayed and
reordered on purpose, pub/sub connections killed (standalone) or the account's slot moved
between masters (cluster) while 16 publishers append 200 events each; echoing pollers,
long-pollers and SSE clients on both processes each see every event once, in order, and
the processes' metrics show the tail answering and the gaps being noticed."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.credentials import auth, token
from tests.servers import RelayProcess
from tests.sse_client import EventSource
from tests.test_cluster import Migrator
from tests.test_exactly_once import relay_env
from tests.test_live_replicas import LongPoller, publish_all

POLL = "/api/chats/check-updates/"
PUBLISHERS, EACH = 16, 200
DISORDER = {"RELAY_TEST_HINT_DISORDER": "drop=0.03,duplicate=0.03,delay=0.03,reorder=0.03"}


class EchoPoller:
    """Polls without waiting, always echoing the server's cursor."""

    def __init__(self, url: str, user: str) -> None:
        self.url, self.user = url, user
        self.cursor = ""
        self.updates: list[dict] = []

    async def run(self, session, total: int, deadline: float) -> None:
        while len(self.updates) < total and time.monotonic() < deadline:
            params = {"last_check": self.cursor, "limit": "1000"}
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
            assert not answer["reset"]
            self.cursor = answer["timestamp"]
            self.updates += answer["updates"]
            if not answer["updates"]:
                await asyncio.sleep(0.005)


async def race(urls: list[str], faults) -> dict[str, float]:
    total = PUBLISHERS * EACH
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        sources = [EventSource([urls[i % 2]], token(user=f"s{i}")).start(session) for i in range(6)]
        pollers = [EchoPoller(urls[i % 2], f"p{i}") for i in range(4)]
        waiters = [LongPoller(urls[i % 2], f"w{i}") for i in range(4)]
        for client in [*pollers, *waiters]:
            await LongPoller.start_cursor(client, session)
        for source in sources:
            await asyncio.wait_for(source.connected.wait(), 20)
        deadline = time.monotonic() + 180
        running = [asyncio.create_task(c.run(session, total, deadline)) for c in pollers + waiters]
        order = await publish_all(session, urls, PUBLISHERS, EACH, during=faults)
        await asyncio.gather(*running)
        while not all(len(s.updates) >= total for s in sources):
            assert time.monotonic() < deadline, "SSE clients did not get everything"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # a duplicate would arrive now
        for source in sources:
            await source.stop()
        texts = [await (await session.get(f"{url}/metrics")).text() for url in urls]
    for client in [*sources, *pollers, *waiters]:
        assert [u["id"] for u in client.updates] == order, "every event once, in order"
    for source in sources:
        assert source.resets == 0
    return {
        "hits": sum(_sum(text, "relay_tail_hits_total") for text in texts),
        "drops": sum(_sum(text, "relay_tail_drops_total") for text in texts),
        "mismatches": sum(
            _sum(text, 'relay_tail_drops_total{reason="prev_mismatch"}') for text in texts
        ),
    }


def _sum(text: str, prefix: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix) and not line.startswith("#")
    )


async def test_disordered_hints_and_killed_subscriptions_lose_and_repeat_nothing(
    redis_server, redis_url
):
    relays = [RelayProcess(relay_env(redis_url, **DISORDER)).start() for _ in range(2)]
    try:

        async def faults(i: int) -> None:
            if i in (30, 90, 150):
                redis_server.client().client_kill_filter(_type="pubsub")

        figures = await race([relay.url for relay in relays], faults)
    finally:
        for relay in relays:
            relay.stop()
    print(f"tail figures: {figures}")
    assert figures["hits"] > 100, "the tail answered"
    assert figures["mismatches"] > 0, "the disordered hints were noticed"
    assert figures["drops"] > figures["mismatches"], "so were the killed subscriptions"


async def test_disordered_hints_while_the_slot_migrates_lose_and_repeat_nothing(
    redis_cluster, cluster_url
):
    relays = [RelayProcess(relay_env(cluster_url, **DISORDER)).start() for _ in range(2)]
    try:
        with Migrator(redis_cluster, "acme", growth=200) as migrator:
            figures = await race([relay.url for relay in relays], None)
        assert migrator.error is None, migrator.error
    finally:
        for relay in relays:
            relay.stop()
    print(f"tail figures: {figures}; slot migrations: {migrator.migrations}")
    assert migrator.migrations >= 2
    assert figures["hits"] > 100 and figures["mismatches"] > 0
    assert figures["drops"] > figures["mismatches"], "the slot moves were noticed"
