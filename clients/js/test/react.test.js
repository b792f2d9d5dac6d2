import assert from "node:assert/strict";
import { test } from "node:test";

import { createElement } from "react";
import TestRenderer from "react-test-renderer";

import { useRelayUpdates } from "../react.js";
import { FakeClock, FakeRelay } from "./fakes.js";

globalThis.IS_REACT_ACT_ENVIRONMENT = true;
const { act } = TestRenderer;

function mount(relay, props) {
  const clock = new FakeClock();
  const seen = { messages: [], chats: [], results: [] };
  function Inbox(p) {
    const result = useRelayUpdates({
      url: "https://relay.test",
      fetch: relay.fetch,
      EventSource: relay.EventSource,
      setTimeout: clock.setTimeout,
      clearTimeout: clock.clearTimeout,
      now: clock.now,
      random: () => 0.5,
      onNewMessage: (message, update) => seen.messages.push(update.id),
      onChatUpdate: (chatId, data) => seen.chats.push([chatId, data]),
      ...p,
    });
    seen.results.push(result);
    return null;
  }
  let renderer;
  act(() => {
    renderer = TestRenderer.create(createElement(Inbox, props));
  });
  const rerender = (next) => act(() => renderer.update(createElement(Inbox, next)));
  return { clock, seen, renderer, rerender, Inbox };
}

test("useRelayUpdates: old hook's shape, live status, messages and chat updates", async () => {
  const relay = new FakeRelay();
  const { clock, seen, renderer } = mount(relay, { token: "t1" });
  assert.equal(seen.results.at(-1).status, "connecting");
  assert.equal(seen.results.at(-1).isConnected, false);
  await act(() => clock.advance(0));
  const now = seen.results.at(-1);
  assert.equal(now.status, "live");
  assert.equal(now.isConnected, true);
  assert.equal(now.transport, "sse");
  assert.equal(typeof now.reconnect, "function");

  await act(async () => {
    relay.publish("m1", "m2", { id: "c1-up", type: "chat.updated", data: { name: "Ana" } }, "m3");
    await clock.advance(0);
  });
  assert.deepEqual(seen.messages, ["m1", "m2", "m3"]);
  assert.deepEqual(seen.chats, [["c1", { name: "Ana" }]]);
  assert.equal(seen.results.at(-1).lastUpdate.id, "m3");

  act(() => renderer.unmount());
  assert.equal(relay.openSources.length, 0, "unmount stops the client");
  assert.equal(clock.timers.size, 0);
});

test("useRelayUpdates: a new token reconnects from the same cursor, no gap, no repeat", async () => {
  const relay = new FakeRelay({ tokens: ["t1", "t2"] });
  const { clock, seen, rerender, renderer } = mount(relay, { token: "t1" });
  await act(() => clock.advance(0));
  await act(async () => {
    relay.publish("a", "b");
    await clock.advance(0);
  });
  rerender({ token: "t2" });
  relay.publish("c"); // between the two connections
  await act(() => clock.advance(0));
  await act(async () => {
    relay.publish("d");
    await clock.advance(0);
  });
  assert.deepEqual(seen.messages, ["a", "b", "c", "d"]);
  const last = relay.sources.at(-1);
  assert.equal(last.params.get("token"), "t2");
  assert.equal(last.params.get("last_check"), relay.events[1].timestamp);
  assert.equal(relay.openSources.length, 1);
  act(() => renderer.unmount());
});

test("useRelayUpdates: enabled=false does not connect", async () => {
  const relay = new FakeRelay();
  const { clock, seen, renderer } = mount(relay, { token: "t1", enabled: false });
  await act(() => clock.advance(0));
  assert.equal(seen.results.at(-1).status, "offline");
  assert.equal(relay.requests.length + relay.sources.length, 0);
  act(() => renderer.unmount());
});
