"""`POST /api/publish`: the main application appends events it builds itself.

Answers only after the events are stored; the same id published again is stored once.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import defaultdict
from typing import Any

import orjson

from relay.errors import BadRequest
from relay.events import Appended, Event, check_account
from relay.store.base import Store

MAX_EVENTS_PER_PUBLISH = 1000
# Generated ids only need to be unique within an account, not unpredictable (the publisher
# is trusted, and an id only deduplicates within its own account): 128 bits of a generator
# seeded once from the OS cost a fraction of uuid4(), which read 16 random bytes from the OS
# per event. Random rather than a counter: a counter would tell a browser how many events
# the process made for other accounts between two of its own.
_IDS = random.Random(os.urandom(32))


def new_event_id() -> str:
    return f"{_IDS.getrandbits(128):032x}"


_FIELDS = frozenset({"account", "type", "id", "chat_id", "audience", "data"})


def parse_publish(body: bytes) -> list[Event]:
    """Every event of the body, validated and encodable, or a 400 naming the first that
    is not: a publish is stored whole or not at all."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest(
            "the body must be JSON: one event or a list of events", code="bad_json"
        ) from None
    items = document if isinstance(document, list) else [document]
    if not items:
        raise BadRequest("the list of events is empty", code="bad_event")
    if len(items) > MAX_EVENTS_PER_PUBLISH:
        raise BadRequest(f"at most {MAX_EVENTS_PER_PUBLISH} events per publish", code="bad_event")
    return [_event(item, index) for index, item in enumerate(items)]


def _event(item: Any, index: int) -> Event:
    where = f"event {index}"
    if not isinstance(item, dict):
        raise BadRequest(f"{where}: must be an object", code="bad_event")
    unknown = set(item) - _FIELDS
    if unknown:
        raise BadRequest(f"{where}: unknown fields {sorted(unknown)}", code="bad_event")
    account = check_account(item.get("account"))
    event_type = item.get("type")
    if not isinstance(event_type, str) or not 1 <= len(event_type) <= 64:
        raise BadRequest(f"{where}: type must be a string of 1-64 characters", code="bad_event")
    event_id = item.get("id")
    if event_id is None:
        # Generated before the store call, so a retried call keeps the same id.
        event_id = new_event_id()
    elif not isinstance(event_id, str | int) or not 1 <= len(str(event_id)) <= 256:
        raise BadRequest(f"{where}: id must be a string of 1-256 characters", code="bad_event")
    chat_id = item.get("chat_id")
    if chat_id is not None and (not isinstance(chat_id, str | int) or isinstance(chat_id, bool)):
        raise BadRequest(f"{where}: chat_id must be a string or an integer", code="bad_event")
    audience = item.get("audience")
    if audience is not None:
        if not isinstance(audience, list) or not all(isinstance(a, str | int) for a in audience):
            raise BadRequest(f"{where}: audience must be a list of user ids", code="bad_event")
        audience = tuple(str(a) for a in audience)
    event = Event(
        id=str(event_id),
        type=event_type,
        account=account,
        chat_id=None if chat_id is None else str(chat_id),
        audience=audience,
        body={"data": item.get("data")},
    )
    try:
        # What the store will do, done for every event before any is stored: an event
        # that cannot be encoded fails the whole publish, and nothing of it is kept.
        event.encode()
    except orjson.JSONEncodeError as error:
        raise BadRequest(
            f"{where}: data cannot be stored (nested more than 255 levels deep?): {error}",
            code="bad_event",
        ) from None
    return event


async def append_grouped(store: Store, events: list[Event]) -> list[Appended]:
    """Append per account (one atomic store call each), answering in the input order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, event in enumerate(events):
        groups[event.account].append(index)
    if len(groups) == 1:  # the usual publish: no task per account to gather
        return await store.append(events[0].account, events)
    accounts = list(groups)
    results = await asyncio.gather(
        *(store.append(account, [events[i] for i in groups[account]]) for account in accounts)
    )
    outcomes: list[Appended | None] = [None] * len(events)
    for account, appended in zip(accounts, results, strict=True):
        for index, outcome in zip(groups[account], appended, strict=True):
            outcomes[index] = outcome
    return [outcome for outcome in outcomes if outcome is not None]
