"""The lock-free histogram child: counting an answer's events at once counts them as
observing each would."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram

from relay.metrics import Timing

BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300)


def timing() -> Timing:
    histogram = Histogram("lag", "lag", buckets=BUCKETS, registry=CollectorRegistry())
    return Timing(histogram)


@pytest.mark.parametrize("spread_us", [0, 200, 3_000, 2_000_000])
def test_an_answers_lags_count_as_each_events_would(spread_us: int) -> None:
    rng = random.Random(spread_us)
    now = 1_800_000_000_000_000
    for _ in range(200):
        # Mostly in the past, now and then ahead of this clock (another machine's).
        newest = now - rng.randrange(-2_000, 5_000_000)
        stamps = sorted(newest - rng.randrange(0, spread_us + 1) for _ in range(10))
        at_once, one_by_one = timing(), timing()
        at_once.observe_lags(now, stamps)
        for stamp in stamps:
            one_by_one.observe(max(0, now - stamp) / 1e6)
        assert at_once.counts == one_by_one.counts
        assert at_once.sum == pytest.approx(one_by_one.sum, abs=1e-9)
