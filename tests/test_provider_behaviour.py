"""What the fixtures alone do not show: Meta's handshake, Evolution's JWT, statuses that
never move backwards, one chat per person under WhatsApp LIDs, kinds relay ignores."""

from __future__ import annotations

import time

import jwt
import orjson
import pytest

from relay.ingest.providers import provider_problems
from relay.ingest.providers.common.normal import STATUS_RANK
from relay.settings import Source
from tests.credentials import API, auth
from tests.provider_fixtures import (
    ACCOUNT,
    DELIVERIES,
    EVOLUTION_SECRET,
    FIXTURES,
    SOURCES,
    TELEGRAM_SECRET,
    VERIFY_TOKEN,
    ZAPI_SECRET,
)

JWT_KEY = "evolution-jwt-key-0123456789abcdef"
EVOLUTION_JWT = Source("evo-jwt", "evolution", ACCOUNT, {"jwt_key": JWT_KEY})


@pytest.fixture
async def client(make_settings, client_for):
    return await client_for(make_settings(sources={**SOURCES, "evo-jwt": EVOLUTION_JWT}))


async def updates_after(client, post) -> list[dict]:
    start = await (await client.get("/api/chats/check-updates/", headers=auth())).json()
    await post()
    answer = await (
        await client.get(
            "/api/chats/check-updates/", params={"last_check": start["timestamp"]}, headers=auth()
        )
    ).json()
    return answer["updates"]


def _handshake_request() -> str:
    request_line = (FIXTURES / "whatsapp_cloud" / "verification_get.txt").read_text()
    return request_line.split("\r\n", 1)[0].split(" ")[1]


async def test_the_meta_handshake_echoes_the_challenge_as_text(client):
    response = await client.get(_handshake_request())
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert await response.text() == "1158200007"


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN},
    ],
)
async def test_a_wrong_handshake_is_a_403_json(client, query):
    response = await client.get("/webhooks/acme-whatsapp", params=query)
    assert response.status == 403
    assert set(await response.json()) == {"error", "detail"}


async def test_the_handshake_accepts_underscored_names_from_php_proxies(client):
    query = {"hub_mode": "subscribe", "hub_verify_token": VERIFY_TOKEN, "hub_challenge": "42"}
    response = await client.get("/webhooks/acme-whatsapp", params=query)
    assert response.status == 200 and await response.text() == "42"


async def test_providers_without_a_handshake_answer_405_json(client):
    response = await client.get("/webhooks/acme-telegram")
    assert response.status == 405 and (await response.json())["error"] == "method_not_allowed"


def _evolution_body() -> bytes:
    return (FIXTURES / "evolution" / "messages_upsert_text_conversation.json").read_bytes()


def _token(key: str = JWT_KEY, ttl: int = 600) -> str:
    now = int(time.time())
    claims = {"iat": now, "exp": now + ttl, "app": "evolution", "action": "webhook"}
    return jwt.encode(claims, key, algorithm="HS256")


async def test_evolution_jwt_key_is_verified(client):
    body = _evolution_body()
    ok = await client.post(
        "/webhooks/evo-jwt", data=body, headers={"Authorization": f"Bearer {_token()}"}
    )
    assert ok.status == 200
    for headers in (
        {"Authorization": f"Bearer {_token(key='another-key-0123456789abcdef-0123')}"},
        {"Authorization": f"Bearer {_token(ttl=-120)}"},
        {"X-Relay-Secret": EVOLUTION_SECRET},  # a source with jwt_key requires the JWT
        {},
    ):
        rejected = await client.post("/webhooks/evo-jwt", data=body, headers=headers)
        assert rejected.status == 401, headers
        assert set(await rejected.json()) == {"error", "detail"}


async def test_the_shared_secret_may_come_in_the_query_or_the_header(client):
    body = _evolution_body()
    assert (
        await client.post(f"/webhooks/acme-evolution?secret={EVOLUTION_SECRET}", data=body)
    ).status == 200
    zapi = (FIXTURES / "zapi" / "received_text.json").read_bytes()
    headers = {"X-Relay-Secret": ZAPI_SECRET}
    assert (await client.post("/webhooks/acme-zapi", data=zapi, headers=headers)).status == 200


async def test_evolution_webhook_by_events_sub_paths_are_accepted(client):
    response = await client.post(
        "/webhooks/acme-evolution/messages-upsert",
        data=_evolution_body(),
        headers={"X-Relay-Secret": EVOLUTION_SECRET},
    )
    assert response.status == 200


async def test_a_late_delivered_never_moves_a_read_message_backwards(client):
    """Clients keep the highest status_rank per message: read stays read."""
    by_name = {d.name: d for d in DELIVERIES if d.provider == "whatsapp_cloud"}

    async def post_in_wrong_order():
        for name in ("status_sent.json", "status_read.json", "status_delivered.json"):
            d = by_name[name]
            assert (await client.post(d.path, data=d.body, headers=d.headers)).status == 200

    updates = await updates_after(client, post_in_wrong_order)
    shown: dict[str, dict] = {}
    for update in updates:
        message = update["message"]
        current = shown.get(message["id"])
        if current is None or message["status_rank"] > current["status_rank"]:
            shown[message["id"]] = message
    (final,) = shown.values()
    assert final["status"] == "read"
    assert [u["message"]["status"] for u in updates] == ["sent", "read", "delivered"]
    assert STATUS_RANK["read"] > STATUS_RANK["delivered"] > STATUS_RANK["sent"]


async def test_a_lid_chat_is_the_same_chat_as_its_phone_number(client):
    payload = orjson.loads(_evolution_body())
    payload["data"]["key"] = {
        "remoteJid": "100000000000305@lid",
        "remoteJidAlt": "5511900000305@s.whatsapp.net",
        "fromMe": False,
        "id": "3A00000000000000F0L1",
        "addressingMode": "lid",
    }

    async def post():
        headers = {"X-Relay-Secret": EVOLUTION_SECRET}
        response = await client.post(
            "/webhooks/acme-evolution", data=orjson.dumps(payload), headers=headers
        )
        assert response.status == 200

    (update,) = await updates_after(client, post)
    assert update["chat_id"] == "5511900000305@s.whatsapp.net"


@pytest.mark.parametrize(
    "update",
    [
        {"update_id": 9001, "chat_join_request": {"chat": {"id": -100}, "date": 1}},
        {"update_id": 9002, "inline_query": {"id": "1", "query": "x"}},
        {"update_id": 9003, "poll": {"id": "p"}},
    ],
)
async def test_telegram_kinds_relay_does_not_map_are_acknowledged_and_ignored(client, update):
    async def post():
        response = await client.post(
            "/webhooks/acme-telegram",
            data=orjson.dumps(update),
            headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET},
        )
        assert response.status == 200 and await response.read() == b""

    assert await updates_after(client, post) == []
    metrics = await (await client.get("/metrics")).text()
    assert 'outcome="ignored",provider="telegram",source="acme-telegram"} 1.0' in metrics
    letters = await (await client.get("/api/admin/dead-letters", headers=API)).json()
    assert letters["dead_letters"] == []


def test_sources_without_their_secrets_are_config_problems():
    problems = provider_problems(
        {
            "wa": Source("wa", "whatsapp_cloud", ACCOUNT, {}),
            "evo": Source("evo", "evolution", ACCOUNT, {}),
            "z": Source("z", "zapi", ACCOUNT, {}),
            "tg": Source("tg", "telegram", ACCOUNT, {}),
        }
    )
    assert len(problems) == 4
    assert any("[sources.evo]" in p and "jwt_key_env" in p for p in problems)
    bad_token = Source("tg", "telegram", ACCOUNT, {"secret": "has spaces?!"})
    (problem,) = provider_problems({"tg": bad_token})
    assert "secret_token" in problem


async def test_a_reserialized_meta_body_does_not_match_its_signature(client):
    """Meta signs its escaped bytes (\\u00e3, \\/): verifying a re-encoding would fail."""
    (delivery,) = [d for d in DELIVERIES if d.id == "whatsapp_cloud/text_message.json"]
    reencoded = orjson.dumps(orjson.loads(delivery.body))
    assert reencoded != delivery.body and b"\\u00e3" in delivery.body
    response = await client.post(delivery.path, data=reencoded, headers=delivery.headers)
    assert response.status == 401


async def test_a_twilio_status_path_is_part_of_what_twilio_signed(client):
    (delivery,) = [d for d in DELIVERIES if d.id == "twilio/whatsapp_status_read.txt"]
    assert delivery.path.endswith("/status")
    elsewhere = await client.post(
        "/webhooks/acme-twilio", data=delivery.body, headers=delivery.headers
    )
    assert elsewhere.status == 401
