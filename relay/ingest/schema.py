"""The JSON Schema (2020-12) of the update event clients receive: the contract of
`message`, statuses, reactions, chats and connections as the chat providers fill them.

Served at `/schemas/update-event.json` and referenced from `/openapi.json`.
"""

from __future__ import annotations

from typing import Any

from relay.ingest.providers.common.normal import KINDS, STATUS_RANK
from relay.openapi import SCHEMA_PATH

_TIME = {"type": "string", "format": "date-time"}
_STRING = {"type": "string"}
_PERSON = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {
            "type": "string",
            "description": "The provider's id of the person: a phone number, or (WhatsApp users "
            "known by username only) the business-scoped user id",
        },
        "name": _STRING,
        "username": _STRING,
        "user_id": {
            "type": "string",
            "description": "WhatsApp: the business-scoped user id, when `id` is a phone number",
        },
    },
}
_MEDIA = {
    "type": "object",
    "description": "A reference to provider-hosted media; relay never downloads it.",
    "minProperties": 1,
    "properties": {"id": _STRING, "url": _STRING, "mime_type": _STRING, "file_name": _STRING},
}
_ERROR = {
    "type": "object",
    "properties": {"code": {"type": ["string", "integer"]}, "title": _STRING, "detail": {}},
}
_MESSAGE = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"type": "string", "minLength": 1, "description": "The provider's message id"},
        "direction": {"enum": ["in", "out"]},
        "from": _PERSON,
        "kind": {"enum": sorted(KINDS)},
        "text": _STRING,
        "media": _MEDIA,
        "attachments": {"type": "array", "items": _MEDIA},
        "location": {"type": "object"},
        "contacts": {"type": "array", "items": {"type": "object"}},
        "interactive": {"type": "object", "required": ["type"]},
        "reaction": {
            "type": "object",
            "required": ["emoji", "removed"],
            "properties": {"emoji": {"type": ["string", "null"]}, "removed": {"type": "boolean"}},
        },
        "reply_to": _STRING,
        "forwarded": {"type": "boolean"},
        "channel": _STRING,
        "sent_at": _TIME,
        "edited_at": _TIME,
        "deleted_at": _TIME,
        "status": {"enum": list(STATUS_RANK)},
        "status_rank": {
            "type": "integer",
            "description": "Statuses only move forward: keep the highest rank seen per message "
            "(queued 0, sent 1, delivered 2, read 3, played 4, failed 5).",
        },
        "provider_status": _STRING,
        "status_at": _TIME,
        "error": _ERROR,
    },
}
_BY_TYPE = [
    ("message.created", ["direction", "kind"]),
    ("message.updated", []),
    ("message.status", ["status", "status_rank"]),
    ("message.reaction", ["reaction"]),
    ("message.deleted", []),
]


def update_event_schema() -> dict[str, Any]:
    chat_provider = {
        "required": ["provider"],
        "properties": {"provider": {"not": {"const": "standard_webhooks"}}},
    }
    rules: list[dict[str, Any]] = [
        {
            "if": {"required": ["type", "provider"], "properties": {"type": {"const": kind}}},
            "then": {
                "if": chat_provider,
                "then": {
                    "required": ["message", "chat_id"],
                    "properties": {"message": {"required": ["id", *needed]}},
                },
            },
        }
        for kind, needed in _BY_TYPE
    ]
    # A Standard Webhooks sender's message is its own; the chat providers' follow Message.
    rules.append(
        {"if": chat_provider, "then": {"properties": {"message": {"$ref": "#/$defs/Message"}}}}
    )
    rules.append(
        {
            "if": {
                "required": ["type", "provider"],
                "properties": {"type": {"const": "connection.updated"}},
            },
            "then": {"if": chat_provider, "then": {"required": ["connection"]}},
        }
    )
    rules.append(
        {
            "if": {
                "required": ["type", "provider"],
                "properties": {"type": {"const": "chat.updated"}},
            },
            "then": {"if": chat_provider, "then": {"required": ["chat", "chat_id"]}},
        }
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_PATH,
        "title": "UpdateEvent",
        "description": "One update for one account, as check-updates and SSE deliver it. "
        "Publish API events carry whatever `type` and `data` they were given.",
        "type": "object",
        "required": ["id", "type", "timestamp", "account"],
        "properties": {
            "id": {"type": "string", "minLength": 1},
            "type": {"type": "string", "minLength": 1},
            "timestamp": {"type": "string", "description": "The cursor: send it back."},
            "account": _STRING,
            "chat_id": {"type": ["string", "null"]},
            "audience": {"type": ["array", "null"], "items": _STRING},
            "source": _STRING,
            "provider": _STRING,
            "message": {
                "type": "object",
                "description": "From a chat provider: #/$defs/Message. From a Standard "
                "Webhooks sender: the sender's own message object.",
            },
            "chat": {
                "type": "object",
                "properties": {"id": _STRING, "blocked": {"type": "boolean"}},
            },
            "connection": {
                "type": "object",
                "required": ["state"],
                "properties": {"state": _STRING, "instance": _STRING},
            },
            "data": {},
        },
        "allOf": rules,
        "$defs": {"Message": _MESSAGE},
    }
