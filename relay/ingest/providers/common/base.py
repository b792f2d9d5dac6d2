"""The one face every provider shows: verify a delivery, normalize it into events.

Providers see a `Delivery` (headers, query, raw body, public URL), never aiohttp itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

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


@dataclass(frozen=True, slots=True)
class Unreadable:
    """An item of an authentic delivery that relay could not make events of: where it sits
    in the body (a JSON Pointer, RFC 6901, or a provider's own path such as `/data/2`; ""
    is the whole body) and why."""

    place: str
    error: str


@dataclass(frozen=True, slots=True)
class Normalized:
    """What a delivery became, item by item: each event with the place of the item it came
    from (so a replay can take only what was missing), and the items that were unreadable."""

    placed: list[tuple[str, Event]] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)

    @property
    def events(self) -> list[Event]:
        return [event for _, event in self.placed]

    @classmethod
    def whole(cls, events: Iterable[Event]) -> Normalized:
        """A delivery that is one item: its body."""
        items = Items()
        items.add("", lambda: list(events))
        return items.normalized()


class Items:
    """Collects a delivery's events one item at a time: whatever an item's normalizer does
    with input it did not expect (Unprocessable, a KeyError, an int too large for JSON),
    that item becomes Unreadable at its place and the other items still count."""

    def __init__(self) -> None:
        self._placed: list[tuple[str, Event]] = []
        self._unreadable: list[Unreadable] = []

    def add(
        self, place: str, build: Callable[..., Event | Iterable[Event] | None], *args: Any
    ) -> None:
        try:
            built = build(*args)
            events = [] if built is None else [built] if isinstance(built, Event) else list(built)
            for event in events:
                check_event(event)
        except Unprocessable as error:
            self._unreadable.append(Unreadable(place, error.detail))
        except Exception as error:
            self._unreadable.append(Unreadable(place, f"{type(error).__name__}: {error}"))
        else:
            self._placed += [(place, event) for event in events]

    def normalized(self) -> Normalized:
        return Normalized(list(self._placed), list(self._unreadable))


def check_event(event: object) -> None:
    """What the store will do with an event, done before anything is acknowledged."""
    if not isinstance(event, Event):
        raise TypeError(f"normalize returned {type(event).__name__}, not an Event")
    event.encode()


def plain_ack(delivery: Delivery) -> Ack:
    """`200 {"ok":true}`: what a provider that expects nothing in particular hears."""
    return Ack()


@dataclass(frozen=True, slots=True)
class Provider:
    """One provider, as its module declares it (`PROVIDER = Provider(...)`) and the table
    lists it. The optional hooks are None for a provider that has no use for them."""

    name: str
    # The `<key>_env` secrets every source of the provider must have.
    required_secrets: tuple[str, ...]
    # Raises Rejected unless the delivery comes from the provider.
    verify: Callable[[Delivery, Source], None]
    # The update events of an authentic delivery, item by item ([] for kinds relay
    # ignores); raises Unprocessable when the body as a whole cannot be read.
    normalize: Callable[[Delivery, Source], Normalized]
    ack: Callable[[Delivery], Ack] = plain_ack
    # Given the delivery without its body (body=b""): raises Rejected if the headers and
    # query already show it is not authentic, and answers True if they alone prove it is (a
    # secret in a header), so a body is read only for a delivery that may be authentic (see
    # relay.body_budget). Without it, the body is read before anything is checked.
    verify_head: Callable[[Delivery, Source], bool] | None = None
    # Problems of a source's settings beyond its required secrets, one line each.
    check_source: Callable[[Source], list[str]] | None = None
    # `GET /webhooks/{source}`: a subscription handshake (Meta's hub.*); raises Rejected.
    handshake: Callable[[Delivery, Source], Ack] | None = None
    # The body as a dead letter keeps it, without credentials the provider put inside it.
    redact_body: Callable[[bytes], bytes] | None = None


def json_object(body: bytes, what: str = "the payload") -> dict[str, Any]:
    """The body parsed as a JSON object; Unprocessable (naming `what`) otherwise."""
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Unprocessable("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise Unprocessable(f"{what} must be a JSON object")
    return payload
