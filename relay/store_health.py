"""Tell the operator when the store cannot be reached and when it is back: one warning per
outage (naming the store, without its password, and what fails meanwhile), one line when
it answers again. Without this a relay whose Redis is down logs that it listens and then
answers 503s with no reason in its log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from relay.appkeys import METRICS, SETTINGS, STORE
from relay.errors import StoreUnavailable
from relay.logs import get_logger
from relay.metrics import Metrics
from relay.store.base import Store

log = get_logger("relay.store")

# While it is down, a ping every second notices its return promptly. While it answers,
# nothing is sent: a failed store call (any request's) is what prompts the next ping.
DOWN_INTERVAL = 1.0
FAILURE_CHECK = 1.0
EFFECT = "polls, long-polls, SSE, publishes and webhooks answer 503 until it answers"


def without_password(url: str) -> str:
    """The store URL as it may appear in a log line: the password is dropped."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{user}@{host}" if user else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def probe(store: Store) -> str | None:
    """None when the store answers, else why not (in words)."""
    try:
        await store.ping()
    except StoreUnavailable as error:
        cause = str(error.__cause__ or "").strip()
        # "redis did not answer: ConnectionError" says less than redis-py's own sentence.
        return f"{error.detail} ({cause})" if cause and cause not in error.detail else error.detail
    return None


async def watch_store(store: Store, where: str, failures: Callable[[], float]) -> None:
    """Ping at start; then, while the store answers, ping again only once `failures()` (the
    count of failed store calls) has grown, so a healthy store sees no extra traffic."""
    down_since: float | None = None
    reason = await probe(store)
    while True:
        if reason is not None and down_since is None:
            down_since = time.monotonic()
            log.warning("store.unavailable", store=where, reason=reason, effect=EFFECT)
        elif reason is None and down_since is not None:
            seconds = round(time.monotonic() - down_since, 1)
            log.info("store.available", store=where, after_seconds=seconds)
            down_since = None
        if down_since is None:
            seen = failures()
            while failures() == seen:
                await asyncio.sleep(FAILURE_CHECK)
        else:
            await asyncio.sleep(DOWN_INTERVAL)
        reason = await probe(store)


def failed_calls(metrics: Metrics) -> Callable[[], float]:
    """How many store calls have failed so far (relay_store_errors_total, every op)."""

    def count() -> float:
        return sum(
            sample.value
            for family in metrics.store_errors.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        )

    return count


async def store_health_ctx(app: web.Application) -> AsyncIterator[None]:
    """Runs for the app's life on a network store (the memory engine cannot be down)."""
    url = app[SETTINGS].redis_url
    if not url:
        yield
        return
    where = without_password(url)
    task = asyncio.create_task(watch_store(app[STORE], where, failed_calls(app[METRICS])))
    yield
    # As for the hints watch (relay.app): a cancellation can be swallowed by redis-py on
    # Python 3.11, so cancel until the task has ended.
    for _ in range(10):
        if task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
