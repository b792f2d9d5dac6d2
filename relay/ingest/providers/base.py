"""The one face every provider shows: verify a delivery, normalize it into events.

Providers see a `Delivery` (headers, query, raw body, public URL), never aiohttp itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from relay.errors import RelayError, Unauthorized
from relay.events import Event
from relay.settings import Source


@dataclass(frozen=True, slots=True)
class Delivery:
    method: str
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    received_at: float  # Unix seconds, for replay windows only (never for cursors)


@dataclass(frozen=True, slots=True)
class Ack:
    """What the provider expects to hear back once its events are stored."""

    status: int = 200
    body: bytes = b'{"ok":true}'
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


class Rejected(Unauthorized):
    """Not authentic (forged, unsigned, stale): nothing is stored."""

    code = "rejected"


class Unprocessable(RelayError):
    """Authentic, but relay cannot make events of it: the dead-letter store takes it."""

    status = 422
    code = "unprocessable"


class Provider(Protocol):
    name: str
    required_secrets: tuple[str, ...]

    def verify(self, delivery: Delivery, source: Source) -> None:
        """Raise Rejected unless the delivery comes from the provider."""
        ...

    def normalize(self, delivery: Delivery, source: Source) -> list[Event]:
        """The update events of an authentic delivery; [] for kinds relay ignores."""
        ...

    def ack(self, delivery: Delivery) -> Ack: ...

    # Optional: `verify_head(delivery, source) -> bool`, given the delivery without its body
    # (body=b""). It raises Rejected if the headers and query already show the delivery is
    # not authentic, and answers True if they alone prove it is (a secret in a header), so
    # a body is read only for a delivery that may be authentic (see relay.body_budget).
