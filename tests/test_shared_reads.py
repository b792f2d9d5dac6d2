"""Waiters woken by one append share one store read, and sharing never hides an event."""

from __future__ import annotations

import asyncio

from relay.auth import Viewer
from relay.events import Event
from relay.fanout.live import Live
from relay.metrics import Metrics
from relay.observed_store import ObservedStore
from relay.settings import LiveSettings
from relay.store.memory import MemoryStore
from tests.helpers import GatedStore, until


def live_over(store: MemoryStore, tail: bool = False) -> tuple[Live, ObservedStore]:
    """Without a tail unless asked: these tests are about the reads that reach the store."""
    metrics = Metrics()
    observed = ObservedStore(store, metrics)
    live = Live(observed, LiveSettings(tail_max_bytes=64 << 20 if tail else 0), metrics)
    store.hints.attach(live)
    return live, observed


def event(n: int) -> Event:
    return Event(id=f"e{n}", type="message.created", account="acme", body={"data": n})


async def test_a_hundred_long_polls_woken_by_one_append_make_one_read():
    store = GatedStore()
    live, observed = live_over(store)
    start = (await live.read(Viewer("u", "acme"), None, 100)).page.cursor
    polls = [
        asyncio.create_task(live.long_poll(Viewer(f"u{n}", "acme"), start, 100, 5))
        for n in range(100)
    ]
    answered = store.answered
    # Every poll is waiting: each joined the first read, and it was answered.
    await until(lambda: live.waiters.total == 100 and store.answered > answered and store.settled())
    before = store.reads
    await observed.append("acme", [event(1)])
    answers = await asyncio.gather(*polls)
    assert all(len(answer.delivered) == 1 for answer in answers)
    assert store.reads - before == 1


async def test_with_a_tail_a_hundred_long_polls_woken_by_one_append_read_nothing():
    store = GatedStore()
    live, observed = live_over(store, tail=True)
    start = (await live.read(Viewer("u", "acme"), None, 100)).page.cursor
    polls = [
        asyncio.create_task(live.long_poll(Viewer(f"u{n}", "acme"), start, 100, 5))
        for n in range(100)
    ]
    # The tail answers a poll at the head without an await: counted is waiting.
    await until(lambda: live.waiters.total == 100 and store.settled())
    before = store.reads
    await observed.append("acme", [event(1)])
    answers = await asyncio.gather(*polls)
    assert all(len(answer.delivered) == 1 for answer in answers)
    assert store.reads == before


async def test_a_waiter_armed_after_an_append_does_not_join_an_older_read():
    store = GatedStore()
    live, observed = live_over(store)
    start = (await live.read(Viewer("u", "acme"), None, 100)).page.cursor
    store.gate.clear()
    taken = store.snapshots
    first = asyncio.create_task(live.long_poll(Viewer("a", "acme"), start, 100, 5))
    await until(lambda: store.snapshots == taken + 1)  # `first`'s, before the append
    await observed.append("acme", [event(1)])
    second = asyncio.create_task(live.long_poll(Viewer("b", "acme"), start, 100, 5))
    # Arming and joining (or starting) a read take no await: counted is in its read.
    await until(lambda: live.waiters.total == 2)
    store.gate.set()
    answers = await asyncio.wait_for(asyncio.gather(first, second), 2)
    assert [len(answer.delivered) for answer in answers] == [1, 1]
