"""Z-API: documents no webhook authentication, so a source shares a secret with it
(`X-Relay-Secret` header or `?secret=` in each URL registered with update-webhook-*).

Ids: `zapi:<instanceId>:<messageId>` for a message, `...:<messageId>:status:<status>` for a
status (one MessageStatusCallback carries several ids), `...:<messageId>:edit:<momment>`
for an edit, `zapi:<instanceId>:connection:<state>:<momment>`. `momment` is epoch ms.
"""

from __future__ import annotations

from typing import Any

from relay.events import Event
from relay.ingest.providers.common import normal
from relay.ingest.providers.common.base import (
    Delivery,
    Normalized,
    Provider,
    Unprocessable,
    json_object,
)
from relay.ingest.providers.common.normal import as_dict, as_list, compact, text_of
from relay.ingest.providers.common.shared_secret import check_shared_secret
from relay.settings import Source

name = "zapi"
STATUSES = {"SENT": "sent", "RECEIVED": "delivered", "READ": "read", "PLAYED": "played"}
# field -> (kind, url field)
MEDIA = {
    "image": ("image", "imageUrl"),
    "audio": ("audio", "audioUrl"),
    "video": ("video", "videoUrl"),
    "document": ("document", "documentUrl"),
    "sticker": ("sticker", "stickerUrl"),
}


def verify_head(delivery: Delivery, source: Source) -> bool:
    """The shared secret is a header or the query: checked before the body is read."""
    check_shared_secret(delivery, source)
    return True


def normalize(delivery: Delivery, source: Source) -> Normalized:
    # One update per body: the body is the delivery's one item.
    return Normalized.whole(_events(delivery, source))


def _events(delivery: Delivery, source: Source) -> list[Event]:
    payload = json_object(delivery.body)
    kind = payload.get("type")
    instance = text_of(payload.get("instanceId")) or source.name
    prefix = f"{name}:{instance}"
    if kind == "ReceivedCallback":
        return _received(payload, prefix, source)
    if kind == "MessageStatusCallback":
        return _statuses(payload, prefix, source)
    if kind == "DeliveryCallback":
        return _delivery(payload, prefix, source)
    if kind in ("DisconnectedCallback", "ConnectedCallback"):
        return [_connection(payload, kind, instance, prefix, source)]
    return []  # PresenceChatCallback and anything newer: nothing to show


def _momment(payload: dict[str, Any]) -> Any:
    # Z-API spells it `momment`; a few of its documented examples say `moment`.
    return payload.get("momment", payload.get("moment"))


def _message_id(payload: dict[str, Any]) -> str:
    message_id = text_of(payload.get("messageId"))
    if not message_id:
        raise Unprocessable("the callback has no messageId")
    return message_id


def _received(payload: dict[str, Any], prefix: str, source: Source) -> list[Event]:
    if payload.get("notification"):
        return []  # group membership notices and the like, not messages
    message_id = _message_id(payload)
    chat_id = text_of(payload.get("phone"))
    outbound = bool(payload.get("fromMe"))
    if outbound:
        sender = normal.person(payload.get("connectedPhone"), payload.get("senderName"))
    else:
        author = payload.get("participantPhone") if payload.get("isGroup") else chat_id
        sender = normal.person(author, payload.get("senderName"))
    common = {
        "direction": "out" if outbound else "in",
        "from": sender,
        "sent_at": normal.iso_from_unix(_momment(payload), milliseconds=True),
    }
    reaction = as_dict(payload.get("reaction"))
    if reaction:
        emoji = text_of(reaction.get("value")) or None
        target = text_of(as_dict(reaction.get("referencedMessage")).get("messageId"))
        body: dict[str, Any] = {
            "id": target or message_id,
            **common,
            "kind": "reaction",
            "reaction": {"emoji": emoji, "removed": emoji is None, "id": message_id},
        }
        event_id = f"{prefix}:{message_id}"
        return [normal.message_event(source, name, event_id, "message.reaction", chat_id, body)]
    body = {
        "id": message_id,
        **common,
        **_content(payload),
        "reply_to": text_of(payload.get("referenceMessageId")),
        "forwarded": True if payload.get("forwarded") else None,
    }
    if payload.get("isEdit"):
        body["edited_at"] = body.pop("sent_at")
        event_id = f"{prefix}:{message_id}:edit:{text_of(_momment(payload))}"
        return [normal.message_event(source, name, event_id, "message.updated", chat_id, body)]
    event_id = f"{prefix}:{message_id}"
    return [normal.message_event(source, name, event_id, "message.created", chat_id, body)]


def _content(payload: dict[str, Any]) -> dict[str, Any]:
    text = as_dict(payload.get("text"))
    if text:
        return {"kind": "text", "text": text_of(text.get("message"))}
    for field, (kind, url_field) in MEDIA.items():
        item = as_dict(payload.get(field))
        if item:
            # Z-API hosts a copy that expires after 30 days: a reference, never fetched.
            reference = normal.media(
                None,
                item.get(url_field),
                item.get("mimeType"),
                file_name=text_of(item.get("fileName")),
            )
            return {"kind": kind, "text": text_of(item.get("caption")), "media": reference}
    place = as_dict(payload.get("location"))
    if place:
        location = compact(
            {key: place.get(key) for key in ("latitude", "longitude", "name", "address", "url")}
        )
        return {"kind": "location", "text": text_of(place.get("name")), "location": location}
    contact = as_dict(payload.get("contact"))
    if contact:
        phones = [text_of(phone) for phone in as_list(contact.get("phones"))]
        card = compact({"name": text_of(contact.get("displayName")), "phones": phones or None})
        return {"kind": "contacts", "contacts": [card]}
    buttons = as_dict(payload.get("buttonsResponseMessage"))
    listed = as_dict(payload.get("listResponseMessage"))
    if buttons or listed:
        reply = compact(
            {
                "type": "button" if buttons else "list_reply",
                "id": text_of(buttons.get("buttonId") or listed.get("selectedRowId")),
                "title": text_of(buttons.get("message") or listed.get("title")),
            }
        )
        return {"kind": "interactive", "text": reply.get("title"), "interactive": reply}
    return {"kind": "unknown"}


def _statuses(payload: dict[str, Any], prefix: str, source: Source) -> list[Event]:
    raw = text_of(payload.get("status")) or ""
    status = STATUSES.get(raw.upper())
    if status is None:
        return []  # READ_BY_ME (the business read an inbound message) and unknown values
    ids = payload.get("ids")
    ids = ids if isinstance(ids, list) else [payload.get("messageId")]
    status_at = normal.iso_from_unix(_momment(payload), milliseconds=True)
    return [
        normal.status_event(
            source,
            name,
            f"{prefix}:{message_id}:status:{status}",
            payload.get("phone"),
            message_id,
            status,
            provider_status=raw,
            status_at=status_at,
        )
        for message_id in (text_of(i) for i in ids)
        if message_id
    ]


def _delivery(payload: dict[str, Any], prefix: str, source: Source) -> list[Event]:
    """A message sent through the API left the instance (or failed to)."""
    message_id = _message_id(payload)
    error = text_of(payload.get("error"))
    status = "failed" if error else "sent"
    return [
        normal.status_event(
            source,
            name,
            f"{prefix}:{message_id}:status:{status}",
            payload.get("phone"),
            message_id,
            status,
            provider_status="DeliveryCallback",
            status_at=normal.iso_from_unix(_momment(payload), milliseconds=True),
            error={"title": error} if error else None,
            provider_ids=compact({"zaap_id": text_of(payload.get("zaapId"))}) or None,
        )
    ]


def _connection(
    payload: dict[str, Any], kind: str, instance: str, prefix: str, source: Source
) -> Event:
    state = "open" if kind == "ConnectedCallback" else "close"
    momment = text_of(_momment(payload)) or "unknown"
    connection = compact(
        {
            "state": state,
            "reason": text_of(payload.get("error")),
            "instance": instance,
            "phone": text_of(payload.get("phone")),
            "at": normal.iso_from_unix(_momment(payload), milliseconds=True),
        }
    )
    event_id = f"{prefix}:connection:{state}:{momment}"
    return normal.event(source, name, event_id, "connection.updated", None, connection=connection)


PROVIDER = Provider(
    name=name,
    required_secrets=("secret",),
    verify=check_shared_secret,
    normalize=normalize,
    verify_head=verify_head,
)
