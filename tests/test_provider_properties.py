"""Authentic deliveries with arbitrary content (any JSON, provider-shaped JSON with
arbitrary values, form fields, raw bytes) never give a 5xx: they are stored, ignored or
dead-lettered, and acknowledged. Against `relay serve` processes on both engines."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from relay.ingest.providers import standard_webhooks
from tests.credentials import API_KEY, JWT_SECRET, auth
from tests.provider_fixtures import (
    EVOLUTION_SECRET,
    STANDARD_SECRET,
    TELEGRAM_SECRET,
    TWILIO_PUBLIC_URL,
    TWILIO_TOKEN,
    WHATSAPP_SECRET,
    ZAPI_SECRET,
)
from tests.provider_strategies import (
    APIKEY_IN_BODIES,
    bodies,
    evolution,
    form_keys,
    standard,
    telegram,
    twilio_fixture_params,
    whatsapp,
    zapi,
)
from tests.servers import RelayProcess

CONFIG = f"""
[sources.wa]
provider = "whatsapp_cloud"
account = "props"
secret_env = "P_WA"

[sources.tg]
provider = "telegram"
account = "props"
secret_env = "P_TG"

[sources.sms]
provider = "twilio"
account = "props"
secret_env = "P_TW"
public_url = "{TWILIO_PUBLIC_URL}"

[sources.evo]
provider = "evolution"
account = "props"
secret_env = "P_EVO"

[sources.z]
provider = "zapi"
account = "props"
secret_env = "P_Z"

[sources.sw]
provider = "standard_webhooks"
account = "props"
secret_env = "P_SW"
"""
SECRETS = {
    "P_WA": WHATSAPP_SECRET,
    "P_TG": TELEGRAM_SECRET,
    "P_TW": TWILIO_TOKEN,
    "P_EVO": EVOLUTION_SECRET,
    "P_Z": ZAPI_SECRET,
    "P_SW": STANDARD_SECRET,
}
EXAMPLES = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module", params=["memory", "redis"])
def relay(request):
    config = Path(tempfile.mkdtemp(prefix="relay-props-")) / "relay.toml"
    config.write_text(CONFIG)
    env = {
        "RELAY_JWT_SECRET": JWT_SECRET,
        "RELAY_API_KEYS": API_KEY,
        "RELAY_CONFIG": str(config),
        **SECRETS,
    }
    if request.param == "redis":
        env["RELAY_REDIS_URL"] = request.getfixturevalue("redis_server").url
    process = RelayProcess(env).start()
    start = _get(process, "/api/chats/check-updates/")["timestamp"]
    yield process
    # Whatever the properties stored is a valid update event.
    schema = Draft202012Validator(_get(process, "/schemas/update-event.json"))
    stored = 0
    while True:
        page = _get(process, f"/api/chats/check-updates/?limit=1000&last_check={quote(start)}")
        for update in page["updates"]:
            schema.validate(update)
        stored += len(page["updates"])
        start = page["timestamp"]
        if not page["more"]:
            break
    process.stop()
    assert stored > 0
    log = process.log()
    assert "request.failed" not in log, "an unexpected exception reached the edge"
    assert APIKEY_IN_BODIES not in log, "Evolution's apikey must never be logged"


def _get(relay: RelayProcess, path: str) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=10)
    connection.request("GET", path, headers=auth("props"))
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 200, body
    return body


def post(relay: RelayProcess, path: str, body: bytes, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=10)
    connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


# --- one property per provider --------------------------------------------------------


@EXAMPLES
@given(body=bodies(whatsapp, "whatsapp_cloud"))
def test_whatsapp_cloud_never_5xx(relay, body):
    signature = "sha256=" + hmac.new(WHATSAPP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert post(relay, "/webhooks/wa", body, {"X-Hub-Signature-256": signature}) == 200


@EXAMPLES
@given(body=bodies(telegram, "telegram"))
def test_telegram_never_5xx(relay, body):
    headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    assert post(relay, "/webhooks/tg", body, headers) == 200


@EXAMPLES
@given(
    params=twilio_fixture_params()
    | st.lists(st.tuples(form_keys | st.text(min_size=1, max_size=8), st.text(max_size=20))),
    status_path=st.booleans(),
)
def test_twilio_never_5xx(relay, params, status_path):
    path = "/webhooks/sms/status" if status_path else "/webhooks/sms"
    url = TWILIO_PUBLIC_URL + ("/status" if status_path else "")
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, MultiDict(params))
    headers = {
        "X-Twilio-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    assert post(relay, path, urlencode(params).encode(), headers) == 200


@EXAMPLES
@given(body=bodies(evolution, "evolution"))
def test_evolution_never_5xx(relay, body):
    assert post(relay, "/webhooks/evo", body, {"X-Relay-Secret": EVOLUTION_SECRET}) == 200


@EXAMPLES
@given(body=bodies(zapi, "zapi"))
def test_zapi_never_5xx(relay, body):
    assert post(relay, f"/webhooks/z?secret={ZAPI_SECRET}", body, {}) == 200


@EXAMPLES
@given(
    body=bodies(standard, "standard_webhooks"),
    msg_id=st.from_regex(r"[A-Za-z0-9_.-]{1,24}", fullmatch=True),
)
def test_standard_webhooks_never_5xx(relay, body, msg_id):
    timestamp = str(int(time.time()))
    key = standard_webhooks.secret_keys(STANDARD_SECRET)[0]
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + standard_webhooks.sign(key, msg_id, timestamp, body),
    }
    assert post(relay, "/webhooks/sw", body, headers) == 200
