"""Tokens, API keys, signatures and secrets never reach a log line (the old service
logged `?token=...`)."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import time
import urllib.error
import urllib.request

import orjson
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from relay.http import REQUEST_ID, logs_request_id
from relay.ingest.providers import standard_webhooks, whatsapp_cloud
from relay.logs import Redactor, configure_logging, get_logger
from tests.credentials import API_KEY, JWT_SECRET, token
from tests.servers import RelayProcess

SOURCE_SECRET = "whsec_bG9nLXRlc3Qtc2VjcmV0LW5vdC1mb3ItcHJvZCEh"
WHATSAPP_SECRET = "log-test-whatsapp-app-secret"
# Authentic, but its one message has no id: dead-lettered, which logs two webhook.* lines.
NO_ID = orjson.dumps(
    {
        "object": "whatsapp_business_account",
        "entry": [{"changes": [{"field": "messages", "value": {"messages": [{"from": "1"}]}}]}],
    }
)


def test_the_redactor_scrubs_keys_values_and_patterns():
    redactor = Redactor(["s3cr3t-value"])
    event = redactor(
        None,
        "info",
        {
            "event": "x",
            "authorization": "Bearer abc",
            "query": "last_check=1&token=eyJhbGc.abc.def&x=1",
            "note": "key is s3cr3t-value here",
            "headers": {"X-Hub-Signature-256": "sha256=00", "Accept": "a"},
            "url": "redis://user:hunter2@host:6379",
            "text": "Authorization: Bearer eyJ.payload.sig",
        },
    )
    rendered = json.dumps(event)
    for secret in ("abc", "eyJhbGc", "s3cr3t-value", "sha256=00", "hunter2", "eyJ.payload"):
        assert secret not in rendered
    assert event["headers"]["Accept"] == "a"


def test_configured_logging_redacts_before_rendering():
    stream = io.StringIO()
    configure_logging("info", "json", ["known-secret-123"], stream=stream)
    get_logger().info("probe", token="abc.def.ghi", detail="has known-secret-123 inside")
    line = stream.getvalue()
    assert "abc.def.ghi" not in line and "known-secret-123" not in line
    assert json.loads(line)["event"] == "probe"


@pytest.fixture
def relay_with_source(tmp_path):
    config = tmp_path / "relay.toml"
    config.write_text(
        '[sources.acme-events]\nprovider = "standard_webhooks"\naccount = "acme"\n'
        'secret_env = "ACME_EVENTS_SECRET"\n'
        '[sources.acme-whatsapp]\nprovider = "whatsapp_cloud"\naccount = "acme"\n'
        'secret_env = "ACME_WHATSAPP_SECRET"\n'
    )
    relay = RelayProcess(
        {
            "RELAY_JWT_SECRET": JWT_SECRET,
            "RELAY_API_KEYS": API_KEY,
            "RELAY_CONFIG": str(config),
            "RELAY_LOG_LEVEL": "debug",
            "ACME_EVENTS_SECRET": SOURCE_SECRET,
            "ACME_WHATSAPP_SECRET": WHATSAPP_SECRET,
        }
    ).start()
    yield relay
    relay.stop()


def _request(url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_tokens_and_secrets_never_appear_in_captured_logs(relay_with_source):
    relay = relay_with_source
    good, expired = token(), token(ttl=-60)
    base = f"{relay.url}/api/chats/check-updates/"
    assert _request(f"{base}?token={good}") == 200
    assert _request(base, {"Authorization": f"Bearer {good}"}) == 200
    assert _request(f"{base}?token={expired}") == 401
    assert _request(f"{base}?token={good}&last_check=garbage") == 400
    assert _request(f"{relay.url}/api/publish?api_key={API_KEY}", data=b"{}") == 401
    assert (
        _request(
            f"{relay.url}/api/publish",
            {"Authorization": f"Bearer {API_KEY}"},
            b'{"account":"acme","type":"t"}',
        )
        == 201
    )
    body = b'{"type":"t","data":{}}'
    key = standard_webhooks.secret_keys(SOURCE_SECRET)[0]
    stamp = str(int(time.time()))
    signature = standard_webhooks.sign(key, "msg_log", stamp, body)
    bad = {"webhook-id": "msg_log", "webhook-timestamp": stamp, "webhook-signature": "v1,AAAA"}
    assert _request(f"{relay.url}/webhooks/acme-events", bad, body) == 401
    good_headers = {**bad, "webhook-signature": f"v1,{signature}"}
    assert _request(f"{relay.url}/webhooks/acme-events", good_headers, body) == 200
    relay.stop()
    log = relay.log()
    assert "request.refused" in log  # the failures above were logged...
    for secret in (good, expired, API_KEY, JWT_SECRET, SOURCE_SECRET, signature):
        assert secret not in log  # ...and nothing secret with them


def test_a_webhooks_log_lines_carry_the_request_id_it_answers_and_no_other(relay_with_source):
    relay = relay_with_source
    # One keep-alive connection, so a leak from one request into the next would show.
    connection = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=5)
    answered = []
    signed = {"X-Hub-Signature-256": whatsapp_cloud.sign(WHATSAPP_SECRET, NO_ID)}
    for given in ({}, {"X-Request-ID": "trace-b.1"}):
        connection.request("POST", "/webhooks/acme-whatsapp", NO_ID, {**signed, **given})
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        answered.append(response.headers["X-Request-ID"])
        connection.request("GET", "/api/chats/check-updates/", headers={"X-Request-ID": "poll"})
        poll = connection.getresponse()
        poll.read()
        assert poll.status == 401
    connection.close()
    relay.stop()

    generated, traced = answered
    assert traced == "trace-b.1" and generated != traced
    lines = [json.loads(line) for line in relay.log().splitlines() if line.startswith("{")]
    webhook = [line for line in lines if line["event"].startswith("webhook.")]
    assert [(line["event"], line.get("request_id")) for line in webhook] == [
        ("webhook.item_unreadable", generated),
        ("webhook.dead_lettered", generated),
        ("webhook.item_unreadable", traced),
        ("webhook.dead_lettered", traced),
    ]
    refused = [line for line in lines if line["event"] == "request.refused"]
    assert [line["request_id"] for line in refused] == ["poll", "poll"]
    # Lines of no request (start, stop) carry none.
    others = [line for line in lines if line not in webhook and line not in refused]
    assert others and not [line for line in others if "request_id" in line]


async def test_the_request_id_is_unbound_when_the_handler_returns_or_raises():
    seen = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(structlog.contextvars.get_contextvars())
        if request.method == "DELETE":
            raise RuntimeError("a bug")
        return web.Response()

    for method in ("POST", "DELETE"):
        request = make_mocked_request(method, "/api/admin/x")
        request[REQUEST_ID] = f"id-{method}"
        with contextlib.suppress(RuntimeError):
            await logs_request_id(handler)(request)
        assert "request_id" not in structlog.contextvars.get_contextvars()
    assert seen == [{"request_id": "id-POST"}, {"request_id": "id-DELETE"}]


def test_each_key_of_a_rotating_source_secret_is_scrubbed_alone(tmp_path):
    """A source secret that rotates holds two keys; a line may carry either one alone."""
    from relay.settings import Settings

    config = tmp_path / "relay.toml"
    config.write_text(
        '[sources.acme-events]\nprovider = "standard_webhooks"\naccount = "acme"\n'
        'secret_env = "ACME_EVENTS_SECRET"\n'
    )
    new, old = "whsec_bmV3LWtleS1uZXcta2V5LW5ldy1rZXk=", "whsec_b2xkLWtleS1vbGQta2V5LW9sZC1rZXk="
    settings = Settings.from_env(
        {
            "RELAY_JWT_SECRET": JWT_SECRET,
            "RELAY_CONFIG": str(config),
            "ACME_EVENTS_SECRET": f"{new},{old}",
        }
    )
    stream = io.StringIO()
    configure_logging("info", "json", settings.secret_values(), stream=stream)
    get_logger().info("probe", detail=f"old key {old} and new key {new}")
    assert old not in stream.getvalue() and new not in stream.getvalue()
