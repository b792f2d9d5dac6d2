"""The one factory that composes relay: `create_app(settings) -> web.Application`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from relay import demo
from relay.appkeys import (
    DEAD_LETTERS,
    DELIVERY,
    LIVE,
    METRICS,
    POLL_LIMITER,
    SETTINGS,
    STORE,
    VERIFIER,
    WEBHOOK_LIMITER,
)
from relay.auth import TokenVerifier
from relay.cors import allow_browser_origins
from relay.delivery import routes as delivery_routes
from relay.delivery.deliverer import Deliverer
from relay.delivery.wakeups import Wakeups
from relay.errors import StoreUnavailable
from relay.fanout import pull
from relay.fanout import routes as fanout_routes
from relay.fanout.live import Live
from relay.http import edge_middleware, json_response
from relay.ingest import routes as ingest_routes
from relay.ingest.schema import update_event_schema
from relay.metrics import Metrics
from relay.observed_store import ObservedStore
from relay.openapi import openapi_document
from relay.ratelimit import RateLimiter
from relay.settings import Settings
from relay.store.base import Store
from relay.store.dead_letters import DeadLetters, MemoryDeadLetters, RedisDeadLetters
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
        )
    from relay.store.memory import MemoryStore

    return MemoryStore(settings.retention)


def build_dead_letters(store: Store) -> DeadLetters:
    """The same engine as the store: on Redis, the store's client (which the store closes)."""
    from relay.store.redis import RedisStore

    if isinstance(store, RedisStore):
        return RedisDeadLetters(store.connected_client)
    return MemoryDeadLetters()


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
    store = store or build_store(settings)
    observed = ObservedStore(store, app[METRICS])
    app[STORE] = observed
    app[DEAD_LETTERS] = build_dead_letters(store)
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
    fanout_routes.add_routes(app)
    pull.add_routes(app)
    delivery_routes.add_routes(app)
    ingest_routes.add_routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
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


async def openapi_handler(request: web.Request) -> web.Response:
    return json_response(openapi_document(request.app[SETTINGS]))


async def schema_handler(request: web.Request) -> web.Response:
    return json_response(update_event_schema())
