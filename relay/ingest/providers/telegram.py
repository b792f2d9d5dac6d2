"""Telegram Bot API: the `X-Telegram-Bot-Api-Secret-Token` given to setWebhook,
compared in constant time; one Update per POST.

Ids: every event is `telegram:<source>:update:<update_id>` (update_id is the bot's own
retry and dedupe key; the source names the bot). A message's id is `chat_id:message_id`,
because Telegram message ids are unique only within a chat.
"""

from __future__ import annotations

import re
from typing import Any

from relay.events import Event
from relay.ingest.providers.common import normal
from relay.ingest.providers.common.base import (
    Ack,
    Delivery,
    Normalized,
    Provider,
    Rejected,
    Unprocessable,
    json_object,
)
from relay.ingest.providers.common.normal import as_dict, as_list, compact, text_of
from relay.ingest.providers.common.shared_secret import secret_matches
from relay.settings import Source

name = "telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
SECRET_FORMAT = re.compile(r"[A-Za-z0-9_-]{1,256}")
MEDIA_KINDS = {
    "animation": "video",
    "video": "video",
    "video_note": "video",
    "audio": "audio",
    "voice": "audio",
    "document": "document",
    "sticker": "sticker",
}
MESSAGE_UPDATES = {
    "message": "message.created",
    "channel_post": "message.created",
    "business_message": "message.created",
    "edited_message": "message.updated",
    "edited_channel_post": "message.updated",
    "edited_business_message": "message.updated",
}


def verify(delivery: Delivery, source: Source) -> None:
    given = delivery.headers.get(SECRET_HEADER)
    if not given:
        raise Rejected(f"{SECRET_HEADER} is required", code="missing_secret")
    if not secret_matches(given, source):
        raise Rejected(f"{SECRET_HEADER} does not match", code="bad_secret")


def verify_head(delivery: Delivery, source: Source) -> bool:
    """The secret token is a header: the whole check happens before the body is read."""
    verify(delivery, source)
    return True


def check_source(source: Source) -> list[str]:
    # setWebhook refuses any other secret_token, so a bad one would never be sent back.
    if all(SECRET_FORMAT.fullmatch(secret) for secret in source.secrets["secret"].split()):
        return []
    return ["secret_env: a Telegram secret_token is 1-256 of A-Z a-z 0-9 _ -"]


def ack(delivery: Delivery) -> Ack:
    # A body would be read as a Bot API method call (a "webhook reply"): send none.
    return Ack(status=200, body=b"", content_type="text/plain")


def normalize(delivery: Delivery, source: Source) -> Normalized:
    # One update per body: the body is the delivery's one item.
    return Normalized.whole(_events(delivery, source))


def _events(delivery: Delivery, source: Source) -> list[Event]:
    update = json_object(delivery.body, "the update")
    update_id = update.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise Unprocessable("the update has no integer update_id")
    event_id = f"{name}:{source.name}:update:{update_id}"
    for field, event_type in MESSAGE_UPDATES.items():
        if isinstance(update.get(field), dict):
            return [_message(update[field], event_type, event_id, source)]
    if isinstance(update.get("callback_query"), dict):
        return _callback(update["callback_query"], event_id, source)
    if isinstance(update.get("message_reaction"), dict):
        return [_reaction(update["message_reaction"], event_id, source)]
    if isinstance(update.get("my_chat_member"), dict):
        return [_membership(update["my_chat_member"], event_id, source)]
    # inline_query, chat_join_request, poll, chat_member...: relay has no event for them.
    return []


def _chat_id(message: dict[str, Any]) -> str:
    chat_id = text_of(as_dict(message.get("chat")).get("id"))
    if chat_id is None:
        raise Unprocessable("a Telegram message has no chat.id")
    return chat_id


def _message_id(message: dict[str, Any], chat_id: str) -> str:
    message_id = text_of(message.get("message_id"))
    if message_id is None:
        raise Unprocessable("a Telegram message has no message_id")
    return f"{chat_id}:{message_id}"


def _user(user: Any) -> dict[str, Any] | None:
    user = as_dict(user)
    full = " ".join(
        part for part in (text_of(user.get("first_name")), text_of(user.get("last_name"))) if part
    )
    return normal.person(user.get("id"), full or None, username=text_of(user.get("username")))


def _sender(message: dict[str, Any]) -> dict[str, Any] | None:
    # Channel posts (and anonymous group admins) speak as a chat, not a user.
    if isinstance(message.get("from"), dict):
        return _user(message["from"])
    chat = as_dict(message.get("sender_chat"))
    return normal.person(chat.get("id"), chat.get("title"))


def _message(message: dict[str, Any], event_type: str, event_id: str, source: Source) -> Event:
    chat_id = _chat_id(message)
    reply = as_dict(message.get("reply_to_message"))
    body = {
        "id": _message_id(message, chat_id),
        "direction": "in",
        "from": _sender(message),
        **_content(message),
        "sent_at": normal.iso_from_unix(message.get("date")),
        "edited_at": normal.iso_from_unix(message.get("edit_date")),
        "reply_to": _message_id(reply, chat_id) if reply.get("message_id") else None,
    }
    chat = as_dict(message.get("chat"))
    return normal.message_event(
        source,
        name,
        event_id,
        event_type,
        chat_id,
        body,
        chat=compact({"type": text_of(chat.get("type")), "title": text_of(chat.get("title"))}),
    )


def _content(message: dict[str, Any]) -> dict[str, Any]:
    caption = text_of(message.get("caption"))
    if isinstance(message.get("text"), str):
        return {"kind": "text", "text": message["text"]}
    photos = [p for p in as_list(message.get("photo")) if isinstance(p, dict)]
    if photos:
        largest = photos[-1]  # Telegram lists the sizes smallest first
        reference = normal.media(
            largest.get("file_id"), width=largest.get("width"), height=largest.get("height")
        )
        return {"kind": "image", "text": caption, "media": reference}
    for field, kind in MEDIA_KINDS.items():
        item = message.get(field)
        if isinstance(item, dict):
            reference = normal.media(
                item.get("file_id"),
                None,
                item.get("mime_type"),
                file_name=text_of(item.get("file_name")),
            )
            text = text_of(item.get("emoji")) if field == "sticker" else caption
            return {"kind": kind, "text": text, "media": reference}
    place = as_dict(message.get("location")) or as_dict(
        as_dict(message.get("venue")).get("location")
    )
    if place:
        location = compact({"latitude": place.get("latitude"), "longitude": place.get("longitude")})
        title = text_of(as_dict(message.get("venue")).get("title"))
        return {"kind": "location", "text": title, "location": location}
    contact = as_dict(message.get("contact"))
    if contact:
        card_name = " ".join(
            p for p in (text_of(contact.get("first_name")), text_of(contact.get("last_name"))) if p
        )
        card = compact(
            {"name": card_name or None, "phones": [text_of(contact.get("phone_number"))]}
        )
        return {"kind": "contacts", "contacts": [card]}
    return {"kind": "unknown", "text": caption}


def _callback(query: dict[str, Any], event_id: str, source: Source) -> list[Event]:
    """A button press under a bot message: shown as an interactive reply to it."""
    message = as_dict(query.get("message"))
    if not message.get("chat"):
        return []  # a press under an inline-mode message: no chat relay knows
    chat_id = _chat_id(message)
    data = text_of(query.get("data"))
    title = None
    for row in as_list(as_dict(message.get("reply_markup")).get("inline_keyboard")):
        for button in as_list(row):
            if data is not None and as_dict(button).get("callback_data") == data:
                title = text_of(as_dict(button).get("text"))
    body = {
        "id": f"callback:{text_of(query.get('id'))}",
        "direction": "in",
        "from": _user(query.get("from")),
        "kind": "interactive",
        "text": title or data,
        "interactive": compact({"type": "callback", "id": data, "title": title}),
        "reply_to": _message_id(message, chat_id),
    }
    return [normal.message_event(source, name, event_id, "message.created", chat_id, body)]


def _reaction(update: dict[str, Any], event_id: str, source: Source) -> Event:
    chat_id = _chat_id(update)
    emojis = [
        text_of(as_dict(r).get("emoji") or as_dict(r).get("custom_emoji_id"))
        for r in as_list(update.get("new_reaction"))
    ]
    emoji = next((e for e in emojis if e), None)
    sender = (
        _user(update["user"])
        if update.get("user")
        else _sender({"sender_chat": update.get("actor_chat")})
    )
    body = {
        "id": _message_id(update, chat_id),
        "from": sender,
        "kind": "reaction",
        "reaction": {"emoji": emoji, "removed": emoji is None},
        "sent_at": normal.iso_from_unix(update.get("date")),
    }
    return normal.message_event(source, name, event_id, "message.reaction", chat_id, body)


def _membership(update: dict[str, Any], event_id: str, source: Source) -> Event:
    """The bot's own membership changed: `kicked` in a private chat means blocked."""
    chat = as_dict(update.get("chat"))
    chat_id = _chat_id(update)
    new = text_of(as_dict(update.get("new_chat_member")).get("status"))
    old = text_of(as_dict(update.get("old_chat_member")).get("status"))
    user = as_dict(chat) if chat.get("type") == "private" else {}
    summary = {
        "id": chat_id,
        "type": text_of(chat.get("type")),
        "title": text_of(chat.get("title")) or (_user(user) or {}).get("name"),
        "bot_status": new,
        "previous_bot_status": old,
        "blocked": new == "kicked" and chat.get("type") == "private",
        "changed_by": _user(update.get("from")),
        "changed_at": normal.iso_from_unix(update.get("date")),
    }
    return normal.event(source, name, event_id, "chat.updated", chat_id, chat=compact(summary))


PROVIDER = Provider(
    name=name,
    required_secrets=("secret",),
    verify=verify,
    normalize=normalize,
    ack=ack,
    verify_head=verify_head,
    check_source=check_source,
)
