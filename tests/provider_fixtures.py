"""Every payload under tests/fixtures/<provider>/ as the provider would deliver it:
the request path, the byte-exact body, the documented headers (from the folder's
signatures.json) and the sources they are addressed to, plus the ways to forge them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from multidict import MultiDict
from twilio.request_validator import RequestValidator

from relay.ingest.providers import standard_webhooks, whatsapp_cloud
from relay.settings import Source

FIXTURES = Path(__file__).parent / "fixtures"
ACCOUNT = "acme"
REGENERATE = os.environ.get("RELAY_REGENERATE_GOLDENS", "") == "1"
NOT_PAYLOADS = ("signatures.json", "verification_get.txt")


def _facts(provider: str) -> list[dict]:
    return json.loads((FIXTURES / provider / "signatures.json").read_text())["facts"]


def _fact(provider: str, key: str):
    return next(f[key] for f in _facts(provider) if key in f)


WHATSAPP_SECRET = _fact("whatsapp_cloud", "app_secret")
VERIFY_TOKEN = _fact("whatsapp_cloud", "verify_token")
TELEGRAM_SECRET = _fact("telegram", "secret_token")
TWILIO_TOKEN = _fact("twilio", "auth_token")
TWILIO_SHARED_KEY = _fact("twilio", "shared_key_secret")
STANDARD_SECRET = _fact("standard_webhooks", "secret")
# Evolution and Z-API sign nothing: relay's shared secret is the operator's own choice.
EVOLUTION_SECRET = "evolution-shared-secret-0001"
ZAPI_SECRET = "zapi-shared-secret-0001"
TWILIO_PUBLIC_URL = "https://relay.example.test/webhooks/acme-twilio"

SOURCES = {
    source.name: source
    for source in (
        Source(
            "acme-whatsapp",
            "whatsapp_cloud",
            ACCOUNT,
            {"secret": WHATSAPP_SECRET, "verify_token": VERIFY_TOKEN},
        ),
        Source("acme-telegram", "telegram", ACCOUNT, {"secret": TELEGRAM_SECRET}),
        Source(
            "acme-twilio",
            "twilio",
            ACCOUNT,
            {"secret": TWILIO_TOKEN, "shared_key": TWILIO_SHARED_KEY},
            {"public_url": TWILIO_PUBLIC_URL},
        ),
        Source("acme-evolution", "evolution", ACCOUNT, {"secret": EVOLUTION_SECRET}),
        Source("acme-zapi", "zapi", ACCOUNT, {"secret": ZAPI_SECRET}),
        Source("acme-events", "standard_webhooks", ACCOUNT, {"secret": STANDARD_SECRET}),
    )
}
SOURCE_OF = {source.provider: source.name for source in SOURCES.values()}


@dataclass(frozen=True)
class FixtureDelivery:
    provider: str
    name: str
    path: str  # what is requested: /webhooks/<source>[/sub][?query]
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    # Where the credential sits: a header name, or "query" for ?secret=.
    credential: str = ""
    body_signed: bool = False
    signed_at: float | None = None  # Standard Webhooks: the moment the signature is fresh

    @property
    def id(self) -> str:
        return f"{self.provider}/{self.name}"

    @property
    def golden(self) -> Path:
        return FIXTURES / self.provider / f"{Path(self.name).stem}.golden.json"


def _payloads(provider: str) -> list[Path]:
    return sorted(
        path
        for path in (FIXTURES / provider).iterdir()
        if path.name not in NOT_PAYLOADS
        and "test_vector" not in path.name
        and not path.name.endswith(".golden.json")
    )


def _whatsapp() -> list[FixtureDelivery]:
    headers = {f["file"]: f["header"] for f in _facts("whatsapp_cloud") if "file" in f}
    return [
        FixtureDelivery(
            "whatsapp_cloud",
            path.name,
            "/webhooks/acme-whatsapp",
            path.read_bytes(),
            {**headers[path.name], "Content-Type": "application/json"},
            credential="X-Hub-Signature-256",
            body_signed=True,
        )
        for path in _payloads("whatsapp_cloud")
    ]


def _telegram() -> list[FixtureDelivery]:
    return [
        FixtureDelivery(
            "telegram",
            path.name,
            "/webhooks/acme-telegram",
            path.read_bytes(),
            {
                "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET,
                "Content-Type": "application/json",
            },
            credential="X-Telegram-Bot-Api-Secret-Token",
        )
        for path in _payloads("telegram")
    ]


def _twilio() -> list[FixtureDelivery]:
    facts = {f["file"]: f for f in _facts("twilio") if "file" in f and "variant" not in f}
    deliveries = []
    for path in _payloads("twilio"):
        fact = facts[path.name]
        deliveries.append(
            FixtureDelivery(
                "twilio",
                path.name,
                urlsplit(fact["url"]).path,
                path.read_bytes(),
                {**fact["header"], "Content-Type": "application/x-www-form-urlencoded"},
                credential="X-Twilio-Signature",
                body_signed=True,
            )
        )
    return deliveries


def _shared_secret(provider: str, secret: str, in_query: bool) -> list[FixtureDelivery]:
    source = SOURCE_OF[provider]
    return [
        FixtureDelivery(
            provider,
            path.name,
            f"/webhooks/{source}?secret={secret}" if in_query else f"/webhooks/{source}",
            path.read_bytes(),
            {"Content-Type": "application/json"} | ({} if in_query else {"X-Relay-Secret": secret}),
            credential="query" if in_query else "X-Relay-Secret",
        )
        for path in _payloads(provider)
    ]


def _standard_webhooks() -> list[FixtureDelivery]:
    facts = {f["file"]: f["header"] for f in _facts("standard_webhooks") if "file" in f}
    return [
        FixtureDelivery(
            "standard_webhooks",
            path.name,
            "/webhooks/acme-events",
            path.read_bytes(),
            {**facts[path.name], "Content-Type": "application/json"},
            credential="webhook-signature",
            body_signed=True,
            signed_at=float(facts[path.name]["webhook-timestamp"]) + 30,
        )
        for path in _payloads("standard_webhooks")
    ]


DELIVERIES = [
    *_whatsapp(),
    *_telegram(),
    *_twilio(),
    # Evolution carries the secret in a header, Z-API in the URL: both ways are tested.
    *_shared_secret("evolution", EVOLUTION_SECRET, in_query=False),
    *_shared_secret("zapi", ZAPI_SECRET, in_query=True),
    *_standard_webhooks(),
]


def flip_one_byte(data: bytes) -> bytes:
    """One ASCII letter or digit, past the middle, changed to its neighbour."""
    order = list(range(len(data) // 2, len(data))) + list(range(len(data) // 2))
    for i in order:
        c = data[i]
        if chr(c).isascii() and chr(c).isalnum():
            changed = c - 1 if chr(c) in "zZ9" else c + 1
            return data[:i] + bytes([changed]) + data[i + 1 :]
    raise ValueError("nothing to flip")


def _resigned(delivery: FixtureDelivery, wrong: str) -> dict[str, str]:
    headers = dict(delivery.headers)
    if delivery.provider == "whatsapp_cloud":
        headers["X-Hub-Signature-256"] = whatsapp_cloud.sign(wrong, delivery.body)
    elif delivery.provider == "twilio":
        url = f"https://relay.example.test{delivery.path}"
        params = MultiDict(parse_qsl(delivery.body.decode(), keep_blank_values=True))
        headers["X-Twilio-Signature"] = RequestValidator(wrong).compute_signature(url, params)
    elif delivery.provider == "standard_webhooks":
        key = standard_webhooks.secret_keys("whsec_" + "d3JvbmctYnV0LXdlbGwtZm9ybWVkLWtleQ==")[0]
        signature = standard_webhooks.sign(
            key, headers["webhook-id"], headers["webhook-timestamp"], delivery.body
        )
        headers["webhook-signature"] = f"v1,{signature}"
    else:
        headers[delivery.credential] = wrong
    return headers


def forged(delivery: FixtureDelivery, case: str) -> FixtureDelivery:
    """The delivery as a forger would send it.

    `byte`: one byte of the body changed where a signature covers the body; for Telegram,
    Evolution and Z-API, which sign nothing, one byte of the presented secret instead (a
    changed body with the right secret is, by their design, indistinguishable).
    """
    if case == "byte":
        if delivery.body_signed:
            return replace(delivery, body=flip_one_byte(delivery.body))
        return _with_secret(delivery, flip_one_byte(_secret_of(delivery).encode()).decode())
    if case == "secret":
        if delivery.credential == "query" or not delivery.body_signed:
            return _with_secret(delivery, "not-the-secret-" + "x" * 12)
        return replace(delivery, headers=_resigned(delivery, "not-the-secret-0000000000"))
    if case == "missing":
        if delivery.credential == "query":
            return replace(delivery, path=delivery.path.split("?", 1)[0])
        headers = {k: v for k, v in delivery.headers.items() if k != delivery.credential}
        return replace(delivery, headers=headers)
    if case == "stale":  # the recorded timestamp, checked now: years old
        return replace(delivery, signed_at=None)
    raise ValueError(case)


def _secret_of(delivery: FixtureDelivery) -> str:
    if delivery.credential == "query":
        return delivery.path.split("?secret=", 1)[1]
    return delivery.headers[delivery.credential]


def _with_secret(delivery: FixtureDelivery, secret: str) -> FixtureDelivery:
    if delivery.credential == "query":
        return replace(delivery, path=delivery.path.split("?", 1)[0] + f"?secret={secret}")
    return replace(delivery, headers={**delivery.headers, delivery.credential: secret})
