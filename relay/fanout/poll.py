"""A page as a viewer may see it: the viewer's filters, and the answer's bytes.

The response body is spliced from the stored event bytes; events are never re-encoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.auth import Viewer
from relay.cursor import Cursor, format_cursor
from relay.events import StoredEvent
from relay.store.base import Page

_PUBLIC = b'"a":null}'


@dataclass(frozen=True, slots=True)
class PollAnswer:
    body: bytes
    delivered: list[Cursor]
    page: Page

    @property
    def outcome(self) -> str:
        if self.page.reset:
            return "reset"
        return "updates" if self.delivered else "empty"


def for_everyone(event: StoredEvent) -> bool:
    """Most events are for everyone in the account: known without decoding the routing
    header (the stored JSON ends in `"a":null}`)."""
    member = event.member
    return member.startswith(_PUBLIC, member.index(b"\n") - len(_PUBLIC))


def routed_to(event: StoredEvent, viewer: Viewer) -> bool:
    chat_id, audience = event.routing()
    return viewer.may_see(chat_id, audience)


def visible(page: Page, viewer: Viewer) -> tuple[list[bytes], list[Cursor]]:
    wires, stamps = [], []
    everything = viewer.chats is None
    for event in page.events:
        if (everything and for_everyone(event)) or routed_to(event, viewer):
            wires.append(event.wire())
            stamps.append(event.timestamp)
    return wires, stamps


def render(page: Page, viewer: Viewer) -> PollAnswer:
    wires, stamps = visible(page, viewer)
    body = b'{"timestamp":"%s","updates":[%s],"has_updates":%s,"more":%s,"reset":%s}' % (
        format_cursor(page.cursor).encode(),
        b",".join(wires),
        b"true" if wires else b"false",
        b"true" if page.more else b"false",
        b"true" if page.reset else b"false",
    )
    return PollAnswer(body, stamps, page)
