"""The demo inbox in a real headless Chromium against real `relay serve` processes: events
appear in order and exactly once (counted as DOM nodes by event id), across a relay that is
killed and restarted, and through a proxy that refuses event streams.
"""

from __future__ import annotations

import json
import signal
import urllib.request
from collections import Counter
from urllib.parse import parse_qs, urlsplit

from tests.browser.chromium import demo_state, event_ids, status, wait_for
from tests.browser.conftest import demo_url, publish
from tests.browser.proxy import RefusingProxy
from tests.credentials import API_KEY


def wait_for_ids(browser, expected: list[str]) -> list[str]:
    """Wait for the last expected id to show, then return every id on the page, in order."""
    last = expected[-1]
    wait_for(browser, lambda d: last in event_ids(d), f"event {last} in the page")
    return event_ids(browser)


def assert_exactly_once_in_order(shown: list[str], expected: list[str]) -> None:
    doubled = {i: n for i, n in Counter(shown).items() if n > 1}
    assert not doubled, f"events shown more than once: {doubled}"
    assert shown == expected


def test_published_events_appear_in_order_exactly_once(browser, start_relay):
    relay = start_relay()
    browser.get(demo_url(relay.url))
    wait_for(browser, lambda d: status(d) == "live", "status live")
    expected = []
    for size in (1, 2, 5, 13, 1, 8):  # single events and batches, over three chats
        ids = [f"m{len(expected) + i:02d}" for i in range(size)]
        publish(relay.url, *ids, chat=f"55119000000{len(expected) % 3:02d}")
        expected += ids
    publish(relay.url, "end", chat="5511900000000")
    expected.append("end")

    shown = wait_for_ids(browser, expected)
    assert_exactly_once_in_order(shown, expected)
    state = demo_state(browser)
    assert state["updates"] == expected  # onUpdate calls, not only DOM nodes
    assert state["statuses"] == ["connecting/sse", "live/sse"]
    assert state["resets"] == 0 and state["errors"] == []
    chats = browser.execute_script("return document.querySelectorAll('#chats li').length")
    assert chats == 3


def test_killed_and_restarted_relay_shows_offline_then_live_and_loses_nothing(browser, start_relay):
    relay = start_relay()
    other_replica = start_relay()  # same Redis: takes publishes while `relay` is down
    browser.get(demo_url(relay.url))
    wait_for(browser, lambda d: status(d) == "live", "status live")
    before = [f"a{i}" for i in range(5)]
    publish(relay.url, *before)
    wait_for_ids(browser, before)

    relay.stop(signal.SIGKILL)
    wait_for(browser, lambda d: status(d) == "offline", "status offline after SIGKILL")
    during = [f"b{i}" for i in range(5)]
    publish(other_replica.url, *during)

    relay.start()  # same port, same Redis
    wait_for(browser, lambda d: status(d) == "live", "status live after the restart")
    after = [*(f"c{i}" for i in range(5)), "end"]
    publish(relay.url, *after)

    expected = before + during + after
    shown = wait_for_ids(browser, expected)
    assert_exactly_once_in_order(shown, expected)
    state = demo_state(browser)
    assert state["updates"] == expected
    assert state["statuses"] == ["connecting/sse", "live/sse", "offline/sse", "live/sse"]
    assert state["resets"] == 0


def test_history_trimmed_while_offline_resets_once_then_carries_on(browser, start_relay):
    relay = start_relay(RELAY_MAX_EVENTS="3")
    other_replica = start_relay(RELAY_MAX_EVENTS="3")
    browser.get(demo_url(relay.url))
    wait_for(browser, lambda d: status(d) == "live", "status live")
    publish(relay.url, "a0")
    wait_for_ids(browser, ["a0"])

    relay.stop(signal.SIGKILL)
    wait_for(browser, lambda d: status(d) == "offline", "status offline after SIGKILL")
    # Six events while the page is away: the stream keeps 3, so b0-b2 are trimmed and the
    # page's cursor (a0) is below the stream's low watermark.
    publish(other_replica.url, *(f"b{i}" for i in range(6)))
    relay.start()
    wait_for(browser, lambda d: status(d) == "live", "status live after the restart")
    # "live" means the stream is open, not that it has read yet: publishing "end" now could
    # trim b3 (3 kept) before the page reads it. Wait for b3-b5 first.
    wait_for_ids(browser, ["a0", "b3", "b4", "b5"])
    publish(relay.url, "end")

    expected = ["a0", "b3", "b4", "b5", "end"]
    shown = wait_for_ids(browser, expected)
    assert_exactly_once_in_order(shown, expected)
    state = demo_state(browser)
    assert state["resets"] == 1
    # The reset is announced before the events that follow it.
    items = browser.execute_script(
        "return [...document.querySelectorAll('#messages li')]"
        ".map(node => node.dataset.eventId ?? node.className)"
    )
    assert items == ["a0", "notice", "b3", "b4", "b5", "end"]


def test_sse_refused_by_a_proxy_falls_back_to_long_poll_and_delivers_everything(
    browser, start_relay
):
    relay = start_relay()
    proxy = RefusingProxy(relay.url).start()
    try:
        browser.get(demo_url(proxy.url))
        wait_for(browser, lambda d: status(d) == "polling", "status polling")
        assert browser.find_element("id", "status").get_attribute("data-transport") == "longpoll"
        wait_for(
            browser,
            lambda d: any("wait=" in r for r in proxy.requests),
            "a long-poll request through the proxy",
        )
        expected = [f"p{i:02d}" for i in range(20)] + ["end"]
        for start in range(0, len(expected), 7):
            publish(relay.url, *expected[start : start + 7])

        shown = wait_for_ids(browser, expected)
        assert_exactly_once_in_order(shown, expected)
        state = demo_state(browser)
        assert state["updates"] == expected
        assert state["statuses"] == ["connecting/sse", "connecting/longpoll", "polling/longpoll"]
        # Exactly refusalsBeforeFallback (3) refused event streams, then no more.
        assert len(proxy.refused) == 3
        polls = [r for r in proxy.requests if r.startswith("/api/chats/check-updates/")]
        long_polls = [r for r in polls if "wait=" in r]
        assert long_polls and all(parse_qs(urlsplit(r).query)["wait"] == ["25"] for r in long_polls)
        # The cursor travels encoded: %2B for its +, never a raw + that would become a space.
        echoed = [r for r in polls if "last_check=" in r]
        assert echoed and all("%2B00%3A00" in r and "+" not in r for r in echoed)
    finally:
        proxy.stop()


def test_an_event_whose_text_is_not_a_string_is_shown_as_json(browser, start_relay):
    relay = start_relay()
    browser.get(demo_url(relay.url))
    wait_for(browser, lambda d: status(d) == "live", "status live")
    texts = {
        "t-object": {"body": "oi", "lines": [1, 2]},
        "t-number": 42,
        "t-list": ["a", "b"],
        "t-false": False,
        "t-string": "plain",
    }
    events = [
        {
            "account": "acme",
            "type": "message.created",
            "id": event_id,
            "chat_id": "c1",
            "data": {"text": value, "from": {"id": 7}},
        }
        for event_id, value in texts.items()
    ]
    request = urllib.request.Request(
        f"{relay.url}/api/publish",
        data=json.dumps(events).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201

    expected = list(texts)
    assert_exactly_once_in_order(wait_for_ids(browser, expected), expected)
    shown = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#messages li')].map("
        "n => [n.dataset.eventId, n.childNodes[1].textContent]))"
    )
    assert shown == {
        "t-object": '{"body":"oi","lines":[1,2]}',
        "t-number": "42",
        "t-list": '["a","b"]',
        "t-false": "false",
        "t-string": "plain",
    }
    senders = browser.execute_script(
        "return [...document.querySelectorAll('#messages li .from')].map(n => n.textContent)"
    )
    assert senders == ["7"] * 5
    assert demo_state(browser)["errors"] == []


def test_the_help_box_names_this_pages_own_address(browser, start_relay):
    relay = start_relay()
    browser.get(f"{relay.url}/demo")
    wait_for(browser, lambda d: status(d) == "offline", "status offline without a token")
    help_text = browser.execute_script("return document.getElementById('help').innerText")
    assert f'echo "{relay.url}/demo?token=$TOKEN"' in help_text
    assert f"relay publish --url {relay.url} " in help_text
    assert "localhost:8080" not in help_text and "open " not in help_text.replace("# open", "")
