"""Evolution API (v1.8 and 2.x, Baileys): no body signature exists, so a source is
authenticated by the `jwt_key` Bearer JWT (HS256, v2.3+) when it has `jwt_key_env`,
otherwise by the shared secret (`X-Relay-Secret` header or `?secret=`).

Ids: `evolution:<instance>:<key.id>` for a message (`messages.upsert` and `send.message`
of the same message collapse), `...:<key.id>:status:<status>`, `...:<key.id>:deleted`, and
`evolution:<instance>:connection:<state>:<date_time>` (stable across Evolution's retries).
`date_time` is the server's local time marked Z: it is used as an id, never as a time.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import jwt
import orjson

from relay.events import Event
from relay.ingest.providers.common import baileys, normal
from relay.ingest.providers.common.base import (
    Delivery,
    Items,
    Normalized,
    Provider,
    Rejected,
    Unprocessable,
    json_object,
)
from relay.ingest.providers.common.normal import as_dict, text_of
from relay.ingest.providers.common.shared_secret import check_shared_secret
from relay.settings import Source

name = "evolution"
JWT_LEEWAY_SECONDS = 30
# Baileys' WAMessageStatus, as strings (2.x) or numbers (older builds).
STATUSES = {
    "PENDING": "queued",
    "SERVER_ACK": "sent",
    "DELIVERY_ACK": "delivered",
    "READ": "read",
    "PLAYED": "played",
    "ERROR": "failed",
    0: "failed",
    1: "queued",
    2: "sent",
    3: "delivered",
    4: "read",
    5: "played",
}


def verify(delivery: Delivery, source: Source) -> None:
    key = source.secrets.get("jwt_key")
    if key is None:
        check_shared_secret(delivery, source)
        return
    scheme, _, token = delivery.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Rejected("Authorization: Bearer <jwt_key JWT> is required", code="missing_token")
    try:
        jwt.decode(
            token.strip(),
            key,
            algorithms=["HS256"],
            leeway=JWT_LEEWAY_SECONDS,
            options={"require": ["exp", "iat"]},
        )
    except jwt.ExpiredSignatureError:
        raise Rejected("the webhook JWT has expired", code="token_expired") from None
    except jwt.PyJWTError:
        raise Rejected("the webhook JWT is not valid for this source", code="bad_token") from None


def verify_head(delivery: Delivery, source: Source) -> bool:
    """The JWT or the shared secret is a header (or the query): checked before the body."""
    verify(delivery, source)
    return True


# `"apikey": "<value>"` anywhere in the raw JSON, whatever else the body holds.
_APIKEY = re.compile(rb'("apikey"\s*:\s*)"(?:[^"\\]|\\.)*"')


def redact_body(body: bytes) -> bytes:
    """The envelope's `apikey` is the instance's credential: never keep it. A pattern, not
    a parse, so a body that is not valid JSON (why it is a dead letter) is redacted too."""
    return _APIKEY.sub(rb'\1"[redacted]"', body)


def normalize(delivery: Delivery, source: Source) -> Normalized:
    payload = json_object(delivery.body)
    # v2 sends `messages.upsert`; some setups send the env-style MESSAGES_UPSERT.
    kind = (text_of(payload.get("event")) or "").lower().replace("_", ".")
    instance = text_of(payload.get("instance")) or source.name
    owner = text_of(payload.get("sender"))
    data = payload.get("data")
    # `data` is one object, or a list of them (a batch of acks): each is an item.
    placed = (
        [(f"/data/{i}", as_dict(item)) for i, item in enumerate(data)]
        if isinstance(data, list)
        else [("/data", as_dict(data))]
    )
    items = Items()
    for place, item in placed:
        if kind in ("messages.upsert", "send.message"):
            prefix = f"{name}:{instance}"
            items.add(place, baileys.message_events, item, name, prefix, owner, source)
        elif kind == "messages.update":
            items.add(place, _update, item, instance, source)
        elif kind == "messages.delete":
            items.add(place, _delete, item, instance, source)
        elif kind == "connection.update":
            items.add(place, _connection, item, payload, instance, source)
    return items.normalized()


def _update(update: dict[str, Any], instance: str, source: Source) -> list[Event]:
    """An ack: v1 `{id, remoteJid, status, datetime}`, 2.x `{keyId, remoteJid, status}`."""
    key_id = text_of(update.get("keyId")) or text_of(update.get("id"))
    raw = update.get("status")
    if not key_id:
        raise Unprocessable("a messages.update has no keyId")
    chat_id = baileys.chat_of(update)
    if raw == "DELETED":
        body = {"id": key_id, "direction": "out" if update.get("fromMe") else "in"}
        event_id = f"{name}:{instance}:{key_id}:deleted"
        return [normal.message_event(source, name, event_id, "message.deleted", chat_id, body)]
    known = isinstance(raw, str | int) and not isinstance(raw, bool)
    status = STATUSES.get(raw) if known else None
    if status is None:
        return []  # an edit or another change relay does not show
    return [
        normal.status_event(
            source,
            name,
            f"{name}:{instance}:{key_id}:status:{status}",
            chat_id,
            key_id,
            status,
            provider_status=str(raw),
            status_at=normal.iso_from_unix(update.get("datetime"), milliseconds=True),
            direction="out" if update.get("fromMe", True) else "in",
        )
    ]


def _delete(key: dict[str, Any], instance: str, source: Source) -> Event:
    key = as_dict(key.get("key")) or key
    key_id = text_of(key.get("id"))
    if not key_id:
        raise Unprocessable("a messages.delete has no id")
    body = {"id": key_id, "direction": "out" if key.get("fromMe") else "in"}
    event_id = f"{name}:{instance}:{key_id}:deleted"
    chat_id = baileys.chat_of(key)
    return normal.message_event(source, name, event_id, "message.deleted", chat_id, body)


def _connection(
    data: dict[str, Any], payload: dict[str, Any], instance: str, source: Source
) -> Event:
    state = text_of(data.get("state")) or "unknown"
    occurrence = (
        text_of(payload.get("date_time"))
        or hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    )
    connection = {
        "state": state,
        "reason": data.get("statusReason"),
        "instance": instance,
        "phone": text_of(data.get("wuid")),
        "name": text_of(data.get("profileName")),
    }
    event_id = f"{name}:{instance}:connection:{state}:{occurrence}"
    return normal.event(
        source, name, event_id, "connection.updated", None, connection=normal.compact(connection)
    )


def check_source(source: Source) -> list[str]:
    if "jwt_key" in source.secrets or source.secrets.get("secret", "").strip():
        return []
    return ["secret_env or jwt_key_env is required: Evolution API signs nothing"]


PROVIDER = Provider(
    name=name,
    required_secrets=(),  # secret or jwt_key: see check_source
    verify=verify,
    normalize=normalize,
    verify_head=verify_head,
    check_source=check_source,
    redact_body=redact_body,
)
