"""The routes events come in by: thin handlers over publish and webhook ingestion."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from urllib.parse import urlsplit

from aiohttp import web

from relay.appkeys import (
    BODY_BUDGET,
    DEAD_LETTERS,
    METRICS,
    REJECT_LIMITER,
    SETTINGS,
    STORE,
    WEBHOOK_LIMITER,
)
from relay.auth import check_api_key
from relay.client_address import client_address
from relay.cursor import format_cursor
from relay.errors import Forbidden, RelayError
from relay.http import json_response, logs_request_id, read_body
from relay.ingest import dead_letter_routes, webhooks
from relay.ingest.providers.common.base import Ack, Delivery, Provider, Rejected
from relay.ingest.publish import append_grouped, parse_publish
from relay.ingest.webhooks import ingest_verified, source_of, verify_head
from relay.metrics import event_type_label
from relay.settings import Source


async def publish_handler(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    check_api_key(request.headers, settings.api_keys)
    address = client_address(request, settings.trusted_proxy_hops)
    with app[BODY_BUDGET].hold(address, authenticated=True) as held:
        body = await read_body(request, settings.max_publish_bytes, settings.body_timeout, held)
        events = parse_publish(body)
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


class MethodNotAllowed(RelayError):
    status = 405
    code = "method_not_allowed"


def public_url(request: web.Request, source: Source) -> str:
    """The URL the provider requested, as the provider saw it. Behind a proxy the scheme,
    host and port differ, so a source's `public_url` stands for `/webhooks/{source}`; the
    rest of the path (Twilio's `/status`, Evolution's `/messages-upsert`) and the raw
    query string are appended as received, because signatures cover them."""
    base = source.options.get("public_url")
    if not isinstance(base, str) or not base:
        return str(request.url)
    prefix = f"/webhooks/{source.name}"
    path = request.raw_path.split("?", 1)[0]
    tail = path[len(prefix) :] if path.startswith(prefix) else ""
    url = urlsplit(base)._replace(query="", fragment="").geturl()
    if tail:
        url = url.rstrip("/") + tail
    query = request.rel_url.raw_query_string
    return f"{url}?{query}" if query else url


def head_of(request: web.Request, source: Source) -> Delivery:
    """The delivery as far as it is known before the body is read."""
    return Delivery(
        method=request.method,
        url=public_url(request, source),
        headers=request.headers,
        query=request.query,
        body=b"",
        received_at=webhooks.now(),
    )


async def delivery_of(request: web.Request, source: Source) -> Delivery:
    settings = request.app[SETTINGS]
    body = await read_body(request, settings.max_body_bytes, settings.body_timeout)
    return replace(head_of(request, source), body=body)


def render(ack: Ack) -> web.Response:
    return web.Response(
        body=ack.body, status=ack.status, content_type=ack.content_type, headers=ack.headers
    )


async def webhook_handler(request: web.Request) -> web.Response:
    """Verify first, then spend the source's rate budget: a forgery never spends it, so
    a flood of them cannot crowd out the provider. Failed verifications spend a budget
    of their own, per client address, and an address that has used it up is refused
    before its body is even read."""
    app = request.app
    settings = app[SETTINGS]
    source, provider = source_of(settings, request.match_info["source"])
    metrics = app[METRICS]
    address = client_address(request, settings.trusted_proxy_hops)
    rejects = app[REJECT_LIMITER]
    try:
        rejects.check(address)
    except RelayError:
        metrics.limit_refusals.labels("webhook_rejects").inc()
        raise
    counted = metrics.webhooks
    head = head_of(request, source)
    with app[BODY_BUDGET].hold(address, authenticated=False) as held:
        try:
            # What the headers can tell is checked before a byte of the body is held.
            held.authenticated = verify_head(provider, head, source)
            body = await read_body(request, settings.max_body_bytes, settings.body_timeout, held)
            delivery = replace(head, body=body)
            provider.verify(delivery, source)
        except Rejected:
            counted.labels(source.name, source.provider, "rejected").inc()
            # This one is answered 401 regardless; once the budget is spent, the next is 429.
            with contextlib.suppress(RelayError):
                rejects.take(address)
            raise
        return await accept(request, source, provider, delivery)


async def accept(
    request: web.Request, source: Source, provider: Provider, delivery: Delivery
) -> web.Response:
    """Store a verified delivery, once the source's rate budget allows it."""
    app = request.app
    metrics = app[METRICS]
    counted = metrics.webhooks
    try:
        app[WEBHOOK_LIMITER].take(source.name)
    except RelayError:
        metrics.limit_refusals.labels("webhook_rate").inc()
        raise
    try:
        result = await ingest_verified(
            app[STORE],
            app[DEAD_LETTERS],
            source,
            provider,
            delivery,
            app[SETTINGS].secret_values(),
        )
    except RelayError:
        counted.labels(source.name, source.provider, "error").inc()
        raise
    # Labels bounded by the configured sources and the known event types.
    metrics.child(counted, source.name, source.provider, result.outcome).inc()
    for event, outcome in zip(result.events, result.appended, strict=True):
        if not outcome.duplicate:
            metrics.child(metrics.events_appended, event_type_label(event.type)).inc()
    return render(result.ack)


async def handshake_handler(request: web.Request) -> web.Response:
    """`GET /webhooks/{source}`: a provider's subscription handshake (Meta's hub.*)."""
    source, provider = source_of(request.app[SETTINGS], request.match_info["source"])
    if provider.handshake is None:
        raise MethodNotAllowed(f"{source.provider} webhooks are POSTed; there is no handshake")
    try:
        ack = provider.handshake(await delivery_of(request, source), source)
    except Rejected as error:
        raise Forbidden(error.detail, code=error.code) from None
    return render(ack)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/publish", logs_request_id(publish_handler))
    app.router.add_post("/webhooks/{source}", logs_request_id(webhook_handler))
    # Sub-paths of a source: Twilio status callbacks, Evolution's webhook_by_events URLs.
    app.router.add_post("/webhooks/{source}/{path:.+}", logs_request_id(webhook_handler))
    app.router.add_get("/webhooks/{source}", logs_request_id(handshake_handler))
    dead_letter_routes.add_routes(app)
