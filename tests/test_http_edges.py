"""The HTTP edge: JSON errors everywhere, health and readiness, metrics, OpenAPI, and
503 + Retry-After (never an ack) while the store is down."""

from __future__ import annotations

import http.client
import json
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.app import create_app
from tests.credentials import API, API_KEY, JWT_SECRET, auth, token
from tests.helpers import settings_for
from tests.servers import RedisServer, RelayProcess


async def test_unknown_routes_and_methods_answer_json(client):
    for method, path, status in [("GET", "/nope", 404), ("DELETE", "/api/publish", 405)]:
        response = await client.request(method, path)
        assert response.status == status
        assert set(await response.json()) == {"error", "detail"}


async def test_health_readiness_and_openapi(client):
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["status"] == "ready"
    document = await (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    for path in (
        "/api/chats/check-updates/",
        "/api/publish",
        "/webhooks/{source}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ):
        assert path in document["paths"]


async def test_metrics_count_polls_and_requests_without_tokens(client):
    await client.get("/api/chats/check-updates/", headers=auth())
    await client.post(
        "/api/publish", json={"account": "acme", "type": "message.created"}, headers=API
    )
    text = await (await client.get("/metrics")).text()
    assert 'relay_polls_total{mode="poll",outcome="empty"} 1.0' in text
    assert 'relay_events_appended_total{type="message.created"} 1.0' in text
    assert 'route="/api/chats/check-updates/"' in text
    assert token() not in text and API_KEY not in text


@pytest.fixture
def lone_redis():
    server = RedisServer().start()
    yield server
    server.stop()


async def test_store_outage_answers_503_with_retry_after_and_recovers(lone_redis, aiohttp_client):
    client = await aiohttp_client(
        create_app(settings_for("redis", lone_redis.url, redis_timeout=0.5))
    )
    assert (await client.get("/readyz")).status == 200
    lone_redis.stop()
    for method, path, kwargs in [
        ("GET", "/api/chats/check-updates/", {"headers": auth()}),
        ("POST", "/api/publish", {"headers": API, "json": {"account": "acme", "type": "t"}}),
        ("GET", "/readyz", {}),
    ]:
        response = await client.request(method, path, **kwargs)
        assert response.status == 503, path
        assert response.headers["Retry-After"]
        assert (await response.json())["error"] == "store_unavailable"
    lone_redis.start()
    assert (await client.get("/readyz")).status == 200
    published = await client.post(
        "/api/publish", json={"account": "acme", "type": "t"}, headers=API
    )
    assert published.status == 201


@pytest.fixture(scope="module")
def memory_relay():
    relay = RelayProcess(
        {"RELAY_JWT_SECRET": JWT_SECRET, "RELAY_API_KEYS": API_KEY, "RELAY_CONFIG": ""}
    ).start()
    yield relay
    relay.stop()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=80))
def test_any_last_check_gets_200_or_400_never_5xx(memory_relay, text):
    connection = http.client.HTTPConnection("127.0.0.1", memory_relay.port, timeout=10)
    query = urllib.parse.urlencode({"last_check": text})
    connection.request(
        "GET", f"/api/chats/check-updates/?{query}", headers={"Authorization": f"Bearer {token()}"}
    )
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status in (200, 400), body
    if response.status == 400:
        assert body["error"] == "bad_last_check"


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=300))
def test_raw_unencoded_query_bytes_never_give_5xx(memory_relay, raw):
    safe = bytes(b for b in raw if 0x21 <= b < 0x7F and b not in b"#").decode()
    connection = http.client.HTTPConnection("127.0.0.1", memory_relay.port, timeout=10)
    connection.request("GET", f"/api/chats/check-updates/?last_check={safe}&token={token()}")
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status < 500


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=80))
def test_any_last_event_id_gets_200_or_400_never_5xx(memory_relay, text):
    header = "".join(c for c in text if c.isprintable() and c not in "\r\n").encode(
        "latin-1", "ignore"
    )
    connection = http.client.HTTPConnection("127.0.0.1", memory_relay.port, timeout=10)
    connection.putrequest("GET", f"/api/chats/realtime-updates/?token={token()}")
    connection.putheader("Last-Event-ID", header)
    connection.endheaders()
    response = connection.getresponse()  # the status line and headers: SSE never ends
    status = response.status
    connection.close()
    assert status in (200, 400), status
