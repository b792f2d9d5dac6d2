"""A Store wrapper that times every call and counts failures, so engines stay unaware
of Prometheus."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from relay.cursor import Cursor
from relay.errors import StoreUnavailable
from relay.events import Appended, Event
from relay.metrics import Metrics
from relay.store.base import Page, Store


class ObservedStore:
    def __init__(self, store: Store, metrics: Metrics) -> None:
        self.inner = store
        # Told the newest timestamp of every local append that stored something, so that
        # the fan-out serves this process's own writes before their hints arrive.
        self.on_stored: Callable[[str, Cursor], None] | None = None
        self.engine = store.engine
        self._append_latency = metrics.child(metrics.store_latency, "append")
        self._read_latency = metrics.child(metrics.store_latency, "read")
        # Errors stay plain children: store_health reads the counter itself.
        self._append_errors = metrics.store_errors.labels("append")
        self._read_errors = metrics.store_errors.labels("read")
        self._ping_errors = metrics.store_errors.labels("ping")

    async def append(self, account: str, events: Sequence[Event]) -> list[Appended]:
        started = time.perf_counter()
        try:
            appended = await self.inner.append(account, events)
        except StoreUnavailable:
            self._append_errors.inc()
            raise
        finally:
            self._append_latency.observe(time.perf_counter() - started)
        if self.on_stored is not None:
            stored = [a.timestamp for a in appended if not a.duplicate]
            if stored:
                self.on_stored(account, max(stored))
        return appended

    async def read(self, account: str, since: Cursor | None, limit: int) -> Page:
        started = time.perf_counter()
        try:
            return await self.inner.read(account, since, limit)
        except StoreUnavailable:
            self._read_errors.inc()
            raise
        finally:
            self._read_latency.observe(time.perf_counter() - started)

    async def ping(self) -> None:
        try:
            await self.inner.ping()
        except StoreUnavailable:
            self._ping_errors.inc()
            raise

    async def close(self) -> None:
        await self.inner.close()
