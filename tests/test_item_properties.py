"""Hypothesis over provider bodies of several items with one item corrupted (changed,
emptied or replaced by arbitrary JSON): every other item's events are stored, and the
corrupted item is either stored too or the one item the dead letter names.

WhatsApp Cloud (`entry[] x changes[] x messages|statuses[]`) and Evolution (a `data` list)
carry several items per body. Telegram, Twilio, Z-API and Standard Webhooks deliver one
item per body: for them the body is the item, and `tests/test_provider_properties.py`
already shows that any body is stored, ignored or dead-lettered, never a 5xx.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, MultiDict

from relay.ingest import webhooks
from relay.ingest.providers import PROVIDERS
from relay.ingest.providers.common.base import Delivery
from relay.store.dead_letters import MemoryDeadLetters
from relay.store.memory import MemoryStore
from tests.provider_fixtures import ACCOUNT, FIXTURES, SOURCE_OF, SOURCES
from tests.provider_strategies import DELETE, _mutate, _paths, anything

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fixture_documents(provider: str) -> list[dict]:
    return [
        json.loads(path.read_text())
        for path in sorted((FIXTURES / provider).glob("*.json"))
        if path.name != "signatures.json" and not path.name.endswith(".golden.json")
    ]


def whatsapp_values() -> list[dict]:
    return [
        change["value"]
        for document in fixture_documents("whatsapp_cloud")
        for entry in document["entry"]
        for change in entry["changes"]
        if change.get("field") == "messages"
    ]


WA_VALUES = whatsapp_values()
WA_CONTACTS = [c for value in WA_VALUES for c in value.get("contacts", [])]
WA_ITEMS = {
    kind: [item for value in WA_VALUES for item in value.get(kind, [])]
    for kind in ("messages", "statuses")
}
EVOLUTION = {
    kind: [d["data"] for d in fixture_documents("evolution") if d["event"] == kind]
    for kind in ("messages.upsert", "messages.update")
}


@dataclass
class Body:
    provider: str
    document: dict
    items: list[tuple[str, tuple]]  # (place, path in the document)


@st.composite
def corrupted(draw, item):
    """The item with one place changed or removed, emptied, or replaced outright."""
    how = draw(st.sampled_from(["place", "empty", "replace"]))
    if how == "empty":
        return {}
    if how == "replace" or not _paths(item):
        return draw(anything)
    path = draw(st.sampled_from(_paths(item)))
    return _mutate(item, path, draw(anything | st.just(DELETE)))


@st.composite
def whatsapp_body(draw) -> Body:
    messages = draw(st.lists(st.sampled_from(WA_ITEMS["messages"]), max_size=4))
    statuses = draw(st.lists(st.sampled_from(WA_ITEMS["statuses"]), max_size=3))
    if not messages and not statuses:
        messages = [draw(st.sampled_from(WA_ITEMS["messages"]))]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"phone_number_id": "110000000000021"},
        "contacts": WA_CONTACTS,
        "messages": messages,
        "statuses": statuses,
    }
    document = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    base = ("entry", 0, "changes", 0, "value")
    items = [
        ("/entry/0/changes/0/value/" + f"{kind}/{i}", (*base, kind, i))
        for kind in ("messages", "statuses")
        for i in range(len(value[kind]))
    ]
    return Body("whatsapp_cloud", document, items)


@st.composite
def evolution_body(draw) -> Body:
    kind = draw(st.sampled_from(sorted(EVOLUTION)))
    data = draw(st.lists(st.sampled_from(EVOLUTION[kind]), min_size=1, max_size=4))
    document = {"event": kind, "instance": "acme-loja", "data": data}
    return Body("evolution", document, [(f"/data/{i}", ("data", i)) for i in range(len(data))])


def delivery(body: bytes) -> Delivery:
    return Delivery("POST", "https://relay.test/", CIMultiDict(), MultiDict(), body, 0.0)


async def ingest(provider_name: str, document) -> tuple[set[str], list, list[str]]:
    """Ingest without verification (the property is about normalization and storage)."""
    store, letters = MemoryStore(), MemoryDeadLetters()
    provider = PROVIDERS[provider_name]
    source = SOURCES[SOURCE_OF[provider_name]]
    # The same provider without its verification: the property is about what follows it.
    unverified = replace(provider, verify=lambda delivery, source: None)
    body = json.dumps(document).encode()  # json, not orjson: ints beyond 64 bits too
    await webhooks.ingest(store, letters, source, unverified, delivery(body))
    page = await store.read(ACCOUNT, 1, 1000)  # the whole stream (its first microsecond on)
    stored = {orjson.loads(event.wire())["id"] for event in page.events}
    listed = await letters.list(10)
    places = [item["place"] for letter in listed for item in letter.unreadable]
    return stored, listed, places


def alone(body: Body, path: tuple) -> dict:
    """The body with the item at `path` as its only item (every item list emptied)."""
    *list_path, index = path
    holder = body.document
    for key in list_path:
        holder = holder[key]
    document = body.document
    for _, other in body.items:
        document = _mutate(document, tuple(other[:-1]), [])
    return _mutate(document, tuple(list_path), [holder[index]])


def check(body: Body, place: str, path: tuple, replacement) -> None:
    document = _mutate(body.document, path, replacement)
    stored, listed, places = asyncio.run(ingest(body.provider, document))
    others = [p for p in body.items if p[1] != path]
    expected: set[str] = set()
    for _, other_path in others:
        ids, _, unreadable = asyncio.run(ingest(body.provider, alone(body, other_path)))
        assert unreadable == [], "a fixture item is unreadable on its own"
        expected |= ids
    assert expected <= stored, "a readable item was lost"
    assert len(listed) <= 1
    assert places in ([], [place]), f"dead-lettered {places}, corrupted only {place}"
    event("corrupted item dead-lettered" if places else "corrupted item still readable")


@PROPERTY
@given(st.data())
def test_whatsapp_body_with_one_corrupted_item_keeps_every_other_item(data):
    body = data.draw(whatsapp_body())
    place, path = data.draw(st.sampled_from(body.items))
    holder = body.document
    for key in path:
        holder = holder[key]
    check(body, place, path, data.draw(corrupted(holder)))


@PROPERTY
@given(st.data())
def test_evolution_body_with_one_corrupted_item_keeps_every_other_item(data):
    body = data.draw(evolution_body())
    place, path = data.draw(st.sampled_from(body.items))
    check(body, place, path, data.draw(corrupted(body.document["data"][path[1]])))
