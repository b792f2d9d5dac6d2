"""`GET /api/events`: the main application pulls an account's whole stream (every chat,
every audience) with an API key, by the same cursor rules and answer shape as check-updates.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from relay.appkeys import LIVE, METRICS, SETTINGS
from relay.auth import Viewer, check_api_key
from relay.cursor import parse_cursor
from relay.errors import BadRequest
from relay.events import check_account
from relay.fanout.routes import parse_limit, parse_wait

# The waiter slots are counted per (account, user): the puller is one "user" per account.
PULLER = "api:events"


@dataclass(frozen=True, slots=True)
class WholeStream(Viewer):
    """The system of record: sees every event of its account, whatever its chat or audience."""

    def may_see(self, chat_id: str | None, audience: list[str] | None) -> bool:
        return True


async def events_handler(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    check_api_key(request.headers, settings.api_keys)
    query = request.query
    if "account" not in query:
        raise BadRequest("account is required", code="bad_account")
    viewer = WholeStream(PULLER, check_account(query["account"]))
    since = parse_cursor(query.get("last_check"))
    limit = parse_limit(query.get("limit"), settings)
    wait = parse_wait(query.get("wait"))
    live = app[LIVE]
    if wait > 0:
        answer, mode = await live.long_poll(viewer, since, limit, wait), "pull_longpoll"
    else:
        answer, mode = await live.read(viewer, since, limit), "pull"
    metrics = app[METRICS]
    metrics.child(metrics.polls, mode, answer.outcome).inc()
    live.observe_delivery(mode, answer.delivered)
    return web.Response(body=answer.body, content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/events", events_handler)
