"""RELAY_CORS_ORIGINS over HTTP: listed origins may call the browser routes, with a cached
preflight and no credentials; unlisted origins and server routes get no CORS header."""

from __future__ import annotations

import pytest

from relay.settings import ConfigError, Settings
from tests.credentials import API, auth
from tests.helpers import settings_for

INBOX = "https://inbox.example.test"
OTHER = "https://evil.example.test"
BROWSER_PATHS = [
    "/api/chats/check-updates/",
    "/api/chats/check-updates",
    "/api/chats/realtime-updates/",
    "/api/chats/realtime-updates",
]
SERVER_ROUTES = [
    ("POST", "/api/publish"),
    ("POST", "/webhooks/acme-whatsapp"),
    ("GET", "/api/admin/dead-letters"),
    ("POST", "/api/admin/dead-letters/x/replay"),
    ("GET", "/metrics"),
]


def preflight(origin: str, method: str = "GET") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
    }


def cors_headers(response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control")}


@pytest.fixture
async def cors_client(client_for):
    return await client_for(settings_for("memory", cors_origins=(INBOX,)))


@pytest.mark.parametrize("path", BROWSER_PATHS)
async def test_listed_origin_preflight_allows_authorization_and_content_type(cors_client, path):
    response = await cors_client.options(path, headers=preflight(INBOX))
    assert response.status == 200
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == INBOX
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"authorization", "content-type"}
    assert headers["Access-Control-Allow-Methods"] == "GET"
    assert headers["Access-Control-Max-Age"] == "3600"
    assert "Access-Control-Allow-Credentials" not in headers
    assert "Origin" in headers["Vary"]


async def test_listed_origin_poll_answer_is_readable_by_the_page(cors_client):
    response = await cors_client.get(
        "/api/chats/check-updates/", headers={**auth(), "Origin": INBOX}
    )
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == INBOX
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]
    assert "Origin" in response.headers["Vary"]


async def test_listed_origin_sees_the_401_body_so_it_can_refresh_its_token(cors_client):
    response = await cors_client.get("/api/chats/check-updates/", headers={"Origin": INBOX})
    assert response.status == 401
    assert response.headers["Access-Control-Allow-Origin"] == INBOX


async def test_listed_origin_event_stream_carries_the_cors_header(cors_client):
    response = await cors_client.get(
        "/api/chats/realtime-updates/", headers={**auth(), "Origin": INBOX}
    )
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == INBOX
    response.close()


@pytest.mark.parametrize("path", BROWSER_PATHS[:1] + BROWSER_PATHS[2:3])
async def test_unlisted_origin_gets_no_cors_header(cors_client, path):
    refused = await cors_client.options(path, headers=preflight(OTHER))
    assert refused.status == 403
    assert (await refused.json())["error"] == "forbidden"
    assert cors_headers(refused) == {}
    answer = await cors_client.get("/api/chats/check-updates/", headers={**auth(), "Origin": OTHER})
    assert answer.status == 200 and cors_headers(answer) == {}


async def test_a_header_the_browser_routes_do_not_take_is_refused_in_preflight(cors_client):
    headers = {**preflight(INBOX), "Access-Control-Request-Headers": "authorization,x-custom"}
    response = await cors_client.options("/api/chats/check-updates/", headers=headers)
    assert response.status == 403 and cors_headers(response) == {}


@pytest.mark.parametrize(("method", "path"), SERVER_ROUTES)
async def test_server_routes_never_answer_a_browser(cors_client, method, path):
    preflighted = await cors_client.options(path, headers=preflight(INBOX, method))
    assert preflighted.status in (404, 405) and cors_headers(preflighted) == {}
    direct = await cors_client.request(method, path, headers={**API, "Origin": INBOX})
    assert cors_headers(direct) == {}


async def test_any_origin_with_star_still_never_allows_credentials(client_for):
    client = await client_for(settings_for("memory", cors_origins=("*",)))
    response = await client.options("/api/chats/check-updates/", headers=preflight(OTHER))
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == OTHER
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Origin" in response.headers["Vary"]


async def test_without_the_variable_no_route_answers_a_preflight(client_for):
    client = await client_for(settings_for("memory"))
    response = await client.options("/api/chats/check-updates/", headers=preflight(INBOX))
    assert response.status == 405 and cors_headers(response) == {}
    answer = await client.get("/api/chats/check-updates/", headers={**auth(), "Origin": INBOX})
    assert cors_headers(answer) == {} and "Vary" not in answer.headers


def test_origins_are_parsed_from_a_comma_separated_list():
    settings = Settings.from_env(
        {"RELAY_CORS_ORIGINS": " https://Inbox.example.test , http://localhost:3000,,"}
    )
    assert settings.cors_origins == ("https://inbox.example.test", "http://localhost:3000")
    assert Settings.from_env({"RELAY_CORS_ORIGINS": "*"}).cors_origins == ("*",)
    assert Settings.from_env({}).cors_origins == ()


@pytest.mark.parametrize(
    "value",
    [
        "https://inbox.example.test/",
        "inbox.example.test",
        "https://x.test/app",
        "ftp://x.test",
        "https://x.test:http",
        "https://user@x.test",
    ],
)
def test_a_value_that_is_not_an_origin_is_a_config_error(value):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"RELAY_CORS_ORIGINS": value})
    assert raised.value.problems[0].startswith("RELAY_CORS_ORIGINS: ")
