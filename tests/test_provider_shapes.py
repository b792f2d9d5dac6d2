"""Documented shapes the fixture corpus does not hold, one small body each: what relay
makes of them, field by field."""

from __future__ import annotations

from urllib.parse import urlencode

import orjson
import pytest
from jsonschema import Draft202012Validator
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from relay.ingest.providers import whatsapp_cloud
from tests.credentials import auth
from tests.provider_fixtures import (
    EVOLUTION_SECRET,
    SOURCES,
    TELEGRAM_SECRET,
    TWILIO_PUBLIC_URL,
    TWILIO_TOKEN,
    WHATSAPP_SECRET,
    ZAPI_SECRET,
)


@pytest.fixture
async def client(make_settings, client_for):
    return await client_for(make_settings(sources=SOURCES))


async def deliver(client, provider: str, payload, status: bool = False) -> list[dict]:
    """Sign (or authenticate) a body as the provider would, post it, return its events."""
    if provider == "twilio":
        body = urlencode(payload).encode()
        url = TWILIO_PUBLIC_URL + ("/status" if status else "")
        signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, MultiDict(payload))
        path = "/webhooks/acme-twilio" + ("/status" if status else "")
        headers = {
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        }
    else:
        body = orjson.dumps(payload)
        path, headers = {
            "whatsapp_cloud": (
                "/webhooks/acme-whatsapp",
                {"X-Hub-Signature-256": whatsapp_cloud.sign(WHATSAPP_SECRET, body)},
            ),
            "telegram": (
                "/webhooks/acme-telegram",
                {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET},
            ),
            "evolution": ("/webhooks/acme-evolution", {"X-Relay-Secret": EVOLUTION_SECRET}),
            "zapi": (f"/webhooks/acme-zapi?secret={ZAPI_SECRET}", {}),
        }[provider]
    start = await (await client.get("/api/chats/check-updates/", headers=auth())).json()
    response = await client.post(path, data=body, headers=headers)
    assert response.status == 200, await response.text()
    answer = await client.get(
        "/api/chats/check-updates/", params={"last_check": start["timestamp"]}, headers=auth()
    )
    updates = (await answer.json())["updates"]
    schema = await (await client.get("/schemas/update-event.json")).json()
    for update in updates:
        Draft202012Validator(schema).validate(update)
    return updates


def whatsapp(*messages, statuses=(), contacts=()) -> dict:
    value = {"metadata": {"phone_number_id": "110000000000021"}, "contacts": list(contacts)}
    value |= {"messages": list(messages), "statuses": list(statuses)}
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }


def wa(wamid: str, kind: str, **content) -> dict:
    return {"from": "15550100123", "id": wamid, "timestamp": "1741600000", "type": kind, **content}


async def test_whatsapp_documented_message_kinds(client):
    updates = await deliver(
        client,
        "whatsapp_cloud",
        whatsapp(
            wa("w1", "location", location={"latitude": -23.5, "longitude": -46.6, "name": "Loja"}),
            wa(
                "w2",
                "interactive",
                interactive={"type": "button_reply", "button_reply": {"id": "b1", "title": "Sim"}},
                context={"from": "15550100001", "id": "w0"},
            ),
            wa("w3", "button", button={"payload": "P", "text": "Parar"}),
            wa("w4", "reaction", reaction={"message_id": "w0"}),  # no emoji: removed
            wa("w5", "revoke", revoke={"original_message_id": "w1"}),
            wa(
                "w6",
                "document",
                document={"id": "m6", "mime_type": "application/pdf", "filename": "nf.pdf"},
            ),
            wa("w7", "unsupported", errors=[{"code": 131051, "title": "Message type unknown"}]),
            wa(
                "w8",
                "contacts",
                contacts=[
                    {
                        "name": {"formatted_name": "Ana"},
                        "phones": [{"phone": "+1 555", "wa_id": "1555"}],
                    }
                ],
            ),
        ),
    )
    by_id = {u["id"].split(":", 1)[1]: u for u in updates}
    assert len(updates) == 8
    assert by_id["w1"]["message"]["kind"] == "location"
    assert by_id["w1"]["message"]["location"]["latitude"] == -23.5
    w2 = by_id["w2"]["message"]
    assert (w2["kind"], w2["text"], w2["reply_to"]) == ("interactive", "Sim", "w0")
    assert w2["interactive"] == {"type": "button_reply", "id": "b1", "title": "Sim"}
    assert by_id["w3"]["message"]["interactive"]["id"] == "P"
    assert by_id["w4"]["type"] == "message.reaction"
    assert by_id["w4"]["message"]["reaction"] == {"emoji": None, "removed": True, "id": "w4"}
    assert (by_id["w5"]["type"], by_id["w5"]["message"]["id"]) == ("message.deleted", "w1")
    assert by_id["w6"]["message"]["media"] == {
        "id": "m6",
        "mime_type": "application/pdf",
        "file_name": "nf.pdf",
    }
    assert by_id["w7"]["message"]["kind"] == "unknown"
    assert by_id["w7"]["message"]["text"] == "Message type unknown"
    assert by_id["w8"]["message"]["contacts"] == [{"name": "Ana", "phones": ["1555"]}]


async def test_whatsapp_older_statuses_with_conversation_and_webhook_errors(client):
    status = {
        "id": "w9",
        "status": "delivered",
        "timestamp": "1741600122",
        "recipient_id": "15550100123",
        "conversation": {"id": "c", "origin": {"type": "service"}},
        "pricing": {"billable": True, "pricing_model": "CBP", "category": "service"},
    }
    payload = whatsapp(statuses=[status])
    value = payload["entry"][0]["changes"][0]["value"]
    value["errors"] = [{"code": 131000, "title": "Something went wrong"}]
    updates = await deliver(client, "whatsapp_cloud", payload)
    assert [u["type"] for u in updates] == ["message.status", "connection.updated"]
    assert updates[0]["message"]["status"] == "delivered"
    assert updates[1]["connection"]["error"]["code"] == 131000


async def test_telegram_channel_posts_have_no_from_and_reactions_name_the_message(client):
    post = {"update_id": 1, "channel_post": {
        "message_id": 9, "date": 1741600000, "text": "Promo!",
        "chat": {"id": -1001, "type": "channel", "title": "Loja"},
        "sender_chat": {"id": -1001, "type": "channel", "title": "Loja"},
    }}  # fmt: skip
    (channel,) = await deliver(client, "telegram", post)
    assert channel["message"]["from"] == {"id": "-1001", "name": "Loja"}
    assert channel["message"]["id"] == "-1001:9"
    reaction = {"update_id": 2, "message_reaction": {
        "chat": {"id": 5550001001, "type": "private"}, "message_id": 501,
        "user": {"id": 5550001001, "first_name": "Carla"}, "date": 1741600300,
        "old_reaction": [], "new_reaction": [{"type": "emoji", "emoji": "❤"}],
    }}  # fmt: skip
    (reacted,) = await deliver(client, "telegram", reaction)
    assert reacted["type"] == "message.reaction"
    assert reacted["message"]["id"] == "5550001001:501"
    assert reacted["message"]["reaction"] == {"emoji": "❤", "removed": False}


async def test_twilio_media_messages_and_undelivered_statuses(client):
    inbound = [
        ("MessageSid", "MM1"), ("From", "whatsapp:+5511900000301"), ("To", "whatsapp:+1555"),
        ("Body", ""), ("NumMedia", "2"), ("SmsStatus", "received"),
        ("MediaUrl0", "https://api.twilio.com/m/0"), ("MediaContentType0", "image/jpeg"),
        ("MediaUrl1", "https://api.twilio.com/m/1"), ("MediaContentType1", "application/pdf"),
    ]  # fmt: skip
    (message,) = await deliver(client, "twilio", inbound)
    assert message["message"]["kind"] == "image"
    assert message["message"]["media"] == {
        "url": "https://api.twilio.com/m/0",
        "mime_type": "image/jpeg",
    }
    assert len(message["message"]["attachments"]) == 2
    failed = [
        ("MessageSid", "SM9"), ("MessageStatus", "undelivered"), ("SmsStatus", "undelivered"),
        ("To", "+15550100300"), ("From", "+1555"), ("ErrorCode", "30003"),
    ]  # fmt: skip
    (status,) = await deliver(client, "twilio", failed, status=True)
    assert status["message"]["status"] == "failed"
    assert status["message"]["provider_status"] == "undelivered"
    assert status["message"]["error"] == {"code": "30003"}


async def test_evolution_v1_acks_and_wrapped_messages(client):
    v1 = {"event": "messages.update", "instance": "loja", "data": {
        "remoteJid": "5511900000302@s.whatsapp.net", "fromMe": True, "id": "3EB0X",
        "status": "READ", "datetime": 1741600180000, "owner": "loja",
    }}  # fmt: skip
    (ack,) = await deliver(client, "evolution", v1)
    assert ack["message"]["status"] == "read"
    assert ack["message"]["status_at"] == "2025-03-10T09:49:40+00:00"
    wrapped = {"event": "MESSAGES_UPSERT", "instance": "loja", "data": {
        "key": {"remoteJid": "5511900000302@s.whatsapp.net", "fromMe": False, "id": "ABC"},
        "pushName": "Rafael", "messageTimestamp": 1741600000,
        "message": {"ephemeralMessage": {"message": {"extendedTextMessage": {
            "text": "respondendo", "contextInfo": {"stanzaId": "3EB0X"}}}}},
    }}  # fmt: skip
    (message,) = await deliver(client, "evolution", wrapped)
    assert (message["message"]["text"], message["message"]["reply_to"]) == ("respondendo", "3EB0X")


async def test_zapi_group_messages_are_authored_by_the_participant(client):
    group = {
        "type": "ReceivedCallback", "instanceId": "I1", "messageId": "G1",
        "phone": "120363000000000302-group", "isGroup": True,
        "participantPhone": "5511900000305", "senderName": "Helena", "fromMe": False,
        "momment": 1741600000000, "text": {"message": "oi grupo"},
    }  # fmt: skip
    (message,) = await deliver(client, "zapi", group)
    assert message["chat_id"] == "120363000000000302-group"
    assert message["message"]["from"] == {"id": "5511900000305", "name": "Helena"}
    statuses = {
        "type": "MessageStatusCallback",
        "instanceId": "I1",
        "status": "READ",
        "ids": ["A", "B"],
        "phone": "5511900000303",
        "momment": 1741600150000,
    }
    assert [u["id"] for u in await deliver(client, "zapi", statuses)] == [
        "zapi:I1:A:status:read",
        "zapi:I1:B:status:read",
    ]
