"""The update-event JSON Schema is published, referenced from /openapi.json, a valid
2020-12 schema, and loose enough for whatever the publish API is given."""

from __future__ import annotations

from jsonschema import Draft202012Validator

from tests.credentials import API, auth


async def test_the_schema_is_served_and_referenced_from_openapi(client):
    response = await client.get("/schemas/update-event.json")
    assert response.status == 200
    schema = await response.json()
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == "/schemas/update-event.json"
    document = await (await client.get("/openapi.json")).json()
    assert document["components"]["schemas"]["UpdateEvent"] == {"$ref": schema["$id"]}
    for path in ("/schemas/update-event.json", "/api/admin/dead-letters"):
        assert path in document["paths"]
    assert "get" in document["paths"]["/webhooks/{source}"]
    assert "post" in document["paths"]["/api/admin/dead-letters/{id}/replay"]


async def test_published_events_of_any_type_fit_the_schema(client):
    schema = await (await client.get("/schemas/update-event.json")).json()
    start = await (await client.get("/api/chats/check-updates/", headers=auth())).json()
    events = [
        {"account": "acme", "type": "order.paid", "data": {"n": 1}},
        {"account": "acme", "type": "message.created", "chat_id": 7, "data": {"x": [1]}},
    ]
    assert (await client.post("/api/publish", json=events, headers=API)).status == 201
    answer = await (
        await client.get(
            "/api/chats/check-updates/", params={"last_check": start["timestamp"]}, headers=auth()
        )
    ).json()
    assert len(answer["updates"]) == 2
    for update in answer["updates"]:
        Draft202012Validator(schema).validate(update)


async def test_a_chat_provider_event_without_its_message_does_not_fit(client):
    schema = await (await client.get("/schemas/update-event.json")).json()
    broken = {
        "id": "x",
        "type": "message.status",
        "timestamp": "2025-07-19T03:54:04.574010+00:00",
        "account": "acme",
        "chat_id": "c",
        "provider": "whatsapp_cloud",
        "message": {"id": "m", "status": "read"},  # no status_rank
    }
    assert not Draft202012Validator(schema).is_valid(broken)
