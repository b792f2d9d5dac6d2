"""One unreadable item never loses the readable ones: a body is normalized item by item,
what can be stored is stored, the rest is one dead letter naming each item's place in the
body, the provider is acknowledged after both, and a replay stores only what was missing."""

from __future__ import annotations

import json

import pytest

from relay.ingest.providers import whatsapp_cloud
from tests.credentials import API, auth
from tests.provider_fixtures import ACCOUNT, SOURCES, WHATSAPP_SECRET

BSUID = "BR.13491208655302741918"
GOOD = "wamid.GOOD0000000000000000000000000000001"
BROKEN = "wamid.BROKEN000000000000000000000000000002"
STATUS = "wamid.OUT00000000000000000000000000000003"
BROKEN_PLACE = "/entry/0/changes/0/value/messages/1"


def meta_body(value: dict) -> bytes:
    document = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "109900000000001",
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"phone_number_id": "110000000000021"},
                            **value,
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }
    return json.dumps(document, separators=(",", ":")).encode()


MIXED = meta_body(
    {
        "contacts": [{"profile": {"name": "Bia", "username": "@bia"}, "user_id": BSUID}],
        "messages": [
            {
                "from_user_id": BSUID,
                "id": GOOD,
                "timestamp": "1767225600",
                "type": "text",
                "text": {"body": "bom dia"},
            },
            # No from, no from_user_id, no from_parent_user_id: no chat to put it in.
            {"id": BROKEN, "timestamp": "1767225601", "type": "text", "text": {"body": "?"}},
        ],
        "statuses": [
            {
                "id": STATUS,
                "status": "delivered",
                "timestamp": "1767225602",
                "recipient_user_id": BSUID,
            }
        ],
    }
)


@pytest.fixture
async def client(make_settings, client_for):
    return await client_for(make_settings(sources=SOURCES))


async def post_meta(client, body: bytes):
    headers = {
        "X-Hub-Signature-256": whatsapp_cloud.sign(WHATSAPP_SECRET, body),
        "Content-Type": "application/json",
    }
    return await client.post("/webhooks/acme-whatsapp", data=body, headers=headers)


async def stream(client, token_chats=None) -> list[dict]:
    start = "1970-01-01T00:00:01+00:00"
    response = await client.get(
        "/api/chats/check-updates/",
        params={"last_check": start, "limit": "1000"},
        headers=auth(ACCOUNT, chats=token_chats),
    )
    assert response.status == 200
    return (await response.json())["updates"]


async def letters(client) -> list[dict]:
    response = await client.get("/api/admin/dead-letters", headers=API)
    return (await response.json())["dead_letters"]


def ids(updates: list[dict]) -> list[str]:
    return [update["id"] for update in updates]


async def test_a_mixed_body_stores_the_good_items_once_and_dead_letters_the_unreadable_one(
    client, monkeypatch
):
    for _ in range(2):  # Meta retries: the same body again changes nothing in the stream
        response = await post_meta(client, MIXED)
        assert response.status == 200
    expected = [f"whatsapp_cloud:{GOOD}", f"whatsapp_cloud:{STATUS}:status:delivered"]
    assert ids(await stream(client)) == expected
    # The user known by username only is a chat a `chats` allowlist can name.
    assert ids(await stream(client, token_chats=[BSUID])) == expected
    assert all(update["chat_id"] == BSUID for update in await stream(client))

    first, second = await letters(client)
    assert (
        first["unreadable"]
        == second["unreadable"]
        == [
            {
                "place": BROKEN_PLACE,
                "error": "a WhatsApp message has no from, from_user_id or from_parent_user_id",
            }
        ]
    )
    assert first["body"] == MIXED.decode()
    assert first["error"].startswith(BROKEN_PLACE)

    still = await client.post(f"/api/admin/dead-letters/{first['id']}/replay", headers=API)
    assert still.status == 422 and BROKEN_PLACE in (await still.json())["detail"]
    assert ids(await stream(client)) == expected

    # The fix ships: a message without a sender is put in an "unknown" chat.
    real_sender = whatsapp_cloud._sender
    monkeypatch.setattr(
        whatsapp_cloud, "_sender", lambda m: real_sender(m) if m.get("from_user_id") else "unknown"
    )
    replayed = await client.post(f"/api/admin/dead-letters/{first['id']}/replay", headers=API)
    assert replayed.status == 200
    answer = await replayed.json()
    # Only what was missing: the good message and the status are not sent to the store again.
    assert [(e["id"], e["duplicate"]) for e in answer["events"]] == [
        (f"whatsapp_cloud:{BROKEN}", False)
    ]
    again = await client.post(f"/api/admin/dead-letters/{second['id']}/replay", headers=API)
    assert [(e["id"], e["duplicate"]) for e in (await again.json())["events"]] == [
        (f"whatsapp_cloud:{BROKEN}", True)
    ]
    assert ids(await stream(client)) == [*expected, f"whatsapp_cloud:{BROKEN}"]
    assert await letters(client) == []


async def test_a_status_with_no_recipient_at_all_never_reaches_the_stream(client):
    body = meta_body({"statuses": [{"id": STATUS, "status": "read", "timestamp": "1767225602"}]})
    assert (await post_meta(client, body)).status == 200
    assert await stream(client) == []
    (letter,) = await letters(client)
    assert letter["unreadable"] == [
        {
            "place": "/entry/0/changes/0/value/statuses/0",
            "error": "a WhatsApp status has no recipient_id or recipient_user_id",
        }
    ]


async def test_a_body_that_is_not_json_is_one_letter_for_the_whole_body(client):
    assert (await post_meta(client, b"{not json")).status == 200
    (letter,) = await letters(client)
    assert letter["unreadable"] == [{"place": "", "error": "the body is not JSON"}]
    assert letter["error"] == "the body is not JSON"


async def test_evolution_acks_are_items_of_one_body(client):
    from tests.provider_fixtures import EVOLUTION_SECRET

    good = {"keyId": "3EB0AAA", "remoteJid": "5511900000301@s.whatsapp.net", "status": "READ"}
    body = json.dumps(
        {"event": "messages.update", "instance": "inbox", "data": [good, {"status": "READ"}]}
    ).encode()
    response = await client.post(
        "/webhooks/acme-evolution", data=body, headers={"X-Relay-Secret": EVOLUTION_SECRET}
    )
    assert response.status == 200
    assert [u["message"]["id"] for u in await stream(client)] == ["3EB0AAA"]
    (letter,) = await letters(client)
    assert [item["place"] for item in letter["unreadable"]] == ["/data/1"]
