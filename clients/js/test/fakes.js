// Fakes for the unit tests: a manual clock, and a small in-memory relay that answers
// check-updates (poll and long-poll) through a fake fetch and streams through a fake
// EventSource, with the same cursor rules as the real one.

export const flush = async (rounds = 30) => {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
};

export class FakeClock {
  constructor(start = Date.UTC(2026, 0, 1)) {
    this.t = start;
    this.timers = new Map();
    this.nextId = 1;
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.t + ms, ms, fn });
      return id;
    };
    this.clearTimeout = (id) => this.timers.delete(id);
    this.now = () => this.t;
  }

  /** Delays (ms) of the timers pending now, shortest first. */
  pending() {
    return [...this.timers.values()].map((t) => t.at - this.t).sort((a, b) => a - b);
  }

  /** Run every timer due within `ms`, in order, letting promises settle after each. */
  async advance(ms) {
    const end = this.t + ms;
    await flush();
    for (;;) {
      let next = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && (!next || timer.at < next[1].at)) next = [id, timer];
      }
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
      await flush();
    }
    this.t = end;
    await flush();
  }
}

const cursorText = (n) => {
  const seconds = String(Math.floor(n / 1e6) % 60).padStart(2, "0");
  const micros = String(n % 1e6).padStart(6, "0");
  return `2025-07-19T03:54:${seconds}.${micros}+00:00`;
};
const CURSOR = /^2025-07-19T03:54:(\d\d)\.(\d{6})\+00:00$/;

function parseCursor(text) {
  // Strict on purpose: a `+` that arrives as a space (the old bug) is a 400 here.
  const match = CURSOR.exec(text);
  return match ? Number(match[1]) * 1e6 + Number(match[2]) : null;
}

function jsonResponse(status, body) {
  return { status, ok: status >= 200 && status < 300, json: async () => body };
}

export class FakeRelay {
  constructor({ tokens = ["t1"] } = {}) {
    this.clock = 1_000_000; // microseconds, the store's clock
    this.low = 0; // low watermark: cursors below it answer reset
    this.events = [];
    this.up = true;
    this.refuseSse = false; // like the old proxy: 406 to text/event-stream
    this.refuseLongPoll = false; // like a proxy that cuts long requests: 504
    this.validTokens = new Set(tokens);
    this.requests = []; // every fetch: { url, params, token }
    this.sources = []; // every EventSource ever made
    this.waiters = new Set();
    this.fakeClock = null; // set by the test: long-polls then end after their wait
    const relay = this;
    this.fetch = (url, init) => relay.handleFetch(url, init);
    this.EventSource = class FakeEventSource {
      constructor(url) {
        this.url = url;
        this.params = new URL(url, "http://relay.test").searchParams;
        this.readyState = 0;
        this.listeners = {};
        this.onopen = this.onmessage = this.onerror = null;
        relay.sources.push(this);
        setImmediate(() => relay.openSource(this));
      }
      addEventListener(name, fn) {
        (this.listeners[name] ??= []).push(fn);
      }
      close() {
        this.readyState = 2;
      }
    };
  }

  get openSources() {
    return this.sources.filter((s) => s.readyState === 1);
  }

  /** Append events: an id (a message.created in chat c1) or an object of fields. */
  publish(...items) {
    for (const item of items) {
      this.clock += 1;
      const fields = typeof item === "string" ? { id: item } : item;
      const event = { type: "message.created", chat_id: "c1", data: { text: fields.id } };
      this.events.push({ ...event, ...fields, timestamp: cursorText(this.clock) });
    }
    if (!this.up) return;
    for (const source of this.openSources) this.pushTo(source);
    for (const waiter of [...this.waiters]) waiter();
  }

  /** Drop everything older than the newest `keep` events (history trimmed). */
  trim(keep) {
    const dropped = this.events.splice(0, this.events.length - keep);
    if (dropped.length) this.low = parseCursor(dropped.at(-1).timestamp);
  }

  kill() {
    this.up = false;
    for (const source of this.openSources) {
      source.readyState = 0;
      source.onerror?.({});
    }
    for (const waiter of [...this.waiters]) waiter(new TypeError("fetch failed"));
  }

  restart() {
    this.up = true;
  }

  /** Like relay at a token's exp + leeway: `event: token_expired`, then the stream ends. */
  expireStreams(token) {
    this.validTokens.delete(token);
    for (const source of this.openSources) {
      if (source.params.get("token") !== token) continue;
      for (const fn of source.listeners.token_expired ?? []) fn({ data: '{"error":"token_expired"}' });
      source.readyState = 2;
      source.onerror?.({});
    }
  }

  page(since) {
    if (since === null) return { timestamp: cursorText(this.clock), updates: [], reset: false };
    const updates = this.events.filter((e) => parseCursor(e.timestamp) > since);
    return { timestamp: cursorText(this.clock), updates, reset: since < this.low };
  }

  async handleFetch(url, init = {}) {
    const params = new URL(url, "http://relay.test").searchParams;
    const token = (init.headers?.Authorization ?? "").replace(/^Bearer /, "");
    const request = { url, params, token, answer: null };
    this.requests.push(request);
    await new Promise((resolve) => setImmediate(resolve));
    if (init.signal?.aborted) throw new DOMException("aborted", "AbortError");
    if (!this.up) throw new TypeError("fetch failed");
    if (!this.validTokens.has(token)) return jsonResponse(401, { error: "token_expired" });
    const raw = params.get("last_check");
    const since = raw === null ? null : parseCursor(raw);
    if (raw !== null && since === null) return jsonResponse(400, { error: "bad_last_check" });
    const wait = Number(params.get("wait") ?? 0);
    if (wait > 0 && this.refuseLongPoll) return jsonResponse(504, { error: "gateway_timeout" });
    let page = this.page(since);
    if (wait > 0 && since !== null && !page.updates.length && !page.reset) {
      await new Promise((resolve, reject) => {
        let timer = null;
        const waiter = (error) => {
          this.waiters.delete(waiter);
          if (timer !== null) this.fakeClock.clearTimeout(timer);
          error ? reject(error) : resolve();
        };
        this.waiters.add(waiter);
        // Like relay, a long-poll answers empty once its wait is over.
        if (this.fakeClock) timer = this.fakeClock.setTimeout(() => waiter(), wait * 1000);
        init.signal?.addEventListener("abort", () =>
          waiter(new DOMException("aborted", "AbortError")),
        );
      });
      page = this.page(since);
    }
    request.answer = page.timestamp;
    return jsonResponse(200, { ...page, has_updates: page.updates.length > 0, more: false });
  }

  openSource(source) {
    if (source.readyState === 2) return;
    const token = source.params.get("token");
    if (!this.up || this.refuseSse || !this.validTokens.has(token)) {
      source.readyState = 2;
      source.onerror?.({});
      return;
    }
    source.readyState = 1;
    source.since = parseCursor(source.params.get("last_check") ?? "") ?? this.clock;
    source.onopen?.({});
    this.pushTo(source);
  }

  pushTo(source) {
    const page = this.page(source.since);
    if (page.reset) {
      const data = JSON.stringify({ timestamp: page.timestamp, reset: true });
      for (const fn of source.listeners.reset ?? []) fn({ data });
    }
    for (const event of page.updates) {
      if (source.readyState !== 1) return;
      source.since = parseCursor(event.timestamp);
      source.onmessage?.({ data: JSON.stringify(event), lastEventId: event.timestamp });
    }
    source.since = this.clock;
  }
}

/** An unsigned JWT-shaped token with these claims (the client never verifies it). */
export function fakeJwt(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}.c2lnbmF0dXJl`;
}
