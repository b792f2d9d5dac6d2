"""Standard Webhooks (and Svix, the same scheme under `svix-*` headers).

HMAC-SHA256 over `<id>.<timestamp>.<raw body>` with the base64 key after `whsec_`;
several signatures per header (rotation); 5-minute tolerance; `webhook-id` is the
idempotency key. Spec: standard-webhooks.md v1.0.0.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

from relay.events import Event
from relay.ingest.providers.common.base import (
    Delivery,
    Normalized,
    Provider,
    Rejected,
    Unprocessable,
    json_object,
)
from relay.rotated_keys import SPACE, matches_any, split_keys
from relay.settings import Source

name = "standard_webhooks"
TOLERANCE_SECONDS = 5 * 60


def secret_keys(secret: str) -> list[bytes]:
    """Every key of a source: several whitespace- or comma-separated secrets during rotation."""
    keys = []
    for item in split_keys(secret):
        encoded = item.removeprefix("whsec_")
        try:
            keys.append(base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True))
        except (binascii.Error, ValueError):
            raise ValueError("a Standard Webhooks secret must be whsec_<base64>") from None
    return keys


def sign(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(
        key, b"%s.%s.%s" % (msg_id.encode(), timestamp.encode(), body), hashlib.sha256
    )
    return base64.b64encode(digest.digest()).decode()


def _header(delivery: Delivery, suffix: str) -> str | None:
    return delivery.headers.get(f"webhook-{suffix}") or delivery.headers.get(f"svix-{suffix}")


def verify_head(delivery: Delivery, source: Source) -> bool:
    """The headers must be there and the timestamp fresh before the body is read; the
    signature covers the body, so it is checked once the body is all there."""
    _checked_headers(delivery)
    return False


def _checked_headers(delivery: Delivery) -> tuple[str, str, str]:
    msg_id, timestamp = _header(delivery, "id"), _header(delivery, "timestamp")
    signatures = _header(delivery, "signature")
    if not msg_id or not timestamp or not signatures:
        raise Rejected("webhook-id, webhook-timestamp and webhook-signature are required")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise Rejected("webhook-timestamp must be Unix seconds") from None
    if abs(delivery.received_at - sent_at) > TOLERANCE_SECONDS:
        raise Rejected("webhook-timestamp is outside the 5-minute tolerance", code="stale")
    return msg_id, timestamp, signatures


def verify(delivery: Delivery, source: Source) -> None:
    msg_id, timestamp, signatures = _checked_headers(delivery)
    given = [
        part.split(",", 1)[1].encode()
        for part in split_keys(signatures, SPACE)
        if part.startswith("v1,") and len(part) > 3
    ]
    expected = [
        sign(key, msg_id, timestamp, delivery.body).encode()
        for key in secret_keys(source.secrets["secret"])
    ]
    if not matches_any(given, expected):
        raise Rejected("no webhook-signature matches", code="bad_signature")


def normalize(delivery: Delivery, source: Source) -> Normalized:
    # One update per body: the body is the delivery's one item.
    return Normalized.whole(_events(delivery, source))


def _events(delivery: Delivery, source: Source) -> list[Event]:
    payload = json_object(delivery.body)
    event_type, data = payload.get("type"), payload.get("data")
    if not isinstance(event_type, str) or not 1 <= len(event_type) <= 64:
        raise Unprocessable("the payload has no type (a string of 1-64 characters)")
    if not isinstance(data, dict):
        raise Unprocessable("the payload's data must be an object")
    chat_id = data.get("chat_id")
    body: dict[str, Any] = {"source": source.name, "provider": name}
    if isinstance(data.get("message"), dict):
        body["message"] = data["message"]
    else:
        body["data"] = data
    msg_id = _header(delivery, "id")
    return [
        Event(
            id=f"{source.name}:{msg_id}",
            type=event_type,
            account=source.account,
            chat_id=None if chat_id is None else str(chat_id),
            body=body,
        )
    ]


def check_source(source: Source) -> list[str]:
    try:
        keys = secret_keys(source.secrets["secret"])
    except ValueError as error:
        return [f"secret_env: {error}"]
    return [] if keys else ["secret_env: the secret is empty"]


PROVIDER = Provider(
    name=name,
    required_secrets=("secret",),
    verify=verify,
    normalize=normalize,
    verify_head=verify_head,
    check_source=check_source,
)
