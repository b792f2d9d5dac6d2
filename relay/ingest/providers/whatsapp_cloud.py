"""WhatsApp Cloud API (Meta): `X-Hub-Signature-256` over the raw body, the GET
verification handshake, and every `entry[] x changes[] x messages|statuses|errors[]`.

Ids: a message (or reaction, edit, revoke: each has its own wamid) is
`whatsapp_cloud:<wamid>`; a status is `whatsapp_cloud:<wamid>:status:<status>`. Wamids are
global, so the same delivery reaching two apps subscribed to one WABA is stored once.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson

from relay.events import Event
from relay.ingest.providers.common import normal
from relay.ingest.providers.common.base import (
    Ack,
    Delivery,
    Items,
    Normalized,
    Provider,
    Rejected,
    Unprocessable,
    json_object,
)
from relay.ingest.providers.common.normal import as_dict, as_list, code_of, compact, text_of
from relay.rotated_keys import matches_any, split_keys
from relay.settings import Source

name = "whatsapp_cloud"
SIGNATURE_HEADER = "X-Hub-Signature-256"
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
STATUSES = {"sent": "sent", "delivered": "delivered", "read": "read", "played": "played"}


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_head(delivery: Delivery, source: Source) -> bool:
    """The signature must be there before the body is read; it covers the body."""
    _signature_header(delivery)
    return False


def _signature_header(delivery: Delivery) -> str:
    given = delivery.headers.get(SIGNATURE_HEADER, "")
    if not given.startswith("sha256="):
        raise Rejected(f"{SIGNATURE_HEADER} (sha256=<hex>) is required", code="missing_signature")
    return given


def verify(delivery: Delivery, source: Source) -> None:
    given = _signature_header(delivery)
    # Meta signs the bytes it sent (\u-escaped, \/): verify those, never a re-serialization.
    presented = given.strip().lower().encode("utf-8", "surrogateescape")
    expected = (
        sign(secret, delivery.body).encode() for secret in split_keys(source.secrets["secret"])
    )
    if not matches_any([presented], expected):
        raise Rejected(f"{SIGNATURE_HEADER} does not match the body", code="bad_signature")


def handshake(delivery: Delivery, source: Source) -> Ack:
    """`GET ?hub.mode=subscribe&hub.verify_token=...&hub.challenge=...` (PHP-style
    proxies turn the dots into underscores)."""
    query = delivery.query

    def param(key: str) -> str:
        return query.get(f"hub.{key}") or query.get(f"hub_{key}") or ""

    expected = source.secrets.get("verify_token", "").encode()
    token = param("verify_token").encode("utf-8", "surrogateescape")
    challenge = param("challenge")
    if (
        param("mode") != "subscribe"
        or not expected
        or not hmac.compare_digest(token, expected)
        or not challenge
        or len(challenge) > 256
    ):
        raise Rejected("the verify token does not match", code="bad_verify_token")
    return Ack(body=challenge.encode(), content_type="text/plain")


def ack(delivery: Delivery) -> Ack:
    # Meta retries anything "other than 200" for up to 7 days: exactly 200.
    return Ack(status=200)


def normalize(delivery: Delivery, source: Source) -> Normalized:
    payload = json_object(delivery.body)
    items = Items()
    if payload.get("object") != "whatsapp_business_account":
        return items.normalized()
    for e, entry in enumerate(as_list(payload.get("entry"))):
        for c, change in enumerate(as_list(as_dict(entry).get("changes"))):
            change = as_dict(change)
            value = as_dict(change.get("value"))
            place = f"/entry/{e}/changes/{c}/value"
            field = change.get("field")
            if field == "messages":
                _value_items(items, place, value, source)
            elif field == "smb_message_echoes":
                # Coexistence: what the business typed in the WhatsApp Business app.
                for i, message in enumerate(as_list(value.get("message_echoes"))):
                    at = f"{place}/message_echoes/{i}"
                    items.add(at, _message, as_dict(message), {}, source, True)
    return items.normalized()


def _value_items(items: Items, place: str, value: dict[str, Any], source: Source) -> None:
    people = _people(value)
    for i, message in enumerate(as_list(value.get("messages"))):
        items.add(f"{place}/messages/{i}", _message, as_dict(message), people, source)
    for i, status in enumerate(as_list(value.get("statuses"))):
        items.add(f"{place}/statuses/{i}", _status, as_dict(status), source)
    phone_number_id = text_of(as_dict(value.get("metadata")).get("phone_number_id"))
    for i, error in enumerate(as_list(value.get("errors"))):
        items.add(f"{place}/errors/{i}", _webhook_error, as_dict(error), phone_number_id, source)


def _people(value: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each contact of a change by every id it is known by: its phone number (`wa_id`,
    absent for a user who hides it behind a username), its business-scoped user id
    (`user_id`) and its parent id (`parent_user_id`, with parent BSUIDs enabled)."""
    people: dict[str, dict[str, Any]] = {}
    for contact in as_list(value.get("contacts")):
        contact = as_dict(contact)
        profile = as_dict(contact.get("profile"))
        person = {
            "name": text_of(profile.get("name")),
            "username": text_of(profile.get("username")),
            "user_id": text_of(contact.get("user_id")),
        }
        for key in ("wa_id", "user_id", "parent_user_id"):
            ident = text_of(contact.get(key))
            if ident:
                people.setdefault(ident, person)
    return people


def _sender(message: dict[str, Any]) -> str:
    """The user's phone number (`from`); for a user known by username only, the
    business-scoped user id (`from_user_id`), else the parent id (`from_parent_user_id`)."""
    for key in ("from", "from_user_id", "from_parent_user_id"):
        sender = text_of(message.get(key))
        if sender:
            return sender
    raise Unprocessable("a WhatsApp message has no from, from_user_id or from_parent_user_id")


def _recipient(message: dict[str, Any]) -> str | None:
    """Whom an echo was sent to, by the same rule as a sender."""
    keys = ("to", "to_user_id", "to_parent_user_id")
    return next((text_of(message.get(k)) for k in keys if text_of(message.get(k))), None)


def _message(
    message: dict[str, Any],
    people: dict[str, dict[str, Any]],
    source: Source,
    outbound: bool = False,
) -> Event:
    wamid = text_of(message.get("id"))
    if not wamid:
        raise Unprocessable("a WhatsApp message has no id")
    sender = _sender(message)
    chat_id = text_of(message.get("group_id")) or (_recipient(message) if outbound else sender)
    if not chat_id:
        raise Unprocessable("a WhatsApp message echo has no to, to_user_id or to_parent_user_id")
    event_id = f"{name}:{wamid}"
    known = people.get(sender, {})
    user_id = known.get("user_id") or text_of(message.get("from_user_id"))
    common = {
        "direction": "out" if outbound else "in",
        "from": normal.person(
            sender,
            known.get("name"),
            username=known.get("username"),
            user_id=user_id if user_id != sender else None,
        ),
        "sent_at": normal.iso_from_unix(message.get("timestamp")),
    }
    kind = message.get("type")
    if kind == "reaction":
        reaction = as_dict(message.get("reaction"))
        emoji = text_of(reaction.get("emoji")) or None  # "" or absent: the reaction was removed
        target = text_of(reaction.get("message_id")) or wamid
        body = {"emoji": emoji, "removed": emoji is None, "id": wamid}
        return normal.message_event(
            source,
            name,
            event_id,
            "message.reaction",
            chat_id,
            {"id": target, **common, "kind": "reaction", "reaction": body},
        )
    if kind == "edit":
        edit = as_dict(message.get("edit"))
        target = text_of(edit.get("original_message_id")) or wamid
        content = _content(as_dict(edit.get("message")))
        edited = {"id": target, **common, **content, "edited_at": common["sent_at"]}
        edited.pop("sent_at")
        return normal.message_event(source, name, event_id, "message.updated", chat_id, edited)
    if kind == "revoke":
        target = text_of(as_dict(message.get("revoke")).get("original_message_id")) or wamid
        deleted = {"id": target, **common, "deleted_at": common["sent_at"]}
        deleted.pop("sent_at")
        return normal.message_event(source, name, event_id, "message.deleted", chat_id, deleted)
    context = as_dict(message.get("context"))
    created = {
        "id": wamid,
        **common,
        **_content(message),
        "reply_to": text_of(context.get("id")),
        "forwarded": True if context.get("forwarded") else None,
    }
    return normal.message_event(source, name, event_id, "message.created", chat_id, created)


def _content(message: dict[str, Any]) -> dict[str, Any]:
    """kind, text and the kind's own reference for one message (or an edit's new content)."""
    kind = message.get("type")
    if kind == "text":
        return {"kind": "text", "text": text_of(as_dict(message.get("text")).get("body"))}
    if kind in MEDIA_TYPES:
        item = as_dict(message.get(kind))
        reference = normal.media(
            item.get("id"),
            item.get("url"),
            item.get("mime_type"),
            file_name=text_of(item.get("filename")),
        )
        return {"kind": kind, "text": text_of(item.get("caption")), "media": reference}
    if kind == "location":
        place = as_dict(message.get("location"))
        location = compact(
            {key: place.get(key) for key in ("latitude", "longitude", "name", "address", "url")}
        )
        return {"kind": "location", "text": text_of(place.get("name")), "location": location}
    if kind == "contacts":
        cards = [
            compact(
                {
                    "name": text_of(as_dict(as_dict(card).get("name")).get("formatted_name")),
                    "phones": [
                        text_of(as_dict(p).get("wa_id") or as_dict(p).get("phone"))
                        for p in as_list(as_dict(card).get("phones"))
                    ],
                }
            )
            for card in as_list(message.get("contacts"))
        ]
        return {"kind": "contacts", "contacts": cards}
    if kind in ("interactive", "button"):
        return _interactive(message, kind)
    return {"kind": "unknown", "text": _unknown_text(message)}


def _interactive(message: dict[str, Any], kind: str) -> dict[str, Any]:
    if kind == "button":  # a quick-reply button of a template
        button = as_dict(message.get("button"))
        title = text_of(button.get("text"))
        reply = {"type": "button", "id": text_of(button.get("payload")), "title": title}
        return {"kind": "interactive", "text": title, "interactive": compact(reply)}
    interactive = as_dict(message.get("interactive"))
    reply_type = text_of(interactive.get("type")) or "unknown"
    chosen = as_dict(interactive.get(reply_type))
    title = text_of(chosen.get("title")) or text_of(chosen.get("body"))
    reply = {
        "type": reply_type,
        "id": text_of(chosen.get("id")),
        "title": title,
        "description": text_of(chosen.get("description")),
        "response_json": text_of(chosen.get("response_json")),
    }
    return {"kind": "interactive", "text": title, "interactive": compact(reply)}


def _unknown_text(message: dict[str, Any]) -> str | None:
    system = as_dict(message.get("system"))
    if system:
        return text_of(system.get("body"))
    error = as_dict(next(iter(as_list(message.get("errors"))), None))
    return text_of(error.get("title")) or text_of(error.get("message"))


# Whom a status is about: the phone number, else (a user known by username, or a message
# sent to a business-scoped user id) the BSUID, else the parent BSUID. Meta's reference
# spells the last `recipient_parent_user_id`; `parent_recipient_user_id` is accepted too.
RECIPIENT_KEYS = (
    "recipient_id",
    "recipient_user_id",
    "recipient_parent_user_id",
    "parent_recipient_user_id",
)


def _status(status: dict[str, Any], source: Source) -> Event | None:
    wamid, value = text_of(status.get("id")), text_of(status.get("status"))
    if not wamid or not value:
        raise Unprocessable("a WhatsApp status has no id or no status")
    normalized = "failed" if value == "failed" else STATUSES.get(value)
    if normalized is None:
        return None  # e.g. the deprecated "deleted": nothing a client can show
    chat_id = next((text_of(status[k]) for k in RECIPIENT_KEYS if text_of(status.get(k))), None)
    if chat_id is None:
        raise Unprocessable("a WhatsApp status has no recipient_id or recipient_user_id")
    error = as_dict(next(iter(as_list(status.get("errors"))), None))
    detail = as_dict(error.get("error_data")).get("details") or error.get("message")
    return normal.status_event(
        source,
        name,
        f"{name}:{wamid}:status:{normalized}",
        chat_id,
        wamid,
        normalized,
        provider_status=value,
        status_at=normal.iso_from_unix(status.get("timestamp")),
        error={
            "code": code_of(error.get("code")),
            "title": text_of(error.get("title")),
            "detail": detail,
        }
        if error
        else None,
    )


def _webhook_error(error: dict[str, Any], phone_number_id: str | None, source: Source) -> Event:
    """An error about the whole number (not one message): the connection is not healthy."""
    digest = hashlib.sha256(orjson.dumps(error, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    detail = as_dict(error.get("error_data")).get("details") or error.get("message")
    connection = {
        "state": "error",
        "phone_number_id": phone_number_id,
        "error": compact(
            {
                "code": code_of(error.get("code")),
                "title": text_of(error.get("title")),
                "detail": detail,
            }
        ),
    }
    event_id = f"{name}:{phone_number_id}:error:{digest}"
    return normal.event(source, name, event_id, "connection.updated", None, connection=connection)


PROVIDER = Provider(
    name=name,
    required_secrets=("secret",),
    verify=verify,
    normalize=normalize,
    ack=ack,
    verify_head=verify_head,
    handshake=handshake,
)
