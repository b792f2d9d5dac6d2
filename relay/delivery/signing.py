"""Standard Webhooks signatures (https://www.standardwebhooks.com): the receiver checks
`webhook-signature` with its `whsec_` key, as `standardwebhooks.Webhook.verify` does."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence


def signature(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per key, space-separated: a
    receiver that knows any one of the keys accepts the request while keys rotate."""
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for key in keys
    )


def webhook_headers(
    keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(keys, msg_id, timestamp, body),
    }
