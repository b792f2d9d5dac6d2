"""The routes events come in by: thin handlers over publish and webhook ingestion."""

from __future__ import annotations

from aiohttp import web

from relay.appkeys import METRICS, SETTINGS, STORE
from relay.auth import check_api_key
from relay.cursor import format_cursor
from relay.errors import RelayError
from relay.http import json_response
from relay.ingest import webhooks
from relay.ingest.providers.base import Delivery, Rejected
from relay.ingest.publish import append_grouped, parse_publish
from relay.ingest.webhooks import ingest, source_of
from relay.metrics import event_type_label


async def publish_handler(request: web.Request) -> web.Response:
    app = request.app
    check_api_key(request.headers, app[SETTINGS].api_keys)
    events = parse_publish(await request.read())
    appended = await append_grouped(app[STORE], events)
    metrics = app[METRICS]
    for event, outcome in zip(events, appended, strict=True):
        if outcome.duplicate:
            metrics.child(metrics.publishes, "duplicate").inc()
        else:
            metrics.child(metrics.publishes, "accepted").inc()
            metrics.child(metrics.events_appended, event_type_label(event.type)).inc()
    return json_response(
        {
            "events": [
                {"id": a.id, "timestamp": format_cursor(a.timestamp), "duplicate": a.duplicate}
                for a in appended
            ]
        },
        status=201,
    )


async def webhook_handler(request: web.Request) -> web.Response:
    app = request.app
    source, provider = source_of(app[SETTINGS], request.match_info["source"])
    delivery = Delivery(
        method=request.method,
        url=str(source.options.get("public_url") or request.url),
        headers=request.headers,
        query=request.query,
        body=await request.read(),
        received_at=webhooks.now(),
    )
    counted = app[METRICS].webhooks
    try:
        result = await ingest(app[STORE], source, provider, delivery)
    except Rejected:
        counted.labels(source.name, source.provider, "rejected").inc()
        raise
    except RelayError:
        counted.labels(source.name, source.provider, "error").inc()
        raise
    counted.labels(source.name, source.provider, result.outcome).inc()
    appended_types = app[METRICS].events_appended
    for event, outcome in zip(result.events, result.appended, strict=True):
        if not outcome.duplicate:
            appended_types.labels(event_type_label(event.type)).inc()
    ack = result.ack
    return web.Response(
        body=ack.body, status=ack.status, content_type=ack.content_type, headers=ack.headers
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/publish", publish_handler)
    app.router.add_post("/webhooks/{source}", webhook_handler)
