"""check-updates as the old frontend calls it: formats, auth, tenancy, pages, errors."""

from __future__ import annotations

import time

import jwt
import pytest
from yarl import URL

from relay.auth import mint_token
from relay.cursor import format_cursor, parse_cursor
from tests.credentials import JWT_SECRET, auth, token
from tests.helpers import publish

PATH = "/api/chats/check-updates/"


async def poll(client, last_check=None, headers=None, **params) -> dict:
    if last_check is not None:
        params["last_check"] = last_check
    response = await client.get(PATH, params=params, headers=headers or auth())
    assert response.status == 200, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def test_first_poll_without_last_check_starts_from_now(client):
    await publish(client, {"account": "acme", "type": "message.created", "data": {}})
    answer = await poll(client)
    assert answer == {
        "timestamp": answer["timestamp"],
        "updates": [],
        "has_updates": False,
        "more": False,
        "reset": False,
    }
    assert format_cursor(parse_cursor(answer["timestamp"])) == answer["timestamp"]


@pytest.mark.parametrize("value", ["", "null", "undefined"])
async def test_what_old_clients_send_before_their_first_answer_means_from_now(client, value):
    answer = await poll(client, value)
    assert answer["updates"] == [] and not answer["reset"]


async def test_echoing_the_timestamp_returns_each_event_once(client):
    start = (await poll(client))["timestamp"]
    stored = await publish(
        client,
        {
            "account": "acme",
            "type": "message.created",
            "id": "m1",
            "chat_id": "c1",
            "data": {"text": "oi"},
        },
    )
    answer = await poll(client, start)
    assert answer["has_updates"] and not answer["reset"]
    assert answer["updates"] == [
        {
            "id": "m1",
            "type": "message.created",
            "timestamp": stored[0]["timestamp"],
            "account": "acme",
            "chat_id": "c1",
            "data": {"text": "oi"},
        }
    ]
    assert answer["timestamp"] == stored[0]["timestamp"]
    assert (await poll(client, answer["timestamp"]))["updates"] == []


def formats_of(ts: str) -> dict[str, str]:
    """The same instant in every format the old clients send (ts has +00:00)."""
    moment = ts.removesuffix("+00:00")
    return {
        "canonical": ts,
        "plus_as_space": f"{moment} 00:00",
        "zulu": f"{moment}Z",
        "naive": moment,
        "other_offset": _shift(ts, -3),
    }


def _shift(ts: str, hours: int) -> str:
    from datetime import datetime, timedelta, timezone

    moment = datetime.fromisoformat(ts).astimezone(timezone(timedelta(hours=hours)))
    return moment.isoformat(timespec="microseconds")


async def test_every_last_check_format_means_the_same_instant(client):
    start = (await poll(client))["timestamp"]
    first = await publish(client, {"account": "acme", "type": "t", "id": "a"})
    await publish(client, {"account": "acme", "type": "t", "id": "b"})
    for name, value in formats_of(first[0]["timestamp"]).items():
        answer = await poll(client, value)
        assert [u["id"] for u in answer["updates"]] == ["b"], name
    assert [u["id"] for u in (await poll(client, start))["updates"]] == ["a", "b"]


async def test_plus_decoded_as_space_in_last_check_is_accepted_verbatim(client):
    """The old frontend sends `+00:00` unencoded; the query decoder turns `+` into a space."""
    start = (await poll(client))["timestamp"]
    await publish(client, {"account": "acme", "type": "t", "id": "a"})
    raw = URL(f"{PATH}?last_check={start}", encoded=True)
    assert "+00:00" in str(raw)
    response = await client.get(raw, headers=auth())
    assert response.status == 200
    assert [u["id"] for u in (await response.json())["updates"]] == ["a"]
    literal = URL(f"{PATH}?last_check=2025-07-19T03:53:10.655739%2000:00", encoded=True)
    assert (await client.get(literal, headers=auth())).status == 200


async def test_fewer_digits_and_epoch_seconds_and_milliseconds(client):
    start = parse_cursor((await poll(client))["timestamp"])
    await publish(client, {"account": "acme", "type": "t", "id": "a"})
    seconds = start // 1_000_000  # truncating can only move the cursor earlier: still seen
    for value in (str(seconds), str(start // 1000), format_cursor(seconds * 1_000_000)[:21]):
        answer = await poll(client, value)
        assert [u["id"] for u in answer["updates"]] == ["a"], value


@pytest.mark.parametrize(
    "value",
    ["yesterday", "2025-13-45T00:00:00", "12:00", "2025-07-19T03:53:10+99:00", "1e9", "x" * 80],
)
async def test_garbage_last_check_is_a_400_with_a_json_reason(client, value):
    response = await client.get(PATH, params={"last_check": value}, headers=auth())
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "bad_last_check" and body["detail"]


async def test_limit_pages_with_more(client):
    start = (await poll(client))["timestamp"]
    await publish(client, *({"account": "acme", "type": "t", "id": f"m{i}"} for i in range(5)))
    seen, cursor, pages = [], start, 0
    while True:
        answer = await poll(client, cursor, limit=2)
        seen += [u["id"] for u in answer["updates"]]
        cursor, pages = answer["timestamp"], pages + 1
        if not answer["more"]:
            break
    assert seen == [f"m{i}" for i in range(5)] and pages == 3


@pytest.mark.parametrize("limit", ["0", "1001", "ten", "-1"])
async def test_bad_limit_is_a_400(client, limit):
    response = await client.get(PATH, params={"limit": limit}, headers=auth())
    assert response.status == 400 and (await response.json())["error"] == "bad_limit"


async def test_token_in_query_works_like_the_header(client):
    response = await client.get(PATH, params={"token": token()})
    assert response.status == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic abc"},
        {"Authorization": f"Bearer {mint_token(JWT_SECRET, 'acme', 'u', ttl_seconds=-60)}"},
        {"Authorization": f"Bearer {mint_token('another-secret-0123456789abcdef01', 'acme', 'u')}"},
        {"Authorization": "Bearer " + jwt.encode({"sub": "u", "account": "acme"}, JWT_SECRET)},
        {
            "Authorization": "Bearer "
            + jwt.encode(
                {"sub": "u", "account": "acme", "exp": int(time.time()) + 60},
                None,
                algorithm="none",
            )
        },
    ],
    ids=["missing", "garbage", "basic", "expired", "wrong-key", "no-exp", "alg-none"],
)
async def test_missing_invalid_or_expired_tokens_get_401_json(client, headers):
    response = await client.get(PATH, headers=headers)
    assert response.status == 401
    body = await response.json()
    assert set(body) == {"error", "detail"}


async def test_a_token_for_one_account_never_sees_another(client):
    start_a = (await poll(client, headers=auth("acme")))["timestamp"]
    start_b = (await poll(client, headers=auth("beta")))["timestamp"]
    await publish(
        client,
        {"account": "beta", "type": "t", "id": "secret-b"},
        {"account": "acme", "type": "t", "id": "for-a"},
    )
    seen_a = await poll(client, start_a, headers=auth("acme"))
    seen_b = await poll(client, start_b, headers=auth("beta"))
    assert [u["id"] for u in seen_a["updates"]] == ["for-a"]
    assert [u["id"] for u in seen_b["updates"]] == ["secret-b"]


async def test_chats_allowlist_and_audience_filter(client):
    start = (await poll(client))["timestamp"]
    await publish(
        client,
        {"account": "acme", "type": "t", "id": "c1-all", "chat_id": "c1"},
        {"account": "acme", "type": "t", "id": "c2-all", "chat_id": "c2"},
        {"account": "acme", "type": "t", "id": "c1-u1", "chat_id": "c1", "audience": ["u1"]},
        {"account": "acme", "type": "t", "id": "c1-u2", "chat_id": 1, "audience": ["u2"]},
        {"account": "acme", "type": "t", "id": "nochat"},
    )
    u1_c1 = await poll(client, start, headers=auth(user="u1", chats=["c1"]))
    assert [u["id"] for u in u1_c1["updates"]] == ["c1-all", "c1-u1"]
    u2_all = await poll(client, start, headers=auth(user="u2"))
    assert [u["id"] for u in u2_all["updates"]] == ["c1-all", "c2-all", "c1-u2", "nochat"]
    # audience is routing, not content: it is not sent to browsers.
    assert all("audience" not in u for u in u2_all["updates"])


async def test_trimmed_history_answers_reset(make_settings, client_for):
    from relay.store.base import Retention

    client = await client_for(make_settings(retention=Retention(max_events=2)))
    start = (await poll(client))["timestamp"]
    stored = await publish(
        client, *({"account": "acme", "type": "t", "id": f"m{i}"} for i in range(4))
    )
    old = await poll(client, start)
    assert old["reset"] and [u["id"] for u in old["updates"]] == ["m2", "m3"]
    assert not (await poll(client, stored[1]["timestamp"]))["reset"]
