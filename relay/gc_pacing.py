"""The cyclic garbage collector run from the event loop at a steady pace, not on CPython's
allocation counter.

CPython 3.11 starts a young collection when allocations *minus deallocations* pass 700.
Under long-polls that counter lies: every answered waiter frees objects of the older
generations, which holds the count down while the young generation quietly fills with the
next waiters' objects, until one collection walks tens of thousands of them (20 to 35 ms
measured, every few seconds: every stream and waiter of the process waits that long).
Paced, the young generations are looked at every tick and collected by size: generation
0 once it holds `young_max` objects, generations 0 and 1 together once they hold twice
that. A collection walks about that many objects at most (CPython's own rule let a
generation-1 collection of the long-polls' objects walk 50,000 of them: 35 ms). Not every
tick: under a stream of requests the young generation is mostly the requests in flight,
and walking them 50 times a second cost 4% of a publish's CPU.

Full collections keep CPython's own rule (only when the objects promoted into the oldest
generation since the last one exceed a quarter of those it left; Python cannot read
CPython's counters, so the pacer counts them itself), and run at most once per
`full_spacing` seconds unless the oldest generation has doubled: cyclic garbage waits at
most that long, and a heap that grows fast is still collected at once.

CPython's own trigger stays on as a backstop, raised to `burst_max` net allocations and
for generation 0 only: in a burst (thousands of streams opening at once) the young
generation cannot grow without bound between two ticks.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

YOUNG_EVERY = 0.05  # seconds between looks at the young generations
YOUNG_MAX = 3_000  # objects in generation 0 when it is collected (about 0.7 µs each)
FULL_SPACING = 60.0  # seconds between full collections, unless the heap has doubled
BURST_MAX = 10_000  # net allocations that start a young collection between ticks
_NEVER = 1 << 30  # CPython's generation-1 and -2 triggers: the pacer runs those


@dataclass
class GcPacer:
    young_every: float = YOUNG_EVERY
    young_max: int = YOUNG_MAX
    full_spacing: float = FULL_SPACING
    burst_max: int = BURST_MAX
    ticks: int = 0
    young_collections: int = 0
    full_collections: int = 0
    # CPython's long_lived_total and long_lived_pending, counted here.
    long_lived: int = 0
    promoted: int = 0
    last_full: float = field(default_factory=time.monotonic)
    # Told each collection's generation and its length in seconds (the pause metric).
    on_pause: Callable[[int, float], None] | None = None
    _handle: asyncio.TimerHandle | None = None
    _thresholds: tuple[int, int, int] = (700, 10, 10)
    _started: float = 0.0

    def start(self) -> None:
        """Take over from CPython's automatic collection until stop()."""
        self._thresholds = gc.get_threshold()
        gc.set_threshold(self.burst_max, _NEVER, _NEVER)
        if self.on_pause is not None:
            gc.callbacks.append(self._timed)
        self.long_lived = len(gc.get_objects(2))
        self._handle = asyncio.get_running_loop().call_later(self.young_every, self._tick)

    def __enter__(self) -> GcPacer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        gc.set_threshold(*self._thresholds)
        if self._timed in gc.callbacks:
            gc.callbacks.remove(self._timed)

    def _timed(self, phase: str, info: dict[str, Any]) -> None:
        """Every collection, the pacer's and CPython's backstop alike."""
        if phase == "start":
            self._started = time.perf_counter()
        elif self.on_pause is not None:
            self.on_pause(info["generation"], time.perf_counter() - self._started)

    def _tick(self) -> None:
        self.ticks += 1
        try:
            self.collect()
        finally:
            self._handle = asyncio.get_running_loop().call_later(self.young_every, self._tick)

    def collect(self) -> None:
        """One tick's worth: each generation that has filled up."""
        young = len(gc.get_objects(0))
        middle = len(gc.get_objects(1))
        if young + middle < 2 * self.young_max:
            if young >= self.young_max:
                self.young_collections += 1
                gc.collect(0)
            return
        # What survives this collection moves to the oldest generation.
        self.promoted += young + middle
        gc.collect(1)
        if self._full_due():
            gc.collect(2)
            self.full_collections += 1
            self.long_lived = len(gc.get_objects(2))
            self.promoted = 0
            self.last_full = time.monotonic()

    def _full_due(self) -> bool:
        if self.promoted <= self.long_lived // 4:
            return False
        if time.monotonic() - self.last_full >= self.full_spacing:
            return True
        if self.promoted <= self.long_lived:
            return False
        # Promoted objects die too (a waiter answered is freed at once): only a heap that
        # has really doubled skips the spacing.
        alive = len(gc.get_objects(2))
        self.promoted = max(0, alive - self.long_lived)
        return alive > 2 * self.long_lived
