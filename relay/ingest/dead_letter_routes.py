"""The admin routes of the dead-letter store (API key): list, and replay one letter
through the provider's current normalizer."""

from __future__ import annotations

from aiohttp import web

from relay.appkeys import DEAD_LETTERS, METRICS, SETTINGS, STORE
from relay.auth import check_api_key
from relay.cursor import format_cursor
from relay.errors import BadRequest
from relay.http import json_response, logs_request_id
from relay.ingest.webhooks import replay
from relay.metrics import event_type_label

DEFAULT_LIMIT, MAX_LIMIT = 100, 1000


def parse_limit(raw: str | None) -> int:
    if not raw:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest("limit must be an integer", code="bad_limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}", code="bad_limit")
    return limit


async def list_handler(request: web.Request) -> web.Response:
    app = request.app
    check_api_key(request.headers, app[SETTINGS].api_keys)
    limit = parse_limit(request.query.get("limit"))
    before = request.query.get("before") or None
    letters = await app[DEAD_LETTERS].list(limit, before)
    # A full page (by count, or cut short by the bytes a page may hold) may have more after
    # it: `next` is the `before` of the next page, null once the list is exhausted.
    more = bool(letters) and (
        len(letters) == limit or len(await app[DEAD_LETTERS].list(1, letters[-1].id)) == 1
    )
    return json_response(
        {
            "dead_letters": [letter.to_json() for letter in letters],
            "next": letters[-1].id if more else None,
        }
    )


async def replay_handler(request: web.Request) -> web.Response:
    app = request.app
    check_api_key(request.headers, app[SETTINGS].api_keys)
    letter_id = request.match_info["id"]
    result = await replay(app[STORE], app[DEAD_LETTERS], app[SETTINGS], letter_id)
    for event, outcome in zip(result.events, result.appended, strict=True):
        if not outcome.duplicate:
            app[METRICS].events_appended.labels(event_type_label(event.type)).inc()
    return json_response(
        {
            "id": letter_id,
            "outcome": result.outcome,
            "events": [
                {"id": a.id, "timestamp": format_cursor(a.timestamp), "duplicate": a.duplicate}
                for a in result.appended
            ],
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/admin/dead-letters", logs_request_id(list_handler))
    app.router.add_post("/api/admin/dead-letters/{id}/replay", logs_request_id(replay_handler))
