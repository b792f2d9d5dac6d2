"""The update event: what a webhook or a publish becomes, and how it is stored.

An event is encoded once, at ingest, without its timestamp (the store assigns that);
reads splice the timestamp into the stored bytes instead of decoding and re-encoding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from relay.cursor import Cursor, format_cursor
from relay.errors import BadRequest

# `}` would end the Redis Cluster hash tag early and `{` start another one. Validate with
# fullmatch: `re.match` with `$` accepts a trailing newline, and this one has no anchors.
ACCOUNT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
KNOWN_TYPES = frozenset(
    {
        "message.created",
        "message.updated",
        "message.status",
        "message.reaction",
        "message.deleted",
        "chat.updated",
        "connection.updated",
    }
)


def check_account(account: object) -> str:
    if not isinstance(account, str) or not ACCOUNT_PATTERN.fullmatch(account):
        raise BadRequest(
            "account must be 1-128 characters of letters, digits and . _ : @ -",
            code="bad_account",
        )
    return account


@dataclass(frozen=True, slots=True)
class Event:
    """One update for one account. `body` holds the type-specific top-level fields."""

    id: str
    type: str
    account: str
    chat_id: str | None = None
    audience: tuple[str, ...] | None = None
    body: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The stored member: a routing header line, then the event JSON without timestamp."""
        header = orjson.dumps({"c": self.chat_id, "a": self.audience})
        document: dict[str, Any] = {"id": self.id, "type": self.type, "account": self.account}
        document["chat_id"] = self.chat_id
        document.update(self.body)
        return header + b"\n" + orjson.dumps(document)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as read back: its cursor and its stored bytes."""

    timestamp: Cursor
    member: bytes
    # The wire form, made at the first wire(): an event in a tail is answered to every
    # poller and stream of its account, and splicing it again for each cost a tenth of a
    # ten-event poll. (The tail counts these bytes too: see fanout/tail.py.)
    _wire: bytes | None = field(default=None, init=False, compare=False, repr=False)

    def routing(self) -> tuple[str | None, list[str] | None]:
        header = orjson.loads(self.member[: self.member.index(b"\n")])
        return header["c"], header["a"]

    def wire(self) -> bytes:
        """The client-facing JSON: the stored document with `timestamp` spliced in."""
        wire = self._wire
        if wire is None:
            document = self.member[self.member.index(b"\n") + 1 : -1]
            wire = b'%s,"timestamp":"%s"}' % (document, format_cursor(self.timestamp).encode())
            object.__setattr__(self, "_wire", wire)
        return wire


@dataclass(frozen=True, slots=True)
class Appended:
    """The outcome of appending one event: its timestamp, and whether it was already there."""

    id: str
    timestamp: Cursor
    duplicate: bool
