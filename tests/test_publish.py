"""POST /api/publish: stored before the 201, idempotent by id, strict about its input."""

from __future__ import annotations

import pytest

from tests.credentials import API, API_KEY, auth

PATH = "/api/publish"


async def test_publish_answers_each_id_and_timestamp_after_storing(client):
    response = await client.post(
        PATH, json={"account": "acme", "type": "note", "id": "n1", "data": [1, "two"]}, headers=API
    )
    assert response.status == 201
    (stored,) = (await response.json())["events"]
    assert stored["id"] == "n1" and not stored["duplicate"]
    assert stored["timestamp"].endswith("+00:00")


async def test_the_same_id_is_stored_once_with_the_original_timestamp(client):
    event = {"account": "acme", "type": "note", "id": "same"}
    first = await (await client.post(PATH, json=event, headers=API)).json()
    again = await client.post(PATH, json=[event, {**event, "id": "other"}], headers=API)
    assert again.status == 201
    body = await again.json()
    assert body["events"][0] == {**first["events"][0], "duplicate": True}
    assert not body["events"][1]["duplicate"]


async def test_a_list_spanning_accounts_answers_in_input_order(client):
    events = [
        {"account": acct, "type": "t", "id": f"{acct}-{i}"}
        for i, acct in enumerate(["a", "b", "a", "c"])
    ]
    body = await (await client.post(PATH, json=events, headers=API)).json()
    assert [e["id"] for e in body["events"]] == ["a-0", "b-1", "a-2", "c-3"]


async def test_data_reaches_clients_unchanged(client):
    start = await (await client.get("/api/chats/check-updates/", headers=auth())).json()
    data = {"nested": {"list": [1, 2.5, None, True], "text": "olá 😊"}, "n": 12345678901234567}
    await client.post(PATH, json={"account": "acme", "type": "t", "data": data}, headers=API)
    answer = await (
        await client.get(
            "/api/chats/check-updates/", params={"last_check": start["timestamp"]}, headers=auth()
        )
    ).json()
    assert answer["updates"][0]["data"] == data


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"42",
        b'{"type": "t"}',
        b'{"account": "a}b", "type": "t"}',
        b'{"account": "acme"}',
        b'{"account": "acme", "type": ""}',
        b'{"account": "acme", "type": "t", "audience": "u1"}',
        b'{"account": "acme", "type": "t", "chat_id": {"x": 1}}',
        b'{"account": "acme", "type": "t", "surprise": 1}',
    ],
)
async def test_bad_events_get_400_json(client, body):
    response = await client.post(
        PATH, data=body, headers={**API, "Content-Type": "application/json"}
    )
    assert response.status == 400
    assert set(await response.json()) == {"error", "detail"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": f"Basic {API_KEY}"}],
)
async def test_publish_needs_a_valid_api_key(client, headers):
    response = await client.post(PATH, json={"account": "acme", "type": "t"}, headers=headers)
    assert response.status == 401


async def test_an_api_key_in_the_query_string_is_refused(client):
    response = await client.post(f"{PATH}?api_key={API_KEY}", json={"account": "acme", "type": "t"})
    assert response.status == 401


async def test_a_body_over_the_limit_is_a_413_json(make_settings, client_for):
    client = await client_for(make_settings(max_publish_bytes=2048))
    big = {"account": "acme", "type": "t", "data": "x" * 4096}
    response = await client.post(PATH, json=big, headers=API)
    assert response.status == 413
    assert (await response.json())["error"] == "body_too_large"
