"""The WhatsApp Web (Baileys / WAProto) message shapes that Evolution API forwards:
`key`, `pushName`, `message.<type>Message`, `messageTimestamp`.

Not a provider itself (no name in the table): Evolution's module calls it.
"""

from __future__ import annotations

from typing import Any

from relay.events import Event
from relay.ingest.providers.common import normal
from relay.ingest.providers.common.base import Unprocessable
from relay.ingest.providers.common.normal import as_dict, as_list, compact, text_of
from relay.settings import Source

MEDIA = {
    "imageMessage": "image",
    "videoMessage": "video",
    "ptvMessage": "video",
    "audioMessage": "audio",
    "documentMessage": "document",
    "stickerMessage": "sticker",
}
# Containers whose `.message` holds the real content.
WRAPPERS = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
    "editedMessage",
)
REVOKE, MESSAGE_EDIT = (0, "REVOKE"), (14, "MESSAGE_EDIT")


def chat_of(key: dict[str, Any]) -> str | None:
    """One chat id per person: with Baileys 7, private chats may be `<n>@lid`, with the
    phone JID in `remoteJidAlt` (or `senderPn` in 2.2.x); prefer the phone JID."""
    remote = text_of(key.get("remoteJid"))
    if remote and remote.endswith("@lid"):
        return text_of(key.get("remoteJidAlt")) or text_of(key.get("senderPn")) or remote
    return remote


def _author(key: dict[str, Any]) -> str | None:
    participant = text_of(key.get("participant"))
    if participant and participant.endswith("@lid"):
        return text_of(key.get("participantAlt")) or participant
    return participant


def unwrap(message: dict[str, Any]) -> dict[str, Any]:
    for _ in range(4):  # wrappers nest (ephemeral view-once...), but never deeply
        inner = next((as_dict(message[w]).get("message") for w in WRAPPERS if w in message), None)
        if not isinstance(inner, dict):
            return message
        message = inner
    return message


def content(message: dict[str, Any], key_id: str | None) -> dict[str, Any]:
    if isinstance(message.get("conversation"), str):
        return {"kind": "text", "text": message["conversation"]}
    extended = as_dict(message.get("extendedTextMessage"))
    if extended:
        return {"kind": "text", "text": text_of(extended.get("text"))}
    for field, kind in MEDIA.items():
        item = as_dict(message.get(field))
        if item:
            # WhatsApp media is encrypted: fetch it from Evolution by the message id.
            reference = normal.media(
                key_id, None, item.get("mimetype"), file_name=text_of(item.get("fileName"))
            )
            return {"kind": kind, "text": text_of(item.get("caption")), "media": reference}
    place = as_dict(message.get("locationMessage")) or as_dict(message.get("liveLocationMessage"))
    if place:
        location = compact(
            {
                "latitude": place.get("degreesLatitude"),
                "longitude": place.get("degreesLongitude"),
                "name": text_of(place.get("name")),
                "address": text_of(place.get("address")),
            }
        )
        return {"kind": "location", "text": text_of(place.get("name")), "location": location}
    cards = [message["contactMessage"]] if isinstance(message.get("contactMessage"), dict) else []
    cards += as_list(as_dict(message.get("contactsArrayMessage")).get("contacts"))
    if cards:
        names = [compact({"name": text_of(as_dict(c).get("displayName"))}) for c in cards]
        return {"kind": "contacts", "contacts": names}
    return _interactive(message)


def _interactive(message: dict[str, Any]) -> dict[str, Any]:
    buttons = as_dict(message.get("buttonsResponseMessage"))
    template = as_dict(message.get("templateButtonReplyMessage"))
    listed = as_dict(message.get("listResponseMessage"))
    reply = None
    if buttons:
        reply = {
            "type": "button",
            "id": buttons.get("selectedButtonId"),
            "title": buttons.get("selectedDisplayText"),
        }
    elif template:
        reply = {
            "type": "button",
            "id": template.get("selectedId"),
            "title": template.get("selectedDisplayText"),
        }
    elif listed:
        row = as_dict(listed.get("singleSelectReply")).get("selectedRowId")
        reply = {"type": "list_reply", "id": row, "title": listed.get("title")}
    if reply is None:
        return {"kind": "unknown"}
    reply = {key: text_of(value) for key, value in reply.items()}
    return {"kind": "interactive", "text": reply["title"], "interactive": compact(reply)}


def message_events(
    data: dict[str, Any], provider: str, prefix: str, owner: str | None, source: Source
) -> list[Event]:
    """`messages.upsert` / `send.message`: one message, or a reaction, edit or revoke."""
    key = as_dict(data.get("key"))
    key_id = text_of(key.get("id"))
    chat_id = chat_of(key)
    if not key_id or not chat_id:
        raise Unprocessable("a message has no key.id or key.remoteJid")
    outbound = bool(key.get("fromMe"))
    if outbound:
        sender = normal.person(owner)  # pushName is a placeholder ("Você") for our own sends
    else:
        sender = normal.person(_author(key) or chat_id, data.get("pushName"))
    message = unwrap(as_dict(data.get("message")))
    common = {
        "direction": "out" if outbound else "in",
        "from": sender,
        "sent_at": normal.iso_from_unix(data.get("messageTimestamp")),
    }
    event_id = f"{prefix}:{key_id}"
    reaction = as_dict(message.get("reactionMessage"))
    if reaction:
        emoji = text_of(reaction.get("text")) or None
        target = text_of(as_dict(reaction.get("key")).get("id")) or key_id
        body = {
            "id": target,
            **common,
            "kind": "reaction",
            "reaction": {"emoji": emoji, "removed": emoji is None, "id": key_id},
        }
        return [normal.message_event(source, provider, event_id, "message.reaction", chat_id, body)]
    protocol = as_dict(message.get("protocolMessage"))
    if protocol:
        target = text_of(as_dict(protocol.get("key")).get("id")) or key_id
        if protocol.get("type") in REVOKE:
            body = {"id": target, **common}
            event_type = "message.deleted"
        elif protocol.get("type") in MESSAGE_EDIT or protocol.get("editedMessage"):
            edited = unwrap(as_dict(protocol.get("editedMessage")))
            body = {"id": target, **common, **content(edited, target)}
            body["edited_at"] = body.pop("sent_at")
            event_type = "message.updated"
        else:
            return []  # history sync, ephemeral settings...: nothing to show
        return [normal.message_event(source, provider, event_id, event_type, chat_id, body)]
    context = as_dict(as_dict(message.get("extendedTextMessage")).get("contextInfo")) or as_dict(
        data.get("contextInfo")
    )
    body = {
        "id": key_id,
        **common,
        **content(message, key_id),
        "reply_to": text_of(context.get("stanzaId")),
    }
    return [normal.message_event(source, provider, event_id, "message.created", chat_id, body)]
