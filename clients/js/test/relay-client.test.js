import assert from "node:assert/strict";
import { test } from "node:test";

import { backoffDelay, buildUrl, connect, decodeClaims, refreshDelay } from "../relay-client.js";
import { FakeClock, FakeRelay, fakeJwt, flush } from "./fakes.js";

/** Connect a client to a fake relay on a fake clock, recording everything it reports. */
function start(relay, options = {}) {
  const clock = options.clock ?? new FakeClock();
  relay.fakeClock = clock;
  const seen = { updates: [], statuses: [], resets: [], errors: [] };
  const client = connect({
    url: "https://relay.test",
    token: "t1",
    fetch: relay.fetch,
    EventSource: relay.EventSource,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    random: () => 0.5,
    onUpdate: (update) => seen.updates.push(update.id),
    onStatus: (status, { transport }) => seen.statuses.push(`${status}/${transport}`),
    onReset: (info) => seen.resets.push(info),
    onError: (error) => seen.errors.push(error.code ?? error.message),
    ...options,
  });
  return { client, clock, seen };
}

const pollsOf = (relay) => relay.requests.filter((r) => !r.params.has("wait"));
const longPollsOf = (relay) => relay.requests.filter((r) => r.params.has("wait"));

// -- pure helpers -------------------------------------------------------------------

test("backoff is full jitter within [0, min(max, base * 2^attempt))", () => {
  for (let attempt = 0; attempt < 40; attempt++) {
    const ceiling = Math.min(30000, 500 * 2 ** attempt);
    assert.equal(backoffDelay(attempt, 500, 30000, () => 0), 0);
    assert.equal(backoffDelay(attempt, 500, 30000, () => 0.5), Math.floor(ceiling / 2));
    const top = backoffDelay(attempt, 500, 30000, () => 0.999999);
    assert.ok(top < ceiling && top >= ceiling - 1, `attempt ${attempt}: ${top}`);
  }
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, 500, 30000, () => 0.5)),
    [250, 500, 1000, 2000, 4000, 8000, 15000, 15000],
  );
  for (let i = 0; i < 1000; i++) {
    const delay = backoffDelay(100, 500, 30000);
    assert.ok(delay >= 0 && delay < 30000 && Number.isInteger(delay));
  }
});

test("buildUrl encodes + as %2B and leaves out empty parameters", () => {
  const url = buildUrl("https://relay.test/", "/api/chats/check-updates/", {
    last_check: "2025-07-19T03:54:04.574010+00:00",
    wait: undefined,
    limit: null,
    token: "a.b+c/d=",
  });
  assert.equal(
    url,
    "https://relay.test/api/chats/check-updates/" +
      "?last_check=2025-07-19T03%3A54%3A04.574010%2B00%3A00&token=a.b%2Bc%2Fd%3D",
  );
  assert.equal(new URL(url).searchParams.get("last_check"), "2025-07-19T03:54:04.574010+00:00");
  assert.equal(buildUrl("", "/p", {}), "/p");
});

test("the JWT's exp is decoded without verifying, and refresh is scheduled before it", () => {
  const iat = 1_700_000_000;
  const token = fakeJwt({ sub: "agente-joão", account: "acme", iat, exp: iat + 3600 });
  assert.equal(decodeClaims(token).sub, "agente-joão");
  // The lifetime counts from receipt: a browser clock a day off changes nothing.
  assert.equal(refreshDelay(token, 60, (iat + 86400) * 1000), 3540 * 1000);
  assert.equal(refreshDelay(fakeJwt({ iat, exp: iat + 60 }), 60), 30 * 1000);
  assert.equal(refreshDelay(fakeJwt({ exp: iat + 600 }), 60, iat * 1000), 540 * 1000);
  assert.equal(refreshDelay("opaque-token", 60), null);
  assert.equal(decodeClaims("not.a-jwt.at-all"), null);
});

// -- SSE -------------------------------------------------------------------------------

test("SSE: learns the server's cursor first, then streams every event once, in order", async () => {
  const relay = new FakeRelay();
  const { client, clock, seen } = start(relay);
  await clock.advance(0);
  assert.equal(pollsOf(relay).length, 1);
  assert.equal(pollsOf(relay)[0].params.has("last_check"), false);
  assert.equal(relay.sources.length, 1);
  const sse = relay.sources[0].params;
  assert.equal(sse.get("last_check"), "2025-07-19T03:54:01.000000+00:00");
  assert.match(relay.sources[0].url, /last_check=2025-07-19T03%3A54%3A01.000000%2B00%3A00/);
  assert.equal(sse.get("token"), "t1");
  assert.deepEqual(seen.statuses, ["connecting/sse", "live/sse"]);

  relay.publish("m1", "m2", "m3");
  relay.publish("m4");
  await flush();
  assert.deepEqual(seen.updates, ["m1", "m2", "m3", "m4"]);
  assert.equal(client.cursor, relay.events.at(-1).timestamp);
  assert.equal(client.status, "live");
  client.stop();
});

test("SSE: a killed relay shows offline, reconnects with backoff, loses and doubles nothing", async () => {
  const relay = new FakeRelay();
  const { client, clock, seen } = start(relay);
  await clock.advance(0);
  relay.publish("a", "b");
  await flush();

  relay.kill();
  await flush();
  assert.equal(client.status, "offline");
  assert.equal(relay.openSources.length, 0, "the client closed the source itself");
  // Published through another replica while this one is down.
  relay.publish("c", "d");
  // Retries: probe fails each time; delays follow the jittered ceiling 500, 1000, 2000...
  const delays = [];
  for (let i = 0; i < 5; i++) {
    delays.push(clock.pending()[0]);
    await clock.advance(clock.pending()[0]);
  }
  assert.deepEqual(delays, [250, 500, 1000, 2000, 4000]);
  assert.equal(relay.sources.length, 6);

  relay.restart();
  await clock.advance(clock.pending()[0]);
  assert.equal(client.status, "live");
  const resumed = relay.sources.at(-1).params.get("last_check");
  assert.equal(resumed, relay.events[1].timestamp, "resumes from the last event it got");
  relay.publish("e");
  await flush();
  assert.deepEqual(seen.updates, ["a", "b", "c", "d", "e"]);
  assert.deepEqual(seen.statuses, ["connecting/sse", "live/sse", "offline/sse", "live/sse"]);
  client.stop();
});

test("SSE event: reset calls onReset and does not move the cursor", async () => {
  const relay = new FakeRelay();
  const { client, clock, seen } = start(relay, { lastCheck: "2025-07-19T03:54:00.000001+00:00" });
  relay.publish("m1", "m2", "m3");
  relay.low = 1_000_001; // history before m1 was trimmed: the client's cursor is too old
  await clock.advance(0);
  assert.equal(seen.resets.length, 1);
  assert.equal(seen.resets[0].reset, true);
  assert.deepEqual(seen.updates, ["m1", "m2", "m3"]);
  assert.equal(client.cursor, relay.events.at(-1).timestamp);
  client.stop();
});

test("SSE: a reset with no event after it is announced once across reconnects", async () => {
  const relay = new FakeRelay();
  const { client, clock, seen } = start(relay, { lastCheck: "2025-07-19T03:54:00.000001+00:00" });
  relay.publish("m1");
  relay.trim(0); // everything trimmed: the stream has nothing visible after the reset
  await clock.advance(0);
  assert.equal(seen.resets.length, 1);
  relay.kill();
  relay.restart();
  await flush();
  await clock.advance(clock.pending()[0]);
  assert.equal(relay.sources.length, 2);
  assert.equal(relay.sources[1].params.get("last_check"), seen.resets[0].timestamp);
  assert.equal(seen.resets.length, 1, "not announced again");
  relay.publish("m2");
  await flush();
  assert.deepEqual(seen.updates, ["m2"]);
  client.stop();
});

// -- fallback --------------------------------------------------------------------------

test("fallback order: SSE refused 3 times, then long-poll, then plain polling", async () => {
  const relay = new FakeRelay();
  relay.refuseSse = true;
  relay.refuseLongPoll = true;
  const { client, clock, seen } = start(relay);
  relay.publish("before-connect"); // not delivered: a new client starts from now
  await clock.advance(0);
  for (let i = 0; i < 6; i++) await clock.advance(clock.pending()[0]);
  assert.equal(relay.sources.length, 3, "exactly refusalsBeforeFallback SSE attempts");
  assert.equal(longPollsOf(relay).length, 3, "then exactly 3 refused long-polls");
  assert.equal(client.transport, "poll");
  assert.equal(client.status, "polling");
  assert.deepEqual(seen.statuses, [
    "connecting/sse",
    "connecting/longpoll",
    "polling/longpoll", // its opening plain poll worked; its long-polls were cut
    "polling/poll",
  ]);

  relay.publish("p1", "p2");
  await clock.advance(3000);
  relay.publish("p3");
  await clock.advance(3000);
  assert.deepEqual(seen.updates, ["p1", "p2", "p3"]);
  assert.equal(relay.sources.length, 3, "no SSE attempt until upgradeAfter");
  client.stop();
});

test("SSE refused: long-poll delivers every event once, in order", async () => {
  const relay = new FakeRelay();
  relay.refuseSse = true;
  const { client, clock, seen } = start(relay);
  await clock.advance(0);
  while (client.transport === "sse") await clock.advance(clock.pending()[0]);
  await flush();
  assert.equal(relay.sources.length, 3);
  assert.equal(client.status, "polling");
  assert.equal(client.transport, "longpoll");
  for (let i = 0; i < 20; i++) {
    relay.publish(`m${i}`);
    if (i % 3 === 0) await flush();
  }
  await flush();
  assert.deepEqual(
    seen.updates,
    Array.from({ length: 20 }, (_, i) => `m${i}`),
  );
  for (const request of longPollsOf(relay)) assert.equal(request.params.get("wait"), "25");
  client.stop();
});

test("a fallback tries SSE again after upgradeAfter", async () => {
  const relay = new FakeRelay();
  relay.refuseSse = true;
  const { client, clock, seen } = start(relay, { upgradeAfter: 60000 });
  await clock.advance(0);
  while (client.transport === "sse") await clock.advance(clock.pending()[0]);
  relay.refuseSse = false;
  await clock.advance(60000);
  // The pending long-poll is answered by the next event; then the client upgrades.
  relay.publish("x");
  await flush();
  assert.equal(client.transport, "sse");
  assert.equal(client.status, "live");
  relay.publish("y");
  await flush();
  assert.deepEqual(seen.updates, ["x", "y"]);
  client.stop();
});

test("plain polling echoes the server's timestamp verbatim, never the browser clock", async () => {
  const relay = new FakeRelay();
  // The browser's clock is a year off: it must not matter.
  const clock = new FakeClock(Date.UTC(2027, 5, 1));
  const { client, seen } = start(relay, { transports: ["poll"], clock });
  await clock.advance(0);
  for (let i = 0; i < 5; i++) {
    relay.publish(`m${i}`);
    await clock.advance(3000);
  }
  const requests = pollsOf(relay);
  assert.equal(requests.length, 6);
  assert.equal(requests[0].params.get("last_check"), null, "the first poll asks for 'now'");
  for (let i = 1; i < requests.length; i++) {
    // Each request sends back exactly the timestamp of the answer before it, encoded.
    assert.equal(requests[i].params.get("last_check"), requests[i - 1].answer);
    assert.match(requests[i].url, /last_check=2025-07-19T03%3A54%3A\d\d\.\d{6}%2B00%3A00/);
    assert.doesNotMatch(requests[i].url, /[+ ]/);
  }
  client.stop();
  assert.deepEqual(seen.updates, ["m0", "m1", "m2", "m3", "m4"]);
});

test("a poll answer with reset: true calls onReset before its updates", async () => {
  const relay = new FakeRelay();
  const order = [];
  const { client, clock } = start(relay, {
    transports: ["poll"],
    lastCheck: "2025-07-19T03:54:00.000001+00:00",
    onReset: () => order.push("reset"),
    onUpdate: (u) => order.push(u.id),
  });
  relay.publish("m1", "m2", "m3");
  relay.trim(2);
  await clock.advance(0);
  assert.deepEqual(order, ["reset", "m2", "m3"]);
  await clock.advance(3000);
  assert.deepEqual(order, ["reset", "m2", "m3"], "the next poll, from the new cursor, is clean");
  client.stop();
});

// -- tokens ----------------------------------------------------------------------------

test("the token is refreshed before exp and the SSE stream reconnects with it, no gap", async () => {
  const iat = Math.floor(Date.UTC(2026, 0, 1) / 1000);
  const first = fakeJwt({ sub: "u", account: "acme", iat, exp: iat + 120 });
  const second = fakeJwt({ sub: "u", account: "acme", iat: iat + 60, exp: iat + 180 });
  const relay = new FakeRelay({ tokens: [first, second] });
  let calls = 0;
  const { client, clock, seen } = start(relay, {
    token: first,
    getToken: async () => {
      calls += 1;
      return second;
    },
  });
  await clock.advance(0);
  relay.publish("a");
  await flush();
  await clock.advance(59999);
  assert.equal(calls, 0);
  relay.publish("b");
  await clock.advance(1);
  assert.equal(calls, 1, "refreshed refreshBefore (60 s) before exp");
  assert.equal(relay.sources.length, 2);
  assert.equal(relay.sources[0].readyState, 2, "the old stream is closed");
  assert.equal(relay.sources[1].params.get("token"), second);
  assert.equal(relay.sources[1].params.get("last_check"), relay.events[1].timestamp);
  relay.publish("c");
  await flush();
  assert.deepEqual(seen.updates, ["a", "b", "c"]);
  assert.deepEqual(seen.statuses, ["connecting/sse", "live/sse"], "no flicker on refresh");
  client.stop();
});

test("a stream ended by token_expired gets a new token and resumes where it was", async () => {
  const relay = new FakeRelay({ tokens: ["old", "new"] });
  let calls = 0;
  const { client, clock, seen } = start(relay, {
    token: "old",
    getToken: async () => {
      calls += 1;
      return "new";
    },
  });
  await clock.advance(0);
  relay.publish("a", "b");
  await flush();
  relay.expireStreams("old");
  relay.publish("c"); // while no stream is open
  await flush();
  await clock.advance(0);
  assert.equal(calls, 1);
  const last = relay.sources.at(-1);
  assert.equal(last.params.get("token"), "new");
  assert.equal(last.params.get("last_check"), relay.events[1].timestamp, "resumes after b");
  relay.publish("d");
  await flush();
  assert.deepEqual(seen.updates, ["a", "b", "c", "d"]);
  assert.deepEqual(seen.errors, [], "an expected expiry is not an error");
  assert.deepEqual(seen.statuses, ["connecting/sse", "live/sse"]);
  client.stop();
});

test("long-polls carry a refreshed token from their next request on", async () => {
  const iat = Math.floor(Date.UTC(2026, 0, 1) / 1000);
  const first = fakeJwt({ sub: "u", account: "acme", iat, exp: iat + 120 });
  const second = fakeJwt({ sub: "u", account: "acme", iat: iat + 60, exp: iat + 180 });
  const relay = new FakeRelay({ tokens: [first, second] });
  const { client, clock, seen } = start(relay, {
    token: first,
    getToken: async () => second,
    transports: ["longpoll"],
  });
  await clock.advance(60000); // long-polls of 25 s came and went; the refresh is due now
  const sent = relay.requests.length;
  assert.ok(relay.requests.every((r) => r.token === first));
  relay.publish("a"); // answers the long-poll that was sent with the old token
  await flush();
  relay.publish("b");
  await flush();
  assert.deepEqual(
    relay.requests.slice(sent).map((r) => r.token),
    [second, second],
  );
  assert.deepEqual(seen.updates, ["a", "b"]);
  client.stop();
});

test("a failing getToken is reported and retried with backoff", async () => {
  const relay = new FakeRelay({ tokens: ["fresh"] });
  let calls = 0;
  const { client, clock, seen } = start(relay, {
    token: "expired",
    transports: ["poll"],
    getToken: async () => {
      calls += 1;
      if (calls < 3) throw new Error("auth server down");
      return "fresh";
    },
  });
  await clock.advance(0);
  assert.equal(calls, 1);
  assert.equal(client.status, "offline");
  assert.deepEqual(clock.pending(), [250]);
  await clock.advance(250);
  assert.equal(calls, 2);
  assert.deepEqual(clock.pending(), [500]);
  await clock.advance(500);
  assert.equal(calls, 3);
  assert.equal(client.status, "polling");
  assert.deepEqual(relay.requests.map((r) => r.token), ["expired", "expired", "expired", "fresh"]);
  const failures = ["token_refresh_failed", "token_expired"];
  assert.deepEqual(seen.errors, [...failures, ...failures]);
  client.stop();
});

test("a 401 asks getToken for a new token and retries at once", async () => {
  const relay = new FakeRelay({ tokens: ["fresh"] });
  let calls = 0;
  const { client, clock, seen } = start(relay, {
    token: "expired",
    transports: ["poll"],
    getToken: async () => {
      calls += 1;
      return "fresh";
    },
  });
  await clock.advance(0);
  assert.equal(calls, 1);
  assert.deepEqual(
    relay.requests.map((r) => r.token),
    ["expired", "fresh"],
  );
  assert.equal(client.status, "polling");
  assert.deepEqual(seen.errors, []);
  client.stop();
});

test("a 401 without getToken reports the error, shows offline and stops", async () => {
  const relay = new FakeRelay({ tokens: ["other"] });
  const { clock, seen } = start(relay, { token: "expired" });
  await clock.advance(0);
  await clock.advance(60000);
  assert.deepEqual(seen.errors, ["token_expired"]);
  assert.deepEqual(seen.statuses, ["connecting/sse", "offline/sse"]);
  assert.equal(relay.requests.length, 1);
  assert.equal(clock.timers.size, 0);
});

// -- stop and robustness ---------------------------------------------------------------

test("stop() closes the stream, aborts the long-poll, clears timers, and goes quiet", async () => {
  const relay = new FakeRelay();
  const { client, clock, seen } = start(relay, { transports: ["longpoll"] });
  await clock.advance(0);
  assert.equal(relay.waiters.size, 1, "a long-poll is pending");
  client.stop();
  await flush();
  assert.equal(relay.waiters.size, 0, "and was aborted");
  assert.equal(clock.timers.size, 0);
  relay.publish("late");
  await clock.advance(120000);
  assert.deepEqual(seen.updates, []);
  assert.deepEqual(seen.errors, []);
  const requests = relay.requests.length;
  await clock.advance(600000);
  assert.equal(relay.requests.length, requests);

});

test("stop() closes an open EventSource", async () => {
  const relay = new FakeRelay();
  const { client, clock, seen } = start(relay);
  await clock.advance(0);
  assert.equal(relay.openSources.length, 1);
  client.stop();
  assert.equal(relay.openSources.length, 0);
  relay.publish("late");
  await flush();
  assert.deepEqual(seen.updates, []);
});

test("a throwing onUpdate is reported and does not stall the stream", async () => {
  const relay = new FakeRelay();
  const got = [];
  const { client, clock, seen } = start(relay, {
    onUpdate: (u) => {
      got.push(u.id);
      if (u.id === "bad") throw new Error("handler bug");
    },
  });
  await clock.advance(0);
  relay.publish("ok1", "bad", "ok2");
  await flush();
  assert.deepEqual(got, ["ok1", "bad", "ok2"]);
  assert.deepEqual(seen.errors, ["handler bug"]);
  assert.equal(client.cursor, relay.events.at(-1).timestamp);
  client.stop();
});

test("connect() refuses options it cannot work with", () => {
  assert.throws(() => connect({ token: "t" }), /onUpdate/);
  assert.throws(() => connect({ onUpdate() {} }), /token/);
  assert.throws(
    () => connect({ token: "t", onUpdate() {}, transports: ["sse"], EventSource: undefined }),
    /no usable transport/,
  );
});
