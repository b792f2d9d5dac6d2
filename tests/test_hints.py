"""What the append publishes: one hint per stored event, after the commit, in commit order,
carrying `prev`, the new timestamp, the low watermark and the stored bytes (none above
RELAY_HINT_MAX_BYTES) — on the memory engine, standalone Redis (PUBLISH) and a cluster
(SPUBLISH on the slot's channel)."""

from __future__ import annotations

import asyncio
import time

import pytest

from relay.events import Event
from relay.store.memory import MemoryStore
from relay.store.redis import RedisStore
from relay.wakeups.base import Hint
from relay.wakeups.brokers import broker_for
from relay.wakeups.tasks import cancel_and_wait


class Heard:
    def __init__(self) -> None:
        self.hints: list[Hint] = []
        self.up = asyncio.Event()

    def on_hint(self, hint: Hint) -> None:
        self.hints.append(hint)

    def on_state(self, up: bool, reason: str) -> None:
        if up:
            self.up.set()

    def on_gap(self, is_affected) -> None:
        pass


@pytest.fixture(params=["memory", "redis_url", "cluster_url"])
async def store(request):
    if request.param == "memory":
        made = MemoryStore()
    else:
        made = RedisStore.from_url(request.getfixturevalue(request.param), hint_max_bytes=2048)
    yield made
    await made.close()


async def test_each_stored_event_is_hinted_with_prev_timestamp_and_bytes(store):
    heard = Heard()
    watching = asyncio.create_task(broker_for(store).run(heard))
    try:
        await asyncio.wait_for(heard.up.wait(), 20)
        head = (await store.read("acme", None, 10)).cursor
        small = Event(id="small", type="t", account="acme", body={"n": 1})
        big = Event(id="big", type="t", account="acme", body={"pad": "x" * 100_000})
        first = await store.append("acme", [small, big])
        again = await store.append("acme", [small, Event(id="next", type="t", account="acme")])
        deadline = time.monotonic() + 10
        while len(heard.hints) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        await cancel_and_wait([watching])
    stamps = [first[0].timestamp, first[1].timestamp, again[1].timestamp]
    assert again[0].duplicate  # not hinted again
    assert [(h.prev, h.timestamp) for h in heard.hints] == [
        (head, stamps[0]),
        (stamps[0], stamps[1]),
        (stamps[1], stamps[2]),
    ]
    assert heard.hints[0].member == small.encode()
    if isinstance(store, RedisStore):
        assert heard.hints[1].member is None  # above RELAY_HINT_MAX_BYTES
    assert all(h.account == "acme" and h.low <= head for h in heard.hints)
