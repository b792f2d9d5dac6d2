"""POST /webhooks/{source} with the Standard Webhooks scheme, cross-checked with the
`standardwebhooks` package and the shared fixtures."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from relay.ingest import webhooks
from relay.ingest.providers import standard_webhooks
from relay.settings import Source
from tests.credentials import auth

FIXTURES = Path(__file__).parent / "fixtures" / "standard_webhooks"
SECRET = "whsec_cmVsYXktdGVzdC1zZWNyZXQtbm90LWZvci1wcm9kISE="
SOURCE = Source("acme-events", "standard_webhooks", "acme", {"secret": SECRET})


def signed_headers(body: bytes, msg_id: str, secret: str = SECRET, at: int | None = None):
    timestamp = str(at if at is not None else int(time.time()))
    key = standard_webhooks.secret_keys(secret)[0]
    signature = standard_webhooks.sign(key, msg_id, timestamp, body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": f"v1,{signature}",
        "Content-Type": "application/json",
    }


@pytest.fixture
async def wh_client(make_settings, client_for):
    return await client_for(make_settings(sources={SOURCE.name: SOURCE}))


def test_signatures_agree_with_the_standardwebhooks_package():
    vector = json.loads((FIXTURES / "test_vectors.json").read_text())
    key = standard_webhooks.secret_keys(vector["secret"])[0]
    ours = standard_webhooks.sign(
        key, vector["webhook-id"], vector["webhook-timestamp"], vector["body"].encode()
    )
    assert f"v1,{ours}" == vector["expected_webhook-signature"]
    ours_key = standard_webhooks.secret_keys(SECRET)[0]
    body = b'{"type":"t","data":{"x":"\xc3\xa9"}}'
    theirs = Webhook(SECRET).sign("msg_1", _datetime(1741608000), body.decode())
    assert theirs == f"v1,{standard_webhooks.sign(ours_key, 'msg_1', '1741608000', body)}"


def _datetime(seconds: int):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, tz=UTC)


async def test_the_fixture_is_accepted_and_normalized(wh_client, monkeypatch):
    body = (FIXTURES / "message_created.json").read_bytes()
    facts = json.loads((FIXTURES / "signatures.json").read_text())["facts"][0]["header"]
    monkeypatch.setattr(webhooks, "now", lambda: float(facts["webhook-timestamp"]) + 30)
    # The package computes the same signature for this fixture as the one recorded.
    package = Webhook(SECRET).sign(
        facts["webhook-id"], _datetime(int(facts["webhook-timestamp"])), body.decode()
    )
    assert package == facts["webhook-signature"]
    start = await (await wh_client.get("/api/chats/check-updates/", headers=auth())).json()
    response = await wh_client.post(
        "/webhooks/acme-events", data=body, headers={**facts, "Content-Type": "application/json"}
    )
    assert response.status == 200, await response.text()
    answer = await (
        await wh_client.get(
            "/api/chats/check-updates/", params={"last_check": start["timestamp"]}, headers=auth()
        )
    ).json()
    (update,) = answer["updates"]
    assert update == {
        "id": "acme-events:msg_2tFAKE0000000000000000001",
        "type": "message.created",
        "account": "acme",
        "chat_id": "chat_0001",
        "source": "acme-events",
        "provider": "standard_webhooks",
        "message": json.loads(body)["data"]["message"],
        "timestamp": answer["timestamp"],
    }


async def test_a_fresh_delivery_signed_by_the_package_is_accepted_once(wh_client):
    body = b'{"type":"message.created","data":{"chat_id":"c9","message":{"id":"x","text":"hi"}}}'
    headers = Webhook(SECRET).sign("msg_pkg_1", _datetime(int(time.time())), body.decode())
    delivery = {
        "webhook-id": "msg_pkg_1",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": headers,
        "Content-Type": "application/json",
    }
    first = await wh_client.post("/webhooks/acme-events", data=body, headers=delivery)
    again = await wh_client.post("/webhooks/acme-events", data=body, headers=delivery)
    assert first.status == 200 and again.status == 200
    metrics = await (await wh_client.get("/metrics")).text()
    assert 'outcome="accepted",provider="standard_webhooks",source="acme-events"} 1.0' in metrics
    assert 'outcome="duplicate",provider="standard_webhooks",source="acme-events"} 1.0' in metrics


async def test_rotation_accepts_any_listed_signature(make_settings, client_for):
    old = "whsec_" + base64.b64encode(b"old-secret-0123456789abcdef").decode()
    source = Source("rot", "standard_webhooks", "acme", {"secret": f"{old} {SECRET}"})
    client = await client_for(make_settings(sources={"rot": source}))
    body = b'{"type":"t","data":{}}'
    headers = signed_headers(body, "msg_rot")
    headers["webhook-signature"] = "v1,bm9wZQ== v1a,ignored " + headers["webhook-signature"]
    assert (await client.post("/webhooks/rot", data=body, headers=headers)).status == 200


@pytest.mark.parametrize("case", ["byte", "secret", "missing", "stale", "future", "v1a-only"])
async def test_forged_or_stale_deliveries_are_rejected_and_store_nothing(wh_client, case):
    body = b'{"type":"message.created","data":{"chat_id":"c1"}}'
    headers = signed_headers(body, f"msg_{case}")
    if case == "byte":
        body = body.replace(b"c1", b"c2")
    elif case == "secret":
        other = "whsec_" + base64.b64encode(b"not-the-right-secret-012345").decode()
        headers = signed_headers(body, f"msg_{case}", secret=other)
    elif case == "missing":
        del headers["webhook-signature"]
    elif case == "stale":
        headers = signed_headers(body, f"msg_{case}", at=int(time.time()) - 310)
    elif case == "future":
        headers = signed_headers(body, f"msg_{case}", at=int(time.time()) + 310)
    elif case == "v1a-only":
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v1a,")
    start = await (await wh_client.get("/api/chats/check-updates/", headers=auth())).json()
    response = await wh_client.post("/webhooks/acme-events", data=body, headers=headers)
    assert response.status == 401
    assert set(await response.json()) == {"error", "detail"}
    answer = await (
        await wh_client.get(
            "/api/chats/check-updates/", params={"last_check": start["timestamp"]}, headers=auth()
        )
    ).json()
    assert answer["updates"] == []


async def test_an_unknown_source_is_a_404_json(wh_client):
    response = await wh_client.post("/webhooks/nobody", data=b"{}")
    assert response.status == 404 and (await response.json())["error"] == "unknown_source"
