"""The in-process tail: extended only by a hint whose `prev` is its head, cut at every
gap, re-seeded by store reads without ever losing or repeating an event, within its byte
bound."""

from __future__ import annotations

import asyncio
import tracemalloc

from relay.auth import Viewer
from relay.events import Event, StoredEvent
from relay.fanout.live import Live
from relay.fanout.tail import Tails
from relay.metrics import Metrics
from relay.observed_store import ObservedStore
from relay.settings import LiveSettings
from relay.store.base import Page
from relay.store.memory import MemoryStore
from relay.wakeups.base import Hint, parse_hint
from relay.wakeups.disorder import Disorder
from tests.helpers import GatedStore, until


def member(n: int, size: int = 0) -> bytes:
    return b'{"c":null,"a":null}\n{"id":"e%d","pad":"%s"}' % (n, b"x" * size)


def hint(prev: int, ts: int, body: bool = True, low: int = 0, account: str = "acme") -> Hint:
    return Hint(account, prev, ts, low, member(ts) if body else None)


def tails(max_bytes: int = 1 << 20, max_events: int = 1000, ttl: float = 60) -> Tails:
    made = Tails(Metrics(), max_bytes, max_events, ttl)
    made.up = True
    return made


def seeded(at: int = 100, **options) -> Tails:
    made = tails(**options)
    made.seed("acme", at, Page([], at, False, False), made.ticket())
    return made


def stamps(page: Page | None) -> list[int] | None:
    return None if page is None else [event.timestamp for event in page.events]


def counted(made: Tails, metric: str, reason: str) -> float:
    return made._metrics.registry.get_sample_value(metric, {"reason": reason}) or 0.0


def test_a_hint_round_trips_through_the_wire_format():
    for sent in (hint(1, 2, low=1), hint(1, 2, body=False)):
        assert parse_hint(sent.encode()) == sent
    assert parse_hint(b"acme 17") is None  # an old-format hint is of no use to a tail


def test_a_chain_of_hints_extends_the_tail_and_answers_reads():
    made = seeded(100)
    for prev, ts in ((100, 101), (101, 102), (102, 103)):
        made.hint(hint(prev, ts))
    assert stamps(made.read("acme", 100, 10)) == [101, 102, 103]
    assert stamps(made.read("acme", 101, 1)) == [102]
    page = made.read("acme", 101, 1)
    assert page.more and page.cursor == 102
    assert made.read("acme", 103, 10).cursor == 103
    assert made.read("acme", 99, 10) is None  # below low: the store answers
    assert made.read("acme", 104, 10) is None  # ahead of what this process heard


def test_a_mismatched_prev_keeps_only_the_head():
    made = seeded(100)
    made.hint(hint(100, 101))
    made.hint(hint(102, 103))  # 102 was never heard
    assert made.read("acme", 100, 10) is None and made.read("acme", 101, 10) is None
    assert stamps(made.read("acme", 103, 10)) == []
    assert counted(made, "relay_tail_drops_total", "prev_mismatch") == 1


def test_a_bodyless_hint_keeps_only_the_head():
    made = seeded(100)
    made.hint(hint(100, 101, body=False))
    assert made.read("acme", 100, 10) is None
    assert stamps(made.read("acme", 101, 10)) == []
    made.hint(hint(101, 102))
    assert stamps(made.read("acme", 101, 10)) == [102]
    assert counted(made, "relay_tail_drops_total", "no_body") == 1


def test_duplicated_and_late_hints_change_nothing():
    made = seeded(100)
    made.hint(hint(100, 101))
    made.hint(hint(100, 101))
    made.hint(hint(101, 102))
    made.hint(hint(100, 101))
    assert stamps(made.read("acme", 100, 10)) == [101, 102]


def test_a_trim_past_low_cuts_the_tail():
    made = seeded(100)
    made.hint(hint(100, 101))
    made.hint(hint(101, 102, low=101))
    assert made.read("acme", 100, 10) is None  # the store says reset there
    assert stamps(made.read("acme", 101, 10)) == [102]
    assert counted(made, "relay_tail_drops_total", "trim") == 1


def test_an_unconfirmed_tail_is_not_used():
    made = seeded(100, ttl=0.0)
    assert made.read("acme", 100, 10) is None
    assert counted(made, "relay_tail_misses_total", "unconfirmed") == 1


def test_a_gap_drops_the_tails_and_a_read_sent_before_it_seeds_nothing():
    made = seeded(100)
    ticket = made.ticket()
    made.clear("resubscribe")
    made.seed("acme", 100, Page([], 100, False, False), ticket)
    assert made.read("acme", 100, 10) is None


def test_a_page_that_is_more_seeds_nothing():
    made = tails()
    events = [StoredEvent(101, member(101))]
    made.seed("acme", 100, Page(events, 101, True, False), made.ticket())
    assert made.read("acme", 101, 10) is None


def test_a_hint_heard_while_the_seeding_read_was_in_flight_blocks_the_seed():
    made = tails()
    ticket = made.ticket()
    made.hint(hint(100, 101))  # no tail yet: the hint finds no one
    made.seed("acme", 99, Page([], 100, False, False), ticket)  # computed before 101
    assert made.read("acme", 100, 10) is None, "a tail that never heard of 101"
    made.seed("acme", 99, Page([StoredEvent(101, member(101))], 101, False, False), ticket)
    assert stamps(made.read("acme", 99, 10)) == [101]  # an answer that includes it


def test_the_byte_bound_holds_under_10000_accounts_with_live_interest():
    """10 000 accounts, each seeded by a read, fed 20 hints of ~300 bytes and read (each
    event keeping its wire form): the process bound (2 MiB here) holds, least recently used
    first, and the estimate is honest about what Python really holds."""
    bound = 2 << 20
    tracemalloc.start()
    made = tails(max_bytes=bound, max_events=50)
    baseline = tracemalloc.get_traced_memory()[0]
    for n in range(10_000):
        account = f"a{n}"
        made.seed(account, 1000, Page([], 1000, False, False), made.ticket())
        for i in range(20):
            made.hint(
                Hint(account, 1000 + i, 1001 + i, 0, member(i, 250)),
            )
        for answered in made.read(account, 1000, 100).events:
            assert answered.wire() is answered.wire()  # made once, then kept
        assert made.bytes <= bound
    held = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    assert made.bytes <= bound
    assert held <= 1.5 * bound, f"the estimate hides {held - made.bytes} bytes"
    assert counted(made, "relay_tail_drops_total", "evicted") > 9000
    # The most recent accounts are still answered from their tails.
    assert len(stamps(made.read("a9999", 1000, 100))) == 20
    assert made._metrics.registry.get_sample_value("relay_tail_bytes") == made.bytes


def live_over(store: MemoryStore) -> tuple[Live, ObservedStore]:
    metrics = Metrics()
    observed = ObservedStore(store, metrics)
    live = Live(observed, LiveSettings(), metrics)
    store.hints.attach(live)
    return live, observed


def event(n: int) -> Event:
    return Event(id=f"e{n}", type="message.created", account="acme", body={"data": n})


async def echo(live: Live, cursor: int, rounds: int = 3) -> list[int]:
    seen = []
    for _ in range(rounds):
        answer = await live.read(Viewer("u", "acme"), cursor, 100)
        seen += answer.delivered
        cursor = answer.page.cursor
    return seen


async def test_a_hint_before_the_seeding_read_loses_and_repeats_nothing():
    store = GatedStore()
    live, observed = live_over(store)
    start = (await store.read("acme", None, 10)).cursor  # a cursor from elsewhere
    appended = await observed.append("acme", [event(1), event(2)])  # hints: no tail yet
    assert await echo(live, start) == [a.timestamp for a in appended]
    later = await observed.append("acme", [event(3)])
    reads = store.reads
    assert await echo(live, appended[-1].timestamp) == [later[0].timestamp]
    assert store.reads == reads, "the seeded tail answered"


async def test_a_hint_during_the_seeding_read_loses_and_repeats_nothing():
    store = GatedStore()
    live, observed = live_over(store)
    start = (await store.read("acme", None, 10)).cursor
    store.gate.clear()
    taken = store.snapshots
    reading = asyncio.create_task(live.read(Viewer("u", "acme"), start, 100))
    await until(lambda: store.snapshots == taken + 1)  # before the append
    appended = await observed.append("acme", [event(1)])
    store.gate.set()
    first = await reading
    assert first.delivered == []
    seen = await echo(live, first.page.cursor)
    assert seen == [appended[0].timestamp]


async def test_disordered_hints_never_break_what_the_tail_answers():
    """Every hint dropped, duplicated, delayed or reordered at random: an echoing reader
    still sees every event once, in order, and the tail was used and cut."""
    store = MemoryStore()
    metrics = Metrics()
    observed = ObservedStore(store, metrics)
    live = Live(observed, LiveSettings(), metrics)
    odds = {"drop": 0.1, "duplicate": 0.1, "delay": 0.1, "reorder": 0.1, "seed": 3}
    store.hints.attach(Disorder(live, odds))
    cursor = (await live.read(Viewer("u", "acme"), None, 100)).page.cursor
    expected, seen = [], []
    for n in range(400):
        expected += [a.timestamp for a in await observed.append("acme", [event(n)])]
        if n % 3 == 0:
            await asyncio.sleep(0.005 if n % 9 == 0 else 0)
            answer = await live.read(Viewer("u", "acme"), cursor, 7)
            seen += answer.delivered
            cursor = answer.page.cursor
    await asyncio.sleep(0.05)
    while True:
        answer = await live.read(Viewer("u", "acme"), cursor, 100)
        seen += answer.delivered
        cursor = answer.page.cursor
        if not answer.page.more:
            break
    assert seen == expected
    registry = metrics.registry
    assert registry.get_sample_value("relay_tail_hits_total") > 50
    drops = registry.get_sample_value("relay_tail_drops_total", {"reason": "prev_mismatch"})
    assert drops and drops > 5
