"""The OpenAPI description of the pull API and the subscriber admin routes."""

from __future__ import annotations

from typing import Any

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_REASONS = {
    400: "Bad input",
    401: "Missing or invalid API key",
    404: "No such subscriber, or the account is not one of its accounts",
    429: "Too many long-polls from this puller at once",
    503: "The store is unavailable; retry after Retry-After seconds",
}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": _REASONS[s], "content": _ERROR} for s in statuses}


def _query(
    name: str, schema: dict[str, Any], description: str, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


def delivery_paths(limit_max: int) -> dict[str, Any]:
    timestamp = {"type": "string", "description": "A cursor: send it back as last_check."}
    answer = {
        "type": "object",
        "required": ["timestamp", "updates", "has_updates", "more", "reset"],
        "properties": {
            "timestamp": timestamp,
            "updates": {"type": "array", "items": {"$ref": "#/components/schemas/UpdateEvent"}},
            "has_updates": {"type": "boolean"},
            "more": {"type": "boolean"},
            "reset": {"type": "boolean"},
        },
    }
    account_state = {
        "type": "object",
        "properties": {
            "account": {"type": "string"},
            "cursor": {"type": ["string", "null"]},
            "lag_seconds": {"type": "number"},
            "pending": {"type": "boolean"},
            "holder": {"type": ["string", "null"]},
            "attempts": {"type": "integer"},
            "last_error": {"type": ["string", "null"]},
            "next_attempt": {"type": ["string", "null"]},
        },
    }
    subscriber = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "url": {"type": "string"},
            "accounts": {"type": "array", "items": account_state},
        },
    }
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    account = {"name": "account", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/api/events": {
            "get": {
                "summary": "Pull an account's whole stream after a cursor (long-poll with wait)",
                "description": "Every chat and audience of the account; the answer and the "
                "cursor rules are those of check-updates.",
                "security": [{"apiKey": []}],
                "parameters": [
                    _query(
                        "account",
                        {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"},
                        "The account whose stream to read",
                        required=True,
                    ),
                    _query("last_check", {"type": "string"}, "The previous answer's timestamp"),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": limit_max}, ""),
                    _query("wait", {"type": "number", "minimum": 0, "maximum": 3600}, "Seconds"),
                ],
                "responses": {
                    "200": {
                        "description": "The events",
                        "content": {"application/json": {"schema": answer}},
                    },
                    **_errors(400, 401, 429, 503),
                },
            }
        },
        "/api/admin/subscribers": {
            "get": {
                "summary": "Each subscriber's accounts: cursor, lag, last error, next attempt",
                "security": [{"apiKey": []}],
                "responses": {
                    "200": {
                        "description": "The subscribers",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "subscribers": {"type": "array", "items": subscriber}
                                    },
                                }
                            }
                        },
                    },
                    **_errors(401, 503),
                },
            }
        },
        "/api/admin/subscribers/{name}/accounts/{account}/rewind": {
            "post": {
                "summary": "Redeliver from a cursor: every event after last_check goes again",
                "security": [{"apiKey": []}],
                "parameters": [
                    name,
                    account,
                    _query("last_check", {"type": "string"}, "The cursor", required=True),
                ],
                "responses": {
                    "200": {
                        "description": "Rewound",
                        "content": {"application/json": {"schema": account_state}},
                    },
                    **_errors(400, 401, 404, 503),
                },
            }
        },
    }
