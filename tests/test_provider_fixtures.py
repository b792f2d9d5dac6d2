"""Every provider fixture, byte-exact with its documented headers, against the real app
on both engines: it yields exactly its golden events (schema-valid, visible through
check-updates), once however often it is retried, and never when forged.

Regenerate the goldens with RELAY_REGENERATE_GOLDENS=1, then review them by hand against
MANIFEST.md's "Expected normalized meaning".
"""

from __future__ import annotations

import asyncio
import json

import pytest
from jsonschema import Draft202012Validator

from relay.ingest import webhooks
from tests.credentials import API, auth
from tests.provider_fixtures import (
    ACCOUNT,
    DELIVERIES,
    REGENERATE,
    SOURCES,
    FixtureDelivery,
    forged,
)

EXPECTED_ACKS = {
    "whatsapp_cloud": (200, "application/json"),
    "telegram": (200, "text/plain"),
    "twilio": (200, "text/xml"),
    "evolution": (200, "application/json"),
    "zapi": (200, "application/json"),
    "standard_webhooks": (200, "application/json"),
}
by_id = pytest.mark.parametrize("delivery", DELIVERIES, ids=[d.id for d in DELIVERIES])


@pytest.fixture
async def providers_client(make_settings, client_for):
    return await client_for(make_settings(sources=SOURCES))


@pytest.fixture
def at_signing_time(monkeypatch):
    """Standard Webhooks fixtures were signed in 2025: verify them as of that moment."""

    def use(delivery: FixtureDelivery) -> None:
        if delivery.signed_at is not None:
            monkeypatch.setattr(webhooks, "now", lambda: delivery.signed_at)

    return use


async def post(client, delivery: FixtureDelivery):
    return await client.post(delivery.path, data=delivery.body, headers=delivery.headers)


async def cursor_now(client) -> str:
    answer = await (await client.get("/api/chats/check-updates/", headers=auth(ACCOUNT))).json()
    return answer["timestamp"]


async def updates_since(client, cursor: str) -> list[dict]:
    response = await client.get(
        "/api/chats/check-updates/",
        params={"last_check": cursor, "limit": "1000"},
        headers=auth(ACCOUNT),
    )
    assert response.status == 200
    return (await response.json())["updates"]


def without_timestamps(updates: list[dict]) -> list[dict]:
    return [{k: v for k, v in update.items() if k != "timestamp"} for update in updates]


def webhook_count(metrics: str, source: str, outcome: str) -> float:
    for line in metrics.splitlines():
        wanted = f'outcome="{outcome}"' in line and f'source="{source}"' in line
        if line.startswith("relay_webhooks_total{") and wanted:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@by_id
async def test_each_fixture_yields_exactly_its_golden_events(
    providers_client, at_signing_time, delivery
):
    at_signing_time(delivery)
    start = await cursor_now(providers_client)
    response = await post(providers_client, delivery)
    status, content_type = EXPECTED_ACKS[delivery.provider]
    assert response.status == status, await response.text()
    assert response.content_type == content_type
    if delivery.provider == "telegram":
        assert await response.read() == b""
    if delivery.provider == "twilio":
        assert await response.read() == (
            b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
        )
    updates = await updates_since(providers_client, start)
    schema = await (await providers_client.get("/schemas/update-event.json")).json()
    for update in updates:
        Draft202012Validator(schema).validate(update)
    events = without_timestamps(updates)
    if REGENERATE:
        delivery.golden.write_text(json.dumps(events, indent=2, ensure_ascii=False) + "\n")
    golden = json.loads(delivery.golden.read_text())
    assert events == golden
    assert events, "every fixture in the corpus means at least one event"


@by_id
async def test_each_fixture_retried_and_raced_is_stored_once(
    providers_client, at_signing_time, delivery
):
    at_signing_time(delivery)
    start = await cursor_now(providers_client)
    first = await post(providers_client, delivery)
    again = await post(providers_client, delivery)
    raced = await asyncio.gather(*(post(providers_client, delivery) for _ in range(8)))
    assert [r.status for r in (first, again, *raced)] == [200] * 10
    events = without_timestamps(await updates_since(providers_client, start))
    assert events == json.loads(delivery.golden.read_text())
    metrics = await (await providers_client.get("/metrics")).text()
    source = delivery.path.split("/")[2].split("?")[0]
    assert webhook_count(metrics, source, "accepted") == 1
    assert webhook_count(metrics, source, "duplicate") == 9


@by_id
@pytest.mark.parametrize("case", ["byte", "secret", "missing"])
async def test_each_fixture_forged_is_rejected_and_stores_nothing(
    providers_client, at_signing_time, delivery, case
):
    at_signing_time(delivery)
    start = await cursor_now(providers_client)
    response = await post(providers_client, forged(delivery, case))
    assert response.status == 401, await response.text()
    assert set(await response.json()) == {"error", "detail"}
    assert await updates_since(providers_client, start) == []
    metrics = await (await providers_client.get("/metrics")).text()
    source = delivery.path.split("/")[2].split("?")[0]
    assert webhook_count(metrics, source, "rejected") == 1
    listed = await providers_client.get("/api/admin/dead-letters", headers=API)
    assert (await listed.json())["dead_letters"] == []


async def test_a_standard_webhooks_fixture_checked_now_is_stale(providers_client):
    (delivery,) = [d for d in DELIVERIES if d.provider == "standard_webhooks"]
    start = await cursor_now(providers_client)
    response = await post(providers_client, forged(delivery, "stale"))
    assert response.status == 401 and (await response.json())["error"] == "stale"
    assert await updates_since(providers_client, start) == []


def test_every_golden_file_belongs_to_a_fixture():
    goldens = {d.golden for d in DELIVERIES}
    on_disk = set(next(iter(goldens)).parent.parent.glob("*/*.golden.json"))
    assert on_disk == goldens
