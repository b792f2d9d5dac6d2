"""An SSE stream ends when its token expires (`event: token_expired`), and the JS client in
a real Chromium gets a new token from `getToken` and resumes from its last event id: every
event published across several short token lifetimes arrives once, in order."""

from __future__ import annotations

import time
from collections import Counter

import jwt

from tests.browser.chromium import status, wait_for
from tests.browser.conftest import demo_url, publish
from tests.credentials import JWT_SECRET

LIFETIME = 4  # seconds per token


def short_tokens(count: int) -> list[str]:
    now = int(time.time())
    return [
        jwt.encode(
            {"sub": "agent-1", "account": "acme", "iat": now, "exp": now + LIFETIME * (k + 1)},
            JWT_SECRET,
            algorithm="HS256",
        )
        for k in range(count)
    ] + [jwt.encode({"sub": "agent-1", "account": "acme", "exp": now + 600}, JWT_SECRET)]


CONNECT = """
const [tokens, done] = [arguments[0], arguments[arguments.length - 1]];
window.relayDemo.client.stop();  // the demo's own connection: this test makes its own
import("/demo/relay-client.js").then(({ connect }) => {
  const probe = (window.probe = { ids: [], errors: [], statuses: [], tokens: 0 });
  probe.client = connect({
    url: "",
    token: tokens[0],
    transports: ["sse"],
    // No refresh timer (a tab the browser throttled, a laptop that slept): only relay's
    // token_expired can make the client ask for a new token.
    refreshBefore: -3600,
    getToken: async () => tokens[Math.min(++probe.tokens, tokens.length - 1)],
    onUpdate: (update) => probe.ids.push(update.id),
    onError: (error) => probe.errors.push(error.code ?? String(error)),
    onStatus: (status, { transport }) => probe.statuses.push(`${status}/${transport}`),
  });
  done(true);
}, (error) => done(String(error)));
"""


def test_an_expired_token_ends_the_stream_and_the_client_resumes_with_a_new_one(
    browser, start_relay
):
    relay = start_relay(RELAY_JWT_LEEWAY="1s")
    browser.get(demo_url(relay.url))
    wait_for(browser, lambda d: status(d) == "live", "status live")
    browser.set_script_timeout(10)
    assert browser.execute_async_script(CONNECT, short_tokens(3)) is True
    wait_for(
        browser,
        lambda d: d.execute_script("return window.probe.statuses.at(-1)") == "live/sse",
        "the probe's stream live",
    )

    expected = []
    deadline = time.monotonic() + LIFETIME * 3 + 2  # past three token lifetimes
    while time.monotonic() < deadline:
        ids = [f"m{len(expected):03d}"]
        publish(relay.url, *ids)
        expected += ids
        time.sleep(0.2)
    publish(relay.url, "end")
    expected.append("end")

    wait_for(
        browser,
        lambda d: "end" in d.execute_script("return window.probe.ids"),
        "the last event",
    )
    probe = browser.execute_script("return window.probe")
    doubled = {i: n for i, n in Counter(probe["ids"]).items() if n > 1}
    print(f"{len(expected)} events, {probe['tokens']} new tokens, errors {probe['errors']}")
    assert not doubled, f"events shown more than once: {doubled}"
    assert probe["ids"] == expected
    assert probe["tokens"] >= 3  # each short token ended its stream
    assert probe["errors"] == []  # an expected expiry is not an error
    assert set(probe["statuses"]) == {"connecting/sse", "live/sse"}
