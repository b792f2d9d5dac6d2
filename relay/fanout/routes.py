"""The browser-facing routes: thin handlers around the poll domain function."""

from __future__ import annotations

from aiohttp import web

from relay import clock
from relay.appkeys import METRICS, SETTINGS, STORE, VERIFIER
from relay.auth import Viewer, bearer
from relay.cursor import parse_cursor
from relay.errors import BadRequest
from relay.fanout.poll import check_updates
from relay.settings import Settings


def viewer_of(request: web.Request) -> Viewer:
    token = bearer(request.headers) or request.query.get("token")
    return request.app[VERIFIER].verify(token)


def parse_limit(raw: str | None, settings: Settings) -> int:
    if raw is None or raw == "":
        return settings.poll_limit_default
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest("limit must be an integer", code="bad_limit") from None
    if not 1 <= limit <= settings.poll_limit_max:
        raise BadRequest(f"limit must be between 1 and {settings.poll_limit_max}", code="bad_limit")
    return limit


async def check_updates_handler(request: web.Request) -> web.Response:
    app = request.app
    viewer = viewer_of(request)
    query = request.query
    since = parse_cursor(query.get("last_check"))
    limit = parse_limit(query.get("limit"), app[SETTINGS])
    answer = await check_updates(app[STORE], viewer, since, limit)
    metrics = app[METRICS]
    metrics.polls.labels("poll", answer.outcome).inc()
    if answer.delivered:
        now = clock.now_us()
        lag = metrics.delivery_lag.labels("poll")
        for stamp in answer.delivered:
            lag.observe(max(0, now - stamp) / 1e6)
    metrics.poll_updates.observe(len(answer.delivered))
    return web.Response(body=answer.body, content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/chats/check-updates/", check_updates_handler)
    # The old frontend's path has a trailing slash; tolerate clients that drop it.
    app.router.add_get("/api/chats/check-updates", check_updates_handler)
