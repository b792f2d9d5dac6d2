"""Frontends on another origin than relay's, in headless Chromium (RELAY_CORS_ORIGINS): the
seed's own polling hook, verbatim, and an EventSource; an unlisted origin is refused."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.browser.chromium import wait_for
from tests.browser.conftest import publish
from tests.browser.origin import PageOrigin
from tests.browser.test_demo_inbox import assert_exactly_once_in_order
from tests.credentials import token


@pytest.fixture
def page_origin() -> Iterator[PageOrigin]:
    origin = PageOrigin().start()
    yield origin
    origin.stop()


def shown(browser) -> list[str]:
    return browser.execute_script("return window.seed.updates")


def open_page(browser, origin: PageOrigin, name: str, relay_url: str) -> None:
    browser.get(origin.page(name, api=relay_url, token=quote(token())))


def test_seed_polling_hook_from_another_origin_shows_60_events_over_40s_once_in_order(
    browser, start_relay, page_origin
):
    relay = start_relay(RELAY_CORS_ORIGINS=f"https://inbox.example.test,{page_origin.origin}")
    open_page(browser, page_origin, "seed_hook.html", relay.url)
    # The hook's first call (after 3 s) carries last_check=null, "from now": wait for the
    # cursor it answers before publishing.
    wait_for(browser, lambda d: d.execute_script("return lastCheckRef.current"), "a first poll")

    expected = [f"e{i:02d}" for i in range(60)]
    started = time.monotonic()
    for i, event_id in enumerate(expected):  # paced over 40 s, not synchronization
        time.sleep(max(0.0, started + i * 40 / 60 - time.monotonic()))
        publish(relay.url, event_id, chat=f"551190000{i % 4:04d}")
    wait_for(browser, lambda d: expected[-1] in shown(d), "the 60th event", timeout=20)

    assert_exactly_once_in_order(shown(browser), expected)
    seen = browser.execute_script(
        "return [...document.querySelectorAll('li[data-event-id]')].map(n => n.dataset.eventId)"
    )
    assert seen == expected
    assert browser.execute_script("return window.seed.errors") == []
    # The cursor went out as the seed pastes it: a raw "+" (relay reads it as a space).
    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    echoed = [url for url in urls if "last_check=20" in url]
    assert len(echoed) >= 10 and all("+00:00" in url for url in echoed)


def test_seed_polling_hook_from_an_unlisted_origin_sees_the_cors_failure(
    browser, start_relay, page_origin
):
    relay = start_relay(RELAY_CORS_ORIGINS="https://inbox.example.test")
    open_page(browser, page_origin, "seed_hook.html", relay.url)
    wait_for(browser, lambda d: d.execute_script("return window.seed.errors.length"), "an error")
    publish(relay.url, "never-shown")
    errors = browser.execute_script("return window.seed.errors")
    assert errors[0] == "❌ Erro no polling: Failed to fetch"
    console = [entry["message"] for entry in browser.get_log("browser")]
    assert any("blocked by CORS policy" in line for line in console), console
    assert shown(browser) == []


def test_event_source_from_another_origin_streams_and_resumes_after_a_restart(
    browser, start_relay, page_origin
):
    relay = start_relay(RELAY_CORS_ORIGINS=page_origin.origin)
    open_page(browser, page_origin, "event_source.html", relay.url)
    wait_for(browser, lambda d: d.execute_script("return window.seed.opens") == 1, "open")
    before = [f"s{i}" for i in range(5)]
    publish(relay.url, *before)
    wait_for(browser, lambda d: before[-1] in shown(d), "the first events")

    # A restarted relay: the browser reconnects across origins with its Last-Event-ID.
    relay.stop(signal.SIGTERM)
    publish_while_down = start_relay()  # same Redis, another replica
    after = [f"t{i}" for i in range(5)]
    publish(publish_while_down.url, *after[:2])
    relay.start()
    wait_for(browser, lambda d: d.execute_script("return window.seed.opens") == 2, "reopen")
    publish(relay.url, *after[2:])
    wait_for(browser, lambda d: after[-1] in shown(d), "the events after the restart")
    assert_exactly_once_in_order(shown(browser), before + after)


def test_event_source_from_an_unlisted_origin_is_closed_by_the_browser(
    browser, start_relay, page_origin
):
    relay = start_relay(RELAY_CORS_ORIGINS="https://inbox.example.test")
    open_page(browser, page_origin, "event_source.html", relay.url)
    # A CORS failure is fatal for an EventSource: it does not reconnect (readyState 2).
    wait_for(browser, lambda d: d.execute_script("return window.seed.readyState") == 2, "closed")
    assert browser.execute_script("return window.seed.opens") == 0
