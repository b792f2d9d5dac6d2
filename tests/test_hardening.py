"""Hostile and faulty input: auth hardening, abuse limits, slow clients, and appends whose
outcome is unknown. Each test fails if its protection is removed."""

from __future__ import annotations

import hmac
import json
import socket
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from relay import rotated_keys
from relay.events import Event
from relay.settings import LiveSettings
from relay.store.redis import RedisStore
from tests.credentials import API, API_KEY, JWT_SECRET, auth, token
from tests.helpers import publish, settings_for
from tests.proxy_tcp import DroppingProxy
from tests.servers import RelayProcess

POLL = "/api/chats/check-updates/"


def rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def claims(**extra) -> dict:
    now = int(time.time())
    return {"sub": "u1", "account": "acme", "exp": now + 600, **extra}


@pytest.fixture(scope="module")
def rsa_keys():
    return rsa_pair()


async def test_rs256_accepts_its_tokens_and_refuses_hs256_signed_with_the_public_key(
    client_for, rsa_keys
):
    private, public = rsa_keys
    client = await client_for(settings_for("memory", jwt_secret=None, jwt_public_key=public))
    good = jwt.encode(claims(), private, algorithm="RS256")
    assert (await client.get(POLL, headers={"Authorization": f"Bearer {good}"})).status == 200
    # Key confusion: the public key (which is public) used as an HMAC secret.
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT"}').decode()
    payload = jwt.utils.base64url_encode(json.dumps(claims()).encode()).decode()
    signing_input = f"{header}.{payload}".encode()
    mac = hmac.new(public.encode(), signing_input, "sha256").digest()
    confused = f"{header}.{payload}.{jwt.utils.base64url_encode(mac).decode()}"
    response = await client.get(POLL, headers={"Authorization": f"Bearer {confused}"})
    assert response.status == 401


@pytest.mark.parametrize(
    ("extra", "settings"),
    [
        ({"nbf": int(time.time()) + 600}, {}),
        ({"aud": "someone-else"}, {"jwt_audience": "relay"}),
        ({}, {"jwt_audience": "relay"}),
        ({"iss": "evil"}, {"jwt_issuer": "https://app.example"}),
        ({"account": "a}b"}, {}),
        ({"chats": "c1"}, {}),
    ],
    ids=[
        "not-yet-valid",
        "wrong-audience",
        "missing-audience",
        "wrong-issuer",
        "bad-account",
        "chats-not-a-list",
    ],
)
async def test_tokens_with_bad_claims_get_401(client_for, extra, settings):
    client = await client_for(settings_for("memory", **settings))
    bad = jwt.encode(claims(**extra), JWT_SECRET, algorithm="HS256")
    response = await client.get(POLL, headers={"Authorization": f"Bearer {bad}"})
    assert response.status == 401
    assert JWT_SECRET not in await response.text()


async def test_configured_audience_and_issuer_are_accepted(client_for):
    client = await client_for(
        settings_for("memory", jwt_audience="relay", jwt_issuer="https://app.example")
    )
    good = jwt.encode(claims(aud="relay", iss="https://app.example"), JWT_SECRET, "HS256")
    assert (await client.get(POLL, headers={"Authorization": f"Bearer {good}"})).status == 200


async def test_jwt_rotation_accepts_old_and_new_secret(client_for):
    new, old = "new-secret-0123456789abcdef0123456789ab", JWT_SECRET
    client = await client_for(settings_for("memory", jwt_secret=f"{new} {old}"))
    for secret in (new, old):
        signed = jwt.encode(claims(), secret, "HS256")
        assert (await client.get(POLL, headers={"Authorization": f"Bearer {signed}"})).status == 200
    retired = jwt.encode(claims(), "retired-secret-0123456789abcdef012345", "HS256")
    assert (await client.get(POLL, headers={"Authorization": f"Bearer {retired}"})).status == 401


async def test_api_key_rotation_accepts_each_listed_key(client_for):
    client = await client_for(settings_for("memory", api_keys=("key-new-0123456789", API_KEY)))
    for key in ("key-new-0123456789", API_KEY):
        response = await client.post(
            "/api/publish",
            json={"account": "acme", "type": "t"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status == 201


async def test_api_keys_are_compared_in_constant_time(client, monkeypatch):
    calls = []
    original = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(rotated_keys.hmac, "compare_digest", spy)
    response = await client.post(
        "/api/publish",
        json={"account": "acme", "type": "t"},
        headers={"Authorization": "Bearer not-the-key"},
    )
    assert response.status == 401 and calls


async def test_a_token_for_account_a_cannot_publish_or_read_b(client):
    # A browser JWT is not an API key.
    response = await client.post(
        "/api/publish", json={"account": "beta", "type": "t"}, headers=auth("acme")
    )
    assert response.status == 401
    start = (await (await client.get(POLL, headers=auth("acme"))).json())["timestamp"]
    await publish(client, {"account": "beta", "type": "t", "id": "secret-b"})
    # Nor read: the token's account is the only one a browser route reads, whatever the
    # query says, and the server-to-server read wants an API key.
    seen = await client.get(
        POLL, params={"last_check": start, "account": "beta"}, headers=auth("acme")
    )
    assert seen.status == 200 and (await seen.json())["updates"] == []
    pulled = await client.get("/api/events", params={"account": "beta"}, headers=auth("acme"))
    assert pulled.status == 401


async def test_poll_rate_limit_answers_429_with_retry_after(client_for):
    client = await client_for(settings_for("memory", poll_rate=1.0, poll_burst=3.0))
    statuses = [(await client.get(POLL, headers=auth())).status for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and statuses[3] == 429
    refused = await client.get(POLL, headers=auth())
    assert refused.headers["Retry-After"] == "1"
    assert (await refused.json())["error"] == "rate_limited"
    # Another user has its own bucket.
    assert (await client.get(POLL, headers=auth(user="other"))).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert 'relay_limit_refusals_total{limit="poll_rate"}' in metrics


async def test_webhook_rate_limit_per_source(client_for):
    from relay.ingest.providers import standard_webhooks
    from relay.settings import Source

    secret = "whsec_cmVsYXktdGVzdC1zZWNyZXQtbm90LWZvci1wcm9kISE="
    source = Source("s1", "standard_webhooks", "acme", {"secret": secret})
    client = await client_for(
        settings_for("memory", webhook_rate=1.0, webhook_burst=2.0, sources={"s1": source})
    )

    def signed(n: int) -> dict[str, str]:
        stamp = str(int(time.time()))
        key = standard_webhooks.secret_keys(secret)[0]
        signature = standard_webhooks.sign(key, f"msg_{n}", stamp, b"{}")
        return {
            "webhook-id": f"msg_{n}",
            "webhook-timestamp": stamp,
            "webhook-signature": f"v1,{signature}",
        }

    # Unsigned requests are refused without spending the source's budget...
    unsigned = [(await client.post("/webhooks/s1", data=b"{}")).status for _ in range(3)]
    assert unsigned == [401, 401, 401]
    # ...which authentic deliveries spend, and then find empty.
    statuses = [
        (await client.post("/webhooks/s1", data=b"{}", headers=signed(n))).status for n in range(3)
    ]
    assert statuses == [200, 200, 429]


async def test_publish_body_limit_is_per_route(client_for):
    client = await client_for(settings_for("memory", max_publish_bytes=2048))
    big = {"account": "acme", "type": "t", "data": "x" * 4096}
    response = await client.post("/api/publish", json=big, headers=API)
    assert response.status == 413 and (await response.json())["error"] == "body_too_large"


def _slow_send(port: int, chunks: list[bytes], pause: float) -> tuple[bytes, float]:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            for chunk in chunks:
                sock.sendall(chunk)
                time.sleep(pause)
            return sock.recv(65536), time.monotonic() - started
        except OSError:
            return b"", time.monotonic() - started


@pytest.fixture(scope="module")
def strict_relay():
    relay = RelayProcess(
        {
            "RELAY_JWT_SECRET": JWT_SECRET,
            "RELAY_API_KEYS": API_KEY,
            "RELAY_CONFIG": "",
            "RELAY_KEEPALIVE_TIMEOUT": "1s",
            "RELAY_BODY_TIMEOUT": "1s",
        }
    ).start()
    yield relay
    relay.stop()


def test_slowloris_headers_are_cut_off(strict_relay):
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40
    chunks = [request[i : i + 2] for i in range(0, len(request), 2)]
    reply, elapsed = _slow_send(strict_relay.port, chunks, 0.1)
    # The header never completed: the connection is closed around the 1 s timeout, not
    # held for the 2+ s the client would take.
    assert reply == b"" and elapsed < 2.5


def test_a_slow_body_gets_408(strict_relay):
    head = (
        b"POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + API_KEY.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
    )
    reply, _ = _slow_send(strict_relay.port, [head, b'{"account":', b'"acme"'], 0.8)
    assert b" 408 " in reply.split(b"\r\n", 1)[0]
    assert b'"request_timeout"' in reply


def test_oversized_headers_are_refused(strict_relay):
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    reply, _ = _slow_send(strict_relay.port, [head], 0)
    assert reply.split(b"\r\n", 1)[0].split(b" ")[1] in (b"400", b"431")


async def test_an_append_whose_reply_was_lost_is_stored_once_on_retry(redis_server):
    redis_server.client().flushall()
    proxy = await DroppingProxy(redis_server.port).start()
    store = RedisStore.from_url(f"redis://127.0.0.1:{proxy.port}/0", timeout=2.0)
    try:
        start = (await store.read("acme", None, 10)).cursor
        proxy.drop_next_script_reply = True
        # redis-py re-runs the script on the new connection: the event id makes it a no-op.
        (outcome,) = await store.append("acme", [Event(id="once", type="t", account="acme")])
        assert proxy.dropped == 1
        page = await store.read("acme", start, 10)
        assert [e.timestamp for e in page.events] == [outcome.timestamp]
        # And a caller that retries by itself after a 503 gets the same answer.
        (again,) = await store.append("acme", [Event(id="once", type="t", account="acme")])
        assert again.duplicate and again.timestamp == outcome.timestamp
    finally:
        await store.close()
        await proxy.close()


async def test_tokens_are_checked_before_anything_is_read(client):
    response = await client.get(POLL, params={"last_check": "garbage"})
    assert response.status == 401  # no token: nothing about the input is revealed


async def test_error_bodies_never_echo_secrets(client_for):
    client = await client_for(settings_for("memory"))
    for headers in ({"Authorization": f"Bearer {API_KEY}x"}, auth(), {"Authorization": "Bearer x"}):
        for method, path in (("POST", "/api/publish"), ("GET", "/api/admin/dead-letters")):
            text = await (await client.request(method, path, headers=headers, data=b"{")).text()
            assert API_KEY not in text and JWT_SECRET not in text and token() not in text


async def test_limit_refusals_are_counted(client_for):
    client = await client_for(
        settings_for(
            "memory",
            max_publish_bytes=2048,
            live=LiveSettings(max_streams_per_user=1),
        )
    )
    big = {"account": "acme", "type": "t", "data": "x" * 4096}
    assert (await client.post("/api/publish", json=big, headers=API)).status == 413
    first = await client.get("/api/chats/realtime-updates/", params={"token": token()})
    second = await client.get("/api/chats/realtime-updates/", params={"token": token()})
    assert first.status == 200 and second.status == 429
    first.close()
    metrics = await (await client.get("/metrics")).text()
    assert 'relay_limit_refusals_total{limit="body_size"} 1.0' in metrics
    assert 'relay_limit_refusals_total{limit="streams_per_user"} 1.0' in metrics
