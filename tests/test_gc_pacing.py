"""The paced collector: cyclic garbage is still collected with CPython's own triggers
raised out of the way, full collections keep their spacing, and the process gets its own
triggers back."""

from __future__ import annotations

import asyncio
import gc
import weakref

from relay.gc_pacing import GcPacer


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> tuple[Node, weakref.ref[Node]]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(a)


def old_garbage() -> weakref.ref[Node]:
    """A cycle that became garbage only after it had reached the oldest generation."""
    held, ref = cycle()
    gc.collect(1)  # survives into the oldest generation
    del held
    return ref


async def ticks(pacer: GcPacer, n: int) -> None:
    start = pacer.ticks
    while pacer.ticks < start + n:
        await asyncio.sleep(pacer.young_every)


async def test_the_young_generations_are_collected_only_once_they_fill_up() -> None:
    with GcPacer(young_every=0.001, young_max=10**9) as pacer:
        node, ref = cycle()
        del node
        await ticks(pacer, 3)
        assert ref() is not None and pacer.young_collections == 0
        pacer.young_max = 0
        await ticks(pacer, 2)
        assert ref() is None


async def test_young_cycles_are_collected_with_cpythons_triggers_raised() -> None:
    before = gc.get_threshold()
    with GcPacer(young_every=0.001, young_max=0, burst_max=10**6) as pacer:
        assert gc.get_threshold() == (10**6, 1 << 30, 1 << 30)
        node, ref = cycle()
        del node
        await ticks(pacer, 2)
        assert ref() is None
    assert gc.get_threshold() == before


async def test_every_collection_is_reported_with_its_generation_and_length() -> None:
    pauses: list[tuple[int, float]] = []
    with GcPacer(young_every=0.001, young_max=0, on_pause=lambda g, s: pauses.append((g, s))):
        await asyncio.sleep(0.02)
        gc.collect(0)  # CPython's own collections too
    assert {1, 0} <= {generation for generation, _ in pauses}
    assert all(0 <= seconds < 1 for _, seconds in pauses)
    reported = len(pauses)
    gc.collect(0)
    assert len(pauses) == reported, "still reporting after stop()"


async def test_cycles_that_reached_the_oldest_generation_wait_for_the_spacing() -> None:
    with GcPacer(young_every=0.001, young_max=0, full_spacing=3600) as pacer:
        ref = old_garbage()
        pacer.long_lived = 10**9  # a heap far from doubling
        pacer.promoted = 10**9 // 2  # and well past a quarter promoted
        await ticks(pacer, 6)
        assert ref() is not None, "a full collection ran before its spacing"
        assert pacer.full_collections == 0
        pacer.full_spacing = 0
        await ticks(pacer, 4)
        assert ref() is None
        assert pacer.full_collections >= 1


async def test_a_doubled_heap_is_collected_at_once() -> None:
    with GcPacer(young_every=0.001, young_max=0, full_spacing=3600) as pacer:
        ref = old_garbage()
        pacer.long_lived = 1  # the oldest generation now holds far more than twice that
        pacer.promoted = 2
        await ticks(pacer, 4)
        assert ref() is None
        assert pacer.full_collections >= 1


async def test_nothing_to_promote_means_no_full_collection() -> None:
    with GcPacer(young_every=0.001, young_max=0, full_spacing=0) as pacer:
        await ticks(pacer, 2)
        pacer.long_lived = 10**9
        pacer.promoted = 0
        before = pacer.full_collections
        await ticks(pacer, 6)
        assert pacer.full_collections == before


def test_a_burst_between_ticks_is_collected_by_cpythons_backstop() -> None:
    async def run() -> None:
        with GcPacer(young_every=3600, burst_max=1_000):
            node, ref = cycle()
            del node
            _burst = [[] for _ in range(5_000)]  # net allocations past burst_max
            assert ref() is None

    asyncio.run(run())
