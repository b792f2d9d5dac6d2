"""What the bench sends: tokens, realistic events, signed Standard Webhooks deliveries, and
the temporary relay.toml that configures the webhook source."""

from __future__ import annotations

import base64
import json
import secrets
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from relay.auth import mint_token
from relay.ingest.providers.standard_webhooks import secret_keys, sign

JWT_SECRET = "bench-jwt-secret-" + secrets.token_hex(16)
API_KEY = "bench-api-key-" + secrets.token_hex(16)
WEBHOOK_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
WEBHOOK_SOURCE = "bench-wh"
WEBHOOK_SECRET_ENV = "BENCH_WEBHOOK_SECRET"


def relay_env(redis_url: str | None) -> dict[str, str]:
    config = Path(tempfile.mkdtemp(prefix="bench-config-")) / "relay.toml"
    config.write_text(
        f'[sources.{WEBHOOK_SOURCE}]\nprovider = "standard_webhooks"\n'
        f'account = "bench-wh"\nsecret_env = "{WEBHOOK_SECRET_ENV}"\n'
    )
    env = {
        "RELAY_JWT_SECRET": JWT_SECRET,
        "RELAY_API_KEYS": API_KEY,
        "RELAY_CONFIG": str(config),
        WEBHOOK_SECRET_ENV: WEBHOOK_SECRET,
        "RELAY_LOG_LEVEL": "info",
        # The bench opens thousands of streams from a handful of users' worth of tokens.
        "RELAY_MAX_SSE_STREAMS": "20000",
        "RELAY_MAX_WAITERS": "20000",
        # One user and one source at tens of thousands of requests a second: lift the
        # per-user and per-source rates out of the way, but keep the buckets (and their
        # cost) on the path by making them huge rather than off.
        "RELAY_POLL_RATE": "1000000000",
        "RELAY_POLL_BURST": "1000000000",
        "RELAY_WEBHOOK_RATE": "1000000000",
        "RELAY_WEBHOOK_BURST": "1000000000",
    }
    if redis_url:
        env["RELAY_REDIS_URL"] = redis_url
    return env


def token(account: str, user: str = "agent-1") -> str:
    return mint_token(JWT_SECRET, account, user, None, 4 * 3600)


def message(account: str, n: int, sent_ns: int | None = None) -> dict:
    """A publish body shaped like an inbound WhatsApp text (about 300 bytes stored)."""
    data: dict = {
        "message": {
            "id": f"wamid.HBgNNTUxMTk5OTk5OTk5OTkVAgASGBQzQUI{n:08d}",
            "direction": "in",
            "from": {"id": "5511999999999", "name": "Maria Souza"},
            "kind": "text",
            "text": "Olá! Gostaria de saber o status do meu pedido, por favor.",
        }
    }
    if sent_ns is not None:
        data["sent_ns"] = sent_ns
    return {"account": account, "type": "message.created", "chat_id": "5511999999999", "data": data}


def http_json(method: str, url: str, body: object = None, headers: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def current_cursor(base_url: str, account: str) -> str:
    """A first poll (no last_check): the account's cursor now."""
    answer = http_json(
        "GET",
        f"{base_url}/api/chats/check-updates/",
        headers={"Authorization": f"Bearer {token(account)}"},
    )
    return answer["timestamp"]


def publish(base_url: str, events: list[dict]) -> dict:
    return http_json(
        "POST", f"{base_url}/api/publish", events, {"Authorization": f"Bearer {API_KEY}"}
    )


def poll_url(base_url: str, cursor: str, extra: str = "") -> str:
    return f"{base_url}/api/chats/check-updates/?last_check={urllib.parse.quote(cursor)}{extra}"


def signed_webhooks(count: int) -> list[tuple[dict[str, str], bytes]]:
    """`count` distinct Standard Webhooks deliveries, each with its own id and signature."""
    key = secret_keys(WEBHOOK_SECRET)[0]
    now = str(int(time.time()))
    run = secrets.token_hex(4)
    rows = []
    for n in range(count):
        msg_id = f"msg_{run}_{n}"
        body = json.dumps(
            {
                "type": "message.created",
                "timestamp": "2026-11-27T16:36:54Z",
                "data": {
                    "chat_id": "5511999999999",
                    "message": message("bench-wh", n)["data"]["message"],
                },
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": now,
            "webhook-signature": f"v1,{sign(key, msg_id, now, body)}",
        }
        rows.append((headers, body))
    return rows
