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


class SharedAnswers:
    """Answers that every viewer of an account gets alike, rendered once.

    An inbox's agents all poll the same account and, following the same events, ask with
    the same cursors: when a page holds only events for everyone and the viewer sees every
    chat, its bytes are the same for all of them. A page that is not a reset is fixed by
    its account, its two cursors and `more` (committed events never change), so it can be
    kept; a reset page starts wherever the trim has got to, so it never is."""

    def __init__(self, max_bytes: int = 4 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._answers: dict[tuple[str, Cursor | None, Cursor, bool], PollAnswer] = {}
        self._bytes = 0

    def render(self, account: str, since: Cursor | None, page: Page, viewer: Viewer) -> PollAnswer:
        if viewer.chats is not None or page.reset or not page.events:
            return render(page, viewer)
        key = (account, since, page.cursor, page.more)
        answer = self._answers.get(key)
        if answer is None:
            answer = render(page, viewer)
            if len(answer.delivered) == len(page.events) and all(map(for_everyone, page.events)):
                # The body, and the events' wire forms it keeps alive past the tail.
                size = 2 * len(answer.body)
                if self._bytes + size > self.max_bytes:
                    self._answers.clear()
                    self._bytes = 0
                self._answers[key] = answer
                self._bytes += size
        return answer


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
