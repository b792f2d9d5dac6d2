"""The subscriber admin routes (API key): each subscriber's accounts with their cursor,
lag, last error and next attempt; and a rewind that redelivers from a cursor."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from relay import clock
from relay.appkeys import DELIVERY, SETTINGS
from relay.auth import check_api_key
from relay.cursor import ZERO, format_cursor, parse_cursor
from relay.delivery.deliverer import Deliverer
from relay.errors import BadRequest, NotFound
from relay.events import check_account
from relay.http import json_response, logs_request_id
from relay.store.delivery_ledger import LedgerEntry


async def account_state(deliverer: Deliverer, name: str, account: str) -> dict[str, Any]:
    entry = await deliverer.ledger.state(name, account)
    return await _render(deliverer, account, entry)


async def _render(deliverer: Deliverer, account: str, entry: LedgerEntry) -> dict[str, Any]:
    # The oldest undelivered event: the first one after the cursor (all of them, for a
    # subscriber that has never delivered to this account).
    page = await deliverer.store.read(account, entry.cursor or ZERO, 1)
    oldest = page.events[0].timestamp if page.events else None
    lag = max(0, clock.now_us() - oldest) / 1e6 if oldest is not None else 0.0
    return {
        "account": account,
        "cursor": format_cursor(entry.cursor) if entry.cursor is not None else None,
        "pending": oldest is not None or (page.reset and entry.cursor is not None),
        "lag_seconds": round(lag, 3),
        "holder": entry.holder or None,
        "attempts": entry.attempts,
        "last_error": entry.last_error or None,
        "next_attempt": format_cursor(entry.next_attempt) if entry.next_attempt else None,
    }


async def list_handler(request: web.Request) -> web.Response:
    app = request.app
    check_api_key(request.headers, app[SETTINGS].api_keys)
    deliverer = app[DELIVERY]
    known: list[str] | None = None
    answer = []
    for subscriber in deliverer.subscribers.values():
        if subscriber.every_account and known is None:
            known = await deliverer.ledger.accounts()
        accounts = (known or []) if subscriber.every_account else subscriber.accounts
        answer.append(
            {
                "name": subscriber.name,
                "url": subscriber.url,
                "accounts": [await account_state(deliverer, subscriber.name, a) for a in accounts],
            }
        )
    return json_response({"subscribers": answer})


async def rewind_handler(request: web.Request) -> web.Response:
    app = request.app
    check_api_key(request.headers, app[SETTINGS].api_keys)
    deliverer = app[DELIVERY]
    name = request.match_info["name"]
    subscriber = deliverer.subscribers.get(name)
    if subscriber is None:
        raise NotFound(f"no subscriber named {name!r}", code="unknown_subscriber")
    account = check_account(request.match_info["account"])
    if not subscriber.covers(account):
        raise NotFound(f"{name} does not subscribe to {account}", code="unknown_account")
    cursor = parse_cursor(request.query.get("last_check"))
    if cursor is None:
        raise BadRequest(
            "last_check is required: the cursor to redeliver after", code="bad_last_check"
        )
    entry = await deliverer.ledger.rewind(name, account, cursor)
    deliverer.poke(name, account, force=True)
    return json_response(await _render(deliverer, account, entry))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/admin/subscribers", logs_request_id(list_handler))
    app.router.add_post(
        "/api/admin/subscribers/{name}/accounts/{account}/rewind", logs_request_id(rewind_handler)
    )
