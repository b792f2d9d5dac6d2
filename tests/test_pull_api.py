"""`GET /api/events`: the main application pulls an account's whole stream with an API key,
by check-updates' cursor rules, never a 5xx whatever its parameters."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.app import create_app
from relay.appkeys import LIVE
from tests.credentials import API, auth
from tests.helpers import settings_for, until
from tests.race import run_race

ANY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
PARAMETERS = st.fixed_dictionaries(
    {},
    optional={
        "account": st.one_of(st.sampled_from(["acme", "other", "", "a}b", "x" * 200]), ANY_TEXT),
        "last_check": st.one_of(
            st.sampled_from(
                [
                    "",
                    "2025-07-19T03:54:04.574010+00:00",
                    "2025-07-19T03:54:04.574010 00:00",
                    "1752897244",
                    "1752897244574",
                    "9999-12-31T23:59:59Z",
                    "null",
                    "-1",
                ]
            ),
            ANY_TEXT,
        ),
        "limit": st.one_of(st.integers(-5, 5000).map(str), ANY_TEXT),
        "wait": st.one_of(st.sampled_from(["0", "0.01", "0.05", "-1", "nan", "inf"]), ANY_TEXT),
    },
)


async def test_pull_sees_every_chat_and_audience_of_its_account_only(client):
    events = [
        {"account": "acme", "type": "message.created", "id": "public", "chat_id": "c1"},
        {"account": "acme", "type": "chat.updated", "id": "private", "audience": ["agent-9"]},
        {"account": "other", "type": "message.created", "id": "elsewhere"},
    ]
    start = await (await client.get("/api/events", params={"account": "acme"}, headers=API)).json()
    assert start["updates"] == [] and not start["reset"]
    assert (await client.post("/api/publish", json=events, headers=API)).status == 201
    answer = await (
        await client.get(
            "/api/events", params={"account": "acme", "last_check": start["timestamp"]}, headers=API
        )
    ).json()
    assert [u["id"] for u in answer["updates"]] == ["public", "private"]
    assert set(answer) == {"timestamp", "updates", "has_updates", "more", "reset"}
    # A browser of the same account sees only what its token allows.
    browser = await (
        await client.get(
            "/api/chats/check-updates/",
            params={"last_check": start["timestamp"]},
            headers=auth("acme", "agent-1"),
        )
    ).json()
    assert [u["id"] for u in browser["updates"]] == ["public"]


async def test_a_browser_token_is_refused(client):
    response = await client.get("/api/events", params={"account": "acme"}, headers=auth())
    assert response.status == 401
    assert (await response.json())["error"] == "bad_api_key"
    response = await client.get("/api/events", params={"account": "acme"})
    assert response.status == 401


async def test_long_poll_answers_when_an_event_arrives(client):
    start = await (await client.get("/api/events", params={"account": "acme"}, headers=API)).json()
    params = {"account": "acme", "last_check": start["timestamp"], "wait": "10"}
    waiting = asyncio.create_task(client.get("/api/events", params=params, headers=API))
    await until(lambda: client.app[LIVE].waiters.total == 1)
    assert not waiting.done()
    event = {"account": "acme", "type": "message.created", "id": "late", "audience": ["x"]}
    assert (await client.post("/api/publish", json=event, headers=API)).status == 201
    answer = await (await asyncio.wait_for(waiting, 5)).json()
    assert [u["id"] for u in answer["updates"]] == ["late"]


async def test_any_parameters_are_answered_below_500_with_json(client):
    loop = asyncio.get_running_loop()

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(params=PARAMETERS)
    def check(params: dict[str, str]) -> None:
        async def ask() -> None:
            response = await client.get("/api/events", params=params, headers=API)
            assert response.status < 500, (params, await response.text())
            body = await response.json()
            if response.status == 200:
                assert {"timestamp", "updates", "reset"} <= set(body)
            else:
                assert {"error", "detail"} <= set(body)

        # hypothesis drives from a thread; each request runs on the app's own loop.
        asyncio.run_coroutine_threadsafe(ask(), loop).result(30)

    await asyncio.to_thread(check)


async def test_an_echoing_puller_sees_every_event_once_under_16_writers(
    engine, redis_url, aiohttp_server
):
    server = await aiohttp_server(create_app(settings_for(engine, redis_url)))
    url = str(server.make_url("")).rstrip("/")
    figures = await run_race([url], [url], account="pulled", pull=True)
    assert figures["events"] == 3200
