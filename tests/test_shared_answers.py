"""Answers rendered once for every viewer who gets them alike, and only for those."""

from __future__ import annotations

from relay.auth import Viewer
from relay.events import Event, StoredEvent
from relay.fanout.poll import SharedAnswers, render
from relay.store.base import Page


def stored(n: int, chat: str = "c1", audience: tuple[str, ...] | None = None) -> StoredEvent:
    event = Event(
        id=f"e{n}",
        type="message.created",
        account="acme",
        chat_id=chat,
        audience=audience,
        body={"data": {"n": n}},
    )
    return StoredEvent(1_000 + n, event.encode())


def page(*events: StoredEvent, more: bool = False, reset: bool = False) -> Page:
    return Page(list(events), events[-1].timestamp, more, reset)


ANA, BEN = Viewer("ana", "acme"), Viewer("ben", "acme")


def test_public_pages_are_rendered_once_for_every_viewer_of_all_chats():
    answers = SharedAnswers()
    first = answers.render("acme", 1_000, page(stored(1), stored(2)), ANA)
    again = answers.render("acme", 1_000, page(stored(1), stored(2)), BEN)
    assert again is first
    assert first.body == render(page(stored(1), stored(2)), BEN).body
    # Another cursor, account or `more` is another answer.
    assert answers.render("acme", 1_001, page(stored(2)), ANA) is not first
    assert answers.render("other", 1_000, page(stored(1), stored(2)), ANA) is not first
    assert answers.render("acme", 1_000, page(stored(1), stored(2), more=True), ANA) is not first


def test_an_event_for_some_users_is_never_shared():
    answers = SharedAnswers()
    for_ana = page(stored(1), stored(2, audience=("ana",)))
    assert len(answers.render("acme", 1_000, for_ana, ANA).delivered) == 2
    assert len(answers.render("acme", 1_000, for_ana, BEN).delivered) == 1
    assert len(answers.render("acme", 1_000, for_ana, ANA).delivered) == 2


def test_a_viewer_of_some_chats_gets_its_own_answer():
    answers = SharedAnswers()
    everything = page(stored(1, chat="c1"), stored(2, chat="c2"))
    shared = answers.render("acme", 1_000, everything, ANA)
    only_c2 = answers.render("acme", 1_000, everything, Viewer("cid", "acme", frozenset({"c2"})))
    assert len(shared.delivered) == 2
    assert only_c2.delivered == [1_002]


def test_a_reset_page_is_never_kept():
    # A reset page starts at wherever the trim has got to: the same cursors can mean
    # fewer events later.
    answers = SharedAnswers()
    assert answers.render("acme", 5, page(stored(1), stored(2), reset=True), ANA).delivered == [
        1_001,
        1_002,
    ]
    assert answers.render("acme", 5, page(stored(2), reset=True), ANA).delivered == [1_002]


def test_the_kept_bytes_stay_within_the_bound():
    answers = SharedAnswers(max_bytes=4_000)
    for n in range(200):
        answers.render("acme", n, page(stored(n + 1)), ANA)
        assert answers._bytes <= 4_000
