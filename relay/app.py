"""The one factory that composes relay: `create_app(settings) -> web.Application`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from relay import demo
from relay.appkeys import (
    BODY_BUDGET,
    DEAD_LETTERS,
    DELIVERY,
    LIVE,
    METRICS,
    POLL_LIMITER,
    REJECT_LIMITER,
    SETTINGS,
    STORE,
    VERIFIER,
    WEBHOOK_LIMITER,
)
from relay.auth import TokenVerifier
from relay.body_budget import BodyBudget
from relay.cors import allow_browser_origins
from relay.delivery import routes as delivery_routes
from relay.delivery.deliverer import Deliverer
from relay.delivery.wakeups import Wakeups
from relay.errors import StoreUnavailable
from relay.fanout import pull
from relay.fanout import routes as fanout_routes
from relay.fanout.live import Live
from relay.http import edge_middleware, json_response, refusals_log
from relay.ingest import routes as ingest_routes
from relay.ingest.schema import update_event_schema
from relay.logs import malformed_log
from relay.metrics import Metrics
from relay.observed_store import ObservedStore
from relay.openapi import openapi_document
from relay.ratelimit import RateLimiter
from relay.settings import Settings
from relay.store.base import Store
from relay.store.dead_letters import (
    DEFAULT_MAX_MEMORY_BYTES,
    DEFAULT_MAX_REDIS_BYTES,
    DeadLetters,
    MemoryDeadLetters,
    RedisDeadLetters,
)
from relay.store.delivery_ledger import DeliveryLedger, MemoryLedger
from relay.store_health import store_health_ctx
from relay.wakeups.brokers import broker_for
from relay.wakeups.tasks import cancel_and_wait


def build_store(settings: Settings) -> Store:
    if settings.redis_url:
        from relay.store.redis import RedisStore

        return RedisStore.from_url(
            settings.redis_url,
            settings.retention,
            settings.redis_timeout,
            settings.redis_cluster,
            settings.redis_max_connections,
            settings.hint_max_bytes,
            min_replicas=settings.redis_min_replicas,
        )
    from relay.store.memory import MemoryStore

    return MemoryStore(settings.retention)


def build_dead_letters(store: Store, settings: Settings) -> DeadLetters:
    """The same engine as the store: on Redis, the store's client (which the store closes)."""
    from relay.store.redis import RedisStore

    if isinstance(store, RedisStore):
        return RedisDeadLetters(
            store.connected_client,
            settings.dead_letters_max,
            settings.dead_letters_max_bytes or DEFAULT_MAX_REDIS_BYTES,
        )
    return MemoryDeadLetters(
        settings.dead_letters_max, settings.dead_letters_max_bytes or DEFAULT_MAX_MEMORY_BYTES
    )


def build_ledger(store: Store) -> DeliveryLedger:
    """Delivery cursors and leases live in the same engine as the events."""
    from relay.store.memory import MemoryStore
    from relay.store.redis import RedisStore

    if isinstance(store, RedisStore):
        from relay.store.redis_ledger import RedisLedger

        return RedisLedger(store.connected_client)
    assert isinstance(store, MemoryStore), "a custom store needs its own delivery ledger"
    return MemoryLedger(store.accounts)


def create_app(settings: Settings, store: Store | None = None) -> web.Application:
    """Wire everything; nothing is opened before the app starts (see `store_ctx`)."""
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[edge_middleware])
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[VERIFIER] = TokenVerifier(settings)
    app[POLL_LIMITER] = RateLimiter("poll", settings.poll_rate, settings.poll_burst)
    app[WEBHOOK_LIMITER] = RateLimiter("webhook", settings.webhook_rate, settings.webhook_burst)
    app[BODY_BUDGET] = BodyBudget(
        settings.max_body_bytes_in_flight, settings.max_body_bytes_in_flight_per_address
    )
    app[METRICS].body_bytes_in_flight.set_function(lambda: app[BODY_BUDGET].in_flight)
    app[REJECT_LIMITER] = RateLimiter(
        "failed verification", settings.webhook_reject_rate, settings.webhook_reject_burst
    )
    store = store or build_store(settings)
    observed = ObservedStore(store, app[METRICS])
    app[STORE] = observed
    app[DEAD_LETTERS] = build_dead_letters(store, settings)
    app[LIVE] = Live(observed, settings.live, app[METRICS], broker_for(store))
    observed.on_stored = app[LIVE].on_stored
    app[DELIVERY] = Deliverer(
        observed,
        build_ledger(store),
        Wakeups(app[LIVE].hub),
        settings.subscribers.values(),
        settings.delivery,
        app[METRICS],
    )
    app.cleanup_ctx.append(store_ctx)
    app.cleanup_ctx.append(wakeups_ctx)
    app.cleanup_ctx.append(store_health_ctx)
    app.cleanup_ctx.append(delivery_ctx)
    app.on_shutdown.append(close_live)
    app.on_cleanup.append(flush_sampled_logs)
    fanout_routes.add_routes(app)
    pull.add_routes(app)
    delivery_routes.add_routes(app)
    ingest_routes.add_routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if settings.metrics_port is None:
        app.router.add_get("/metrics", metrics_handler)
    else:
        app.cleanup_ctx.append(metrics_server_ctx)
    app.router.add_get("/openapi.json", openapi_handler)
    app.router.add_get("/schemas/update-event.json", schema_handler)
    demo.add_routes(app)  # only with RELAY_DEMO=1
    allow_browser_origins(app, settings.cors_origins, fanout_routes.BROWSER_PATHS)
    return app


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[STORE].close()


async def wakeups_ctx(app: web.Application) -> AsyncIterator[None]:
    """The hints subscription (and its safety re-read) lives as long as the app."""
    task = asyncio.create_task(app[LIVE].watch())
    yield
    await cancel_and_wait([task])


async def flush_sampled_logs(app: web.Application) -> None:
    refusals_log.flush()
    malformed_log.flush()


async def delivery_ctx(app: web.Application) -> AsyncIterator[None]:
    """Push delivery to the configured subscribers, stopped before the store closes."""
    task = asyncio.create_task(app[DELIVERY].run())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def close_live(app: web.Application) -> None:
    app[LIVE].close()


async def healthz(request: web.Request) -> web.Response:
    # The pid tells `relay serve --workers N`'s processes apart behind one port.
    return json_response({"status": "ok", "pid": os.getpid()})


async def readyz(request: web.Request) -> web.Response:
    store = request.app[STORE]
    try:
        await store.ping()
    except StoreUnavailable as error:
        raise StoreUnavailable(f"not ready: {error.detail}") from None
    return json_response({"status": "ready", "engine": store.engine})


async def metrics_handler(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# `relay serve --workers` sets it: every worker then binds the metrics port, as the service's.
REUSE_PORT = web.AppKey("reuse_port", bool)
METRICS_PORT = web.AppKey("metrics_port", int)  # the bound port (RELAY_METRICS_PORT=0 aside)


async def metrics_server_ctx(app: web.Application) -> AsyncIterator[None]:
    """RELAY_METRICS_PORT: /metrics on its own listener, so the service port (open to
    providers and browsers) does not list every source's traffic, and a NetworkPolicy can
    let only Prometheus reach it."""
    settings = app[SETTINGS]
    metrics_app = web.Application()
    metrics_app[METRICS] = app[METRICS]
    metrics_app.router.add_get("/metrics", metrics_handler)
    runner = web.AppRunner(metrics_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(
        runner, settings.host, settings.metrics_port, reuse_port=app.get(REUSE_PORT) or None
    )
    await site.start()
    app[METRICS_PORT] = runner.addresses[0][1]
    yield
    await runner.cleanup()


async def openapi_handler(request: web.Request) -> web.Response:
    return json_response(openapi_document(request.app[SETTINGS]))


async def schema_handler(request: web.Request) -> web.Response:
    return json_response(update_event_schema())
