"""The OpenAPI 3.1 description of every route relay serves."""

from __future__ import annotations

from typing import Any

from relay import __version__
from relay.delivery.openapi_paths import delivery_paths
from relay.settings import Settings

SCHEMA_PATH = "/schemas/update-event.json"

_ERROR = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
}
_TIMESTAMP = {
    "type": "string",
    "description": "A cursor: ISO 8601 with microseconds and +00:00; send it back as last_check.",
    "examples": ["2025-07-19T03:54:04.574010+00:00"],
}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Bad input",
        429: "Too many requests from this user or source; retry after Retry-After seconds",
        401: "Missing, invalid or expired credentials",
        403: "Forbidden",
        404: "Not found",
        413: "Body too large",
        422: "Authentic but not understood",
        503: "The store is unavailable; retry after Retry-After seconds",
    }
    return {
        str(status): {
            "description": reasons[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status in statuses
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document(settings: Settings) -> dict[str, Any]:
    poll_parameters = [
        {
            "name": "last_check",
            "in": "query",
            "required": False,
            "description": "The timestamp of the previous answer. ISO 8601 (+00:00, a space "
            "for +, Z, no offset, other offsets, fewer digits) or epoch s/ms; empty, null or "
            "undefined mean from now.",
            "schema": {"type": "string"},
        },
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": settings.poll_limit_max},
        },
        {"name": "token", "in": "query", "required": False, "schema": {"type": "string"}},
    ]
    wait_parameter = {
        "name": "wait",
        "in": "query",
        "required": False,
        "description": "Long-poll: hold up to this many seconds (capped by the server) "
        "until an update arrives.",
        "schema": {"type": "number", "minimum": 0, "maximum": 3600},
    }
    sse_parameters = [
        *poll_parameters,
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "description": "The id of the last event received: resume after it.",
            "schema": {"type": "string"},
        },
    ]
    poll_answer = {
        "type": "object",
        "required": ["timestamp", "updates", "has_updates", "more", "reset"],
        "properties": {
            "timestamp": _TIMESTAMP,
            "updates": {"type": "array", "items": {"$ref": "#/components/schemas/UpdateEvent"}},
            "has_updates": {"type": "boolean"},
            "more": {"type": "boolean", "description": "The page is full: poll again at once."},
            "reset": {
                "type": "boolean",
                "description": "History before the cursor was trimmed or lost: reload state.",
            },
        },
    }
    publish_event = {
        "type": "object",
        "required": ["account", "type"],
        "additionalProperties": False,
        "properties": {
            "account": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"},
            "type": {"type": "string", "minLength": 1, "maxLength": 64},
            "id": {"type": "string", "minLength": 1, "maxLength": 256},
            "chat_id": {"type": ["string", "integer"]},
            "audience": {"type": "array", "items": {"type": "string"}},
            "data": {},
        },
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "relay", "version": __version__},
        "components": {
            "securitySchemes": {
                "browserToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {
                "Error": _ERROR,
                "UpdateEvent": {
                    "type": "object",
                    "required": ["id", "type", "timestamp", "account"],
                    "properties": {
                        "id": {"type": "string"},
                        "type": {"type": "string"},
                        "timestamp": _TIMESTAMP,
                        "account": {"type": "string"},
                        "chat_id": {"type": ["string", "null"]},
                        "source": {"type": "string"},
                        "provider": {"type": "string"},
                        "message": {"type": "object"},
                        "data": {},
                    },
                },
            },
        },
        "paths": {
            "/api/chats/check-updates/": {
                "get": {
                    "summary": "Poll (or long-poll, with wait) for the updates after a cursor",
                    "security": [{"browserToken": []}],
                    "parameters": [*poll_parameters, wait_parameter],
                    "responses": {
                        "200": _json(poll_answer, "The updates"),
                        **_errors(400, 401, 429, 503),
                    },
                }
            },
            "/api/chats/realtime-updates/": {
                "get": {
                    "summary": "Server-Sent Events: every update as it is stored",
                    "description": "Always 200 text/event-stream, whatever Accept says. Each "
                    "event's id is its cursor; `event: reset` when history before the cursor "
                    "was trimmed or lost.",
                    "security": [{"browserToken": []}],
                    "parameters": sse_parameters,
                    "responses": {
                        "200": {
                            "description": "An endless event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **_errors(400, 401, 429, 503),
                    },
                }
            },
            "/api/publish": {
                "post": {
                    "summary": "Append events built by the main application",
                    "security": [{"apiKey": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        publish_event,
                                        {"type": "array", "items": publish_event, "minItems": 1},
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _json({"type": "object"}, "Stored: each event's id and timestamp"),
                        **_errors(400, 401, 413, 503),
                    },
                }
            },
            "/webhooks/{source}": {
                "post": {
                    "summary": "A provider's webhook, verified with the provider's scheme",
                    "parameters": [
                        {
                            "name": "source",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "requestBody": {"content": {"application/json": {"schema": {}}}},
                    "responses": {
                        "200": {"description": "Stored (or a duplicate, or ignored)"},
                        **_errors(401, 404, 413, 422, 503),
                    },
                }
            },
            "/healthz": {
                "get": {"summary": "Liveness", "responses": {"200": {"description": "Alive"}}}
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: the store answers",
                    "responses": {"200": {"description": "Ready"}, **_errors(503)},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Text exposition format",
                            "content": {"text/plain": {}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI"}},
                }
            },
        },
    }
    # The chat providers' additions: the event schema, the handshake, the dead letters.
    document["components"]["schemas"]["UpdateEvent"] = {"$ref": SCHEMA_PATH}
    document["paths"]["/webhooks/{source}"].update(_handshake())
    sub_path = {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}
    post = dict(document["paths"]["/webhooks/{source}"]["post"])
    post["summary"] += " (sub-paths: Twilio status callbacks, Evolution's per-event URLs)"
    post["parameters"] = [*post["parameters"], sub_path]
    document["paths"]["/webhooks/{source}/{path}"] = {"post": post}
    document["paths"].update(_dead_letter_paths())
    document["paths"].update(delivery_paths(settings.poll_limit_max))
    if settings.metrics_port is not None:
        del document["paths"]["/metrics"]  # served on RELAY_METRICS_PORT, not here
    document["paths"][SCHEMA_PATH] = {
        "get": {
            "summary": "The JSON Schema (2020-12) of the update event",
            "responses": {"200": _json({"type": "object"}, "JSON Schema")},
        }
    }
    return document


_SOURCE = {"name": "source", "in": "path", "required": True, "schema": {"type": "string"}}


def _handshake() -> dict[str, Any]:
    return {
        "get": {
            "summary": "Meta's verification handshake (hub.mode, hub.verify_token, hub.challenge)",
            "parameters": [
                _SOURCE,
                *(
                    {"name": f"hub.{name}", "in": "query", "schema": {"type": "string"}}
                    for name in ("mode", "verify_token", "challenge")
                ),
            ],
            "responses": {
                "200": {
                    "description": "The challenge, echoed",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_errors(403, 404),
            },
        }
    }


def _dead_letter_paths() -> dict[str, Any]:
    letter = {
        "type": "object",
        "required": ["id", "source", "provider", "account", "error", "received_at", "body_base64"],
        "properties": {
            "id": {"type": "string"},
            "source": {"type": "string"},
            "provider": {"type": "string"},
            "account": {"type": "string"},
            "error": {"type": "string"},
            "received_at": {"type": "number", "description": "Unix seconds"},
            "method": {"type": "string"},
            "url": {"type": "string", "description": "Secret query parameters redacted"},
            "headers": {"type": "object", "description": "Secret-bearing headers redacted"},
            "query": {"type": "object"},
            "body": {"type": ["string", "null"], "description": "The body when it is UTF-8"},
            "body_base64": {"type": "string", "description": "The body, byte-exact"},
            "unreadable": {
                "type": "array",
                "description": "The items of the body that were not stored (the others were): "
                "each one's place in the body (a JSON Pointer; empty for the whole body) and why",
                "items": {
                    "type": "object",
                    "required": ["place", "error"],
                    "properties": {"place": {"type": "string"}, "error": {"type": "string"}},
                },
            },
        },
    }
    replayed = {
        "type": "object",
        "required": ["id", "outcome", "events"],
        "properties": {
            "id": {"type": "string"},
            "outcome": {"enum": ["accepted", "duplicate", "ignored"]},
            "events": {"type": "array", "items": {"type": "object"}},
        },
    }
    return {
        "/api/admin/dead-letters": {
            "get": {
                "summary": "Authentic webhooks that could not be normalized, newest first",
                "security": [{"apiKey": []}],
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {
                        "name": "before",
                        "in": "query",
                        "description": "The `next` of the previous page: letters older than it",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "dead_letters": {"type": "array", "items": letter},
                                "next": {
                                    "type": ["string", "null"],
                                    "description": "Pass as `before` for the next page; "
                                    "null at the end. A page holds at most `limit` letters "
                                    "and about 8 MiB of bodies.",
                                },
                            },
                        },
                        "The dead letters",
                    ),
                    **_errors(400, 401, 503),
                },
            }
        },
        "/api/admin/dead-letters/{id}/replay": {
            "post": {
                "summary": "Normalize a dead letter with the current code and append its events",
                "security": [{"apiKey": []}],
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _json(replayed, "Replayed; the letter is removed"),
                    **_errors(401, 404, 422, 503),
                },
            }
        },
    }
