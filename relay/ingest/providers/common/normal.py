"""Building blocks of DESIGN.md's update event shared by the chat providers: the
`message` object, provider times as ISO 8601, status names and their ranks.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from relay.events import Event
from relay.ingest.providers.common.base import Unprocessable
from relay.settings import Source

# A status only moves forward: clients keep the highest `status_rank` they have seen for a
# message, so a late "delivered" never replaces "read" (providers deliver out of order).
# "failed" is terminal and outranks everything.
STATUS_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 5}
KINDS = frozenset(
    {
        "text",
        "image",
        "audio",
        "video",
        "document",
        "sticker",
        "location",
        "contacts",
        "interactive",
        "reaction",
        "unknown",
    }
)
# Far enough to cover any real message time, near enough for datetime to represent it.
_MAX_UNIX_SECONDS = 253402300799


def iso_from_unix(value: Any, *, milliseconds: bool = False) -> str | None:
    """ISO 8601 (UTC, +00:00) from unix seconds or milliseconds, given as a number or a
    numeric string; None when the value is absent or not a plausible time."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if milliseconds:
        number /= 1000
    if not 0 < number <= _MAX_UNIX_SECONDS:
        return None
    return datetime.fromtimestamp(number, tz=UTC).isoformat()


def code_of(value: Any) -> str | int | None:
    """An error code as the schema allows it: an integer or a string, else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return text_of(value)


def text_of(value: Any) -> str | None:
    """A string field as relay keeps it: strings stay, numbers become text, else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def compact(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Drop absent (None) fields, so events carry only what the provider said."""
    return {key: value for key, value in fields.items() if value is not None}


def person(person_id: Any, name: Any = None, **extra: Any) -> dict[str, Any] | None:
    ident = text_of(person_id)
    if ident is None:
        return None
    return compact({"id": ident, "name": text_of(name), **extra})


def media(
    media_id: Any = None, url: Any = None, mime_type: Any = None, **extra: Any
) -> dict[str, Any] | None:
    """A reference to provider-hosted media; relay never downloads it."""
    reference = compact(
        {"id": text_of(media_id), "url": text_of(url), "mime_type": text_of(mime_type), **extra}
    )
    return reference or None


def kind_of_mime(mime_type: str | None) -> str:
    major = (mime_type or "").split("/", 1)[0].lower()
    return {"image": "image", "audio": "audio", "video": "video"}.get(major, "document")


def event(
    source: Source,
    provider: str,
    event_id: str,
    event_type: str,
    chat_id: Any,
    **body: Any,
) -> Event:
    """One update event of a chat provider, with `source` and `provider` always set."""
    return Event(
        id=event_id,
        type=event_type,
        account=source.account,
        chat_id=text_of(chat_id),
        body={"source": source.name, "provider": provider, **compact(body)},
    )


def message_event(
    source: Source,
    provider: str,
    event_id: str,
    event_type: str,
    chat_id: Any,
    message: Mapping[str, Any],
    **body: Any,
) -> Event:
    """A `message.*` event: always in a chat (an event with a null chat would reach no
    viewer with a `chats` allowlist, so a message without one is unreadable instead)."""
    if text_of(chat_id) is None:
        raise Unprocessable(f"a {provider} {event_type} has no chat")
    return event(source, provider, event_id, event_type, chat_id, message=compact(message), **body)


def status_event(
    source: Source,
    provider: str,
    event_id: str,
    chat_id: Any,
    message_id: str,
    status: str,
    *,
    provider_status: str | None = None,
    status_at: str | None = None,
    error: Mapping[str, Any] | None = None,
    direction: str = "out",
    **extra: Any,
) -> Event:
    """`message.status` (of an outbound message, usually) with its monotonic `status_rank`."""
    message = {
        "id": message_id,
        "direction": direction,
        "status": status,
        "status_rank": STATUS_RANK[status],
        "provider_status": provider_status,
        "status_at": status_at,
        "error": compact(error) if error else None,
        **extra,
    }
    return message_event(source, provider, event_id, "message.status", chat_id, message)


def as_dict(value: Any) -> dict[str, Any]:
    """Tolerant access: a provider field that should be an object, or {}."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
