"""What a subscriber receives besides the events themselves, and how an event's id and type
are read from its stored bytes."""

from __future__ import annotations

import orjson

from relay.cursor import Cursor, format_cursor


def id_and_type(wire: bytes) -> tuple[str, str]:
    """The `webhook-id` (the event id) and the type (for a subscriber's `types`)."""
    document = orjson.loads(wire)
    return str(document.get("id")), str(document.get("type"))


def reset_message(account: str, low: Cursor) -> tuple[str, bytes]:
    """`relay.reset`: events before `timestamp` were trimmed before they could be
    delivered; reload the account's state, then expect every event after it. The id is
    derived from the cursor, so a retried reset is recognized as the same message."""
    stamp = format_cursor(low)
    msg_id = f"relay.reset.{low}"
    body = orjson.dumps(
        {"id": msg_id, "type": "relay.reset", "account": account, "timestamp": stamp, "reset": True}
    )
    return msg_id, body
