"""Every Prometheus metric relay exports, declared in one place.

Labels are bounded: route templates, outcomes, providers, configured sources, known event
types; never a user, a chat, an account or a token.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from relay.events import KNOWN_TYPES

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_LAG = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300)


def event_type_label(event_type: str) -> str:
    return event_type if event_type in KNOWN_TYPES else "other"


class Tally:
    """A counter child for the hot path: a plain number, moved into the Prometheus child
    when the registry is collected. prometheus_client takes a lock on every inc(), which
    buys nothing here: only the event loop's thread counts. A scrape from another thread
    stays exact too, since the loop only writes `total` and the scrape only `flushed`."""

    __slots__ = ("child", "flushed", "total")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.total = 0.0
        self.flushed = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.total += amount

    def flush(self) -> None:
        total = self.total
        if total != self.flushed:
            self.child.inc(total - self.flushed)
            self.flushed = total


class Timing:
    """A histogram child for the hot path (see Tally): bucket counts and the sum as plain
    numbers, added to the child's own values at collection (its `_buckets` and `_sum`,
    the values its observe() increments)."""

    __slots__ = ("bounds", "child", "counts", "flushed_counts", "flushed_sum", "sum")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.bounds = list(child._upper_bounds)
        self.counts = [0] * len(self.bounds)
        self.flushed_counts = [0] * len(self.bounds)
        self.sum = 0.0
        self.flushed_sum = 0.0

    def observe(self, amount: float) -> None:
        self.sum += amount
        self.counts[bisect.bisect_left(self.bounds, amount)] += 1

    def observe_lags(self, now_us: int, stamps: list[int]) -> None:
        """observe() each event's age in seconds, `now_us` minus its stamp (never below
        0). The events of one answer are mostly of one bucket (a poll's ten, a batch):
        then it is counted once, not once per event."""
        oldest, newest = (now_us - min(stamps)) / 1e6, (now_us - max(stamps)) / 1e6
        bucket = bisect.bisect_left(self.bounds, oldest)
        if newest >= 0 and bucket == bisect.bisect_left(self.bounds, newest):
            self.counts[bucket] += len(stamps)
            self.sum += (now_us * len(stamps) - sum(stamps)) / 1e6
            return
        for stamp in stamps:
            self.observe(max(0, now_us - stamp) / 1e6)

    def flush(self) -> None:
        for i, count in enumerate(self.counts):
            if count != self.flushed_counts[i]:
                self.child._buckets[i].inc(count - self.flushed_counts[i])
                self.flushed_counts[i] = count
        total = self.sum
        if total != self.flushed_sum:
            self.child._sum.inc(total - self.flushed_sum)
            self.flushed_sum = total


class _Flush(Collector):
    """Registered first, so every collection (a scrape, a test's get_sample_value) sees
    what the tallies counted."""

    def __init__(self, tallies: list[Tally | Timing]) -> None:
        self.tallies = tallies

    def collect(self) -> Iterable[Metric]:
        for tally in list(self.tallies):
            tally.flush()
        return []


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._tallies: list[Tally | Timing] = []
        r.register(_Flush(self._tallies))
        self.http_requests = Counter(
            "relay_http_requests_total",
            "HTTP requests answered",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "relay_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["route"],
            buckets=_LATENCY,
            registry=r,
        )
        self.polls = Counter(
            "relay_polls_total",
            "check-updates answers by mode and outcome",
            ["mode", "outcome"],
            registry=r,
        )
        self.sse_streams = Gauge("relay_sse_streams_open", "Open SSE streams", registry=r)
        self.waiters = Gauge("relay_longpoll_waiters", "Long-poll requests waiting", registry=r)
        self.webhooks = Counter(
            "relay_webhooks_total",
            "Webhooks by source, provider and outcome",
            ["source", "provider", "outcome"],
            registry=r,
        )
        self.events_appended = Counter(
            "relay_events_appended_total",
            "Events stored (duplicates excluded) by type",
            ["type"],
            registry=r,
        )
        self.publishes = Counter(
            "relay_publish_events_total",
            "Events received by the publish API by outcome",
            ["outcome"],
            registry=r,
        )
        self.delivery_lag = Histogram(
            "relay_delivery_lag_seconds",
            "From an event's timestamp to the moment it was written to a client",
            ["mode"],
            buckets=_LAG,
            registry=r,
        )
        self.resumes = Counter(
            "relay_resumes_total", "Cursor resumes by result", ["result"], registry=r
        )
        self.store_errors = Counter(
            "relay_store_errors_total", "Store calls that failed", ["op"], registry=r
        )
        self.store_latency = Histogram(
            "relay_store_call_duration_seconds",
            "Store call latency",
            ["op"],
            buckets=_LATENCY,
            registry=r,
        )
        self.gc_pauses = Histogram(
            "relay_gc_pause_seconds",
            "Collections of the cyclic garbage collector, by generation: every stream and "
            "waiter of the process waits this long",
            ["generation"],
            buckets=_LATENCY,
            registry=r,
        )
        for generation in ("0", "1", "2"):
            self.gc_pauses.labels(generation)
        self.sse_pushed_events = Counter(
            "relay_sse_pushed_events_total",
            "Events written to SSE streams at the head straight from their hint",
            registry=r,
        )
        self.fastpath_polls = Counter(
            "relay_fastpath_polls_total",
            "Polls at the account's head answered without a store call",
            registry=r,
        )
        self.tail_hits = Counter(
            "relay_tail_hits_total",
            "Reads (polls, long-polls, SSE deliveries) answered from the in-process tail",
            registry=r,
        )
        self.tail_misses = Counter(
            "relay_tail_misses_total",
            "Reads the tail could not answer, by reason (they read the store)",
            ["reason"],
            registry=r,
        )
        self.tail_drops = Counter(
            "relay_tail_drops_total",
            "Tails dropped or cut short by a gap, a bound or a reseed, by reason",
            ["reason"],
            registry=r,
        )
        self.tail_bytes = Gauge(
            "relay_tail_bytes", "Bytes held by this process's tails (estimated)", registry=r
        )
        self.wakeups = Counter(
            "relay_wakeups_total", "Waiters and streams woken to re-read", ["mode"], registry=r
        )
        self.pubsub_reconnects = Counter(
            "relay_pubsub_reconnects_total",
            "Times the wake-up subscription was lost and re-established",
            registry=r,
        )
        self.pubsub_slot_moves = Counter(
            "relay_pubsub_slot_moves_total",
            "Cluster slots whose wake-up channel was followed to a new master",
            registry=r,
        )
        self.limit_refusals = Counter(
            "relay_limit_refusals_total", "Requests refused by a limit", ["limit"], registry=r
        )
        self.body_bytes_in_flight = Gauge(
            "relay_body_bytes_in_flight",
            "Request body bytes reserved by bodies being read (see RELAY_MAX_BODY_BYTES_IN_FLIGHT)",
            registry=r,
        )
        self.pubsub_up = Gauge(
            "relay_pubsub_up", "1 while the cross-replica wake-up subscription is up", registry=r
        )
        # Delivery to subscribers: labelled by configured subscriber names (bounded).
        self.subscriber_deliveries = Counter(
            "relay_subscriber_deliveries_total",
            "Delivery attempts to subscribers by outcome (delivered, rejected, timeout, error)",
            ["subscriber", "outcome"],
            registry=r,
        )
        self.subscriber_lag = Gauge(
            "relay_subscriber_lag_seconds",
            "Age of the oldest event this replica has yet to deliver to the subscriber",
            ["subscriber"],
            registry=r,
        )
        self.subscriber_failing = Gauge(
            "relay_subscriber_failing",
            "1 while an account's head event to this subscriber is failing on this replica",
            ["subscriber"],
            registry=r,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Tally, Timing]] = {}
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)` for the hot path, looked up once (labels() validates
        and hashes under a lock on every call), as a Tally or a Timing. Label values are
        bounded (see above), and so is this cache."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = self.fast(metric.labels(*labels) if labels else metric)
        return found

    def fast(self, child: Any) -> Any:
        """A counter or histogram child (or a label-less metric), counted lock-free."""
        fast = Timing(child) if isinstance(child, Histogram) else Tally(child)
        self._tallies.append(fast)
        return fast

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count and time one HTTP answer."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.child(self.http_requests, route, method, str(status)),
                self.child(self.http_latency, route),
            )
        children[0].inc()
        children[1].observe(seconds)
