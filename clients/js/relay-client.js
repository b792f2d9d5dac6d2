// relay-client: live updates from relay in the browser, with no dependencies.
//
// SSE when it works, long-poll when a proxy refuses event streams, plain polling when long
// requests are cut too. The cursor is always the server's (`timestamp`, or an SSE event's
// id), never the browser's clock, so a reconnect resumes without a gap or a duplicate.

export const SSE_PATH = "/api/chats/realtime-updates/";
export const POLL_PATH = "/api/chats/check-updates/";
export const TRANSPORTS = Object.freeze(["sse", "longpoll", "poll"]);

const DEFAULTS = {
  url: "",
  transports: TRANSPORTS,
  wait: 25, // long-poll seconds (relay caps it at RELAY_LONGPOLL_MAX_WAIT, 30s by default)
  pollInterval: 3000, // ms between plain polls
  requestTimeout: 10000, // ms a request may take beyond its long-poll wait
  backoffBase: 500, // ms: first retry is within [0, 500)
  backoffMax: 30000, // ms: no retry waits longer than this
  refusalsBeforeFallback: 3, // a transport failing while plain polls succeed, this many times
  upgradeAfter: 300000, // ms in a fallback transport before trying SSE again (0: never)
  refreshBefore: 60, // seconds before the token's exp to ask getToken for a new one
  limit: undefined,
};

/** Full-jitter exponential backoff: a uniform delay in [0, min(max, base * 2^attempt)). */
export function backoffDelay(attempt, base = 500, max = 30000, random = Math.random) {
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** `base + path` with a properly encoded query (`+` becomes %2B); empty values are left out. */
export function buildUrl(base, path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
  }
  const text = query.toString();
  return String(base).replace(/\/+$/, "") + path + (text ? `?${text}` : "");
}

/** The JWT's claims, decoded without verifying (only to schedule a refresh); null if opaque. */
export function decodeClaims(token) {
  try {
    const part = String(token).split(".")[1];
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

/**
 * Milliseconds from now until the token should be refreshed, or null when it has no `exp`.
 * With `iat`, the lifetime `exp - iat` is counted from when the token was received, so a
 * browser whose clock is off still refreshes in time.
 */
export function refreshDelay(token, refreshBefore = 60, now = Date.now()) {
  const claims = decodeClaims(token);
  if (!claims || typeof claims.exp !== "number") return null;
  const hasIat = typeof claims.iat === "number" && claims.iat < claims.exp;
  const lifetime = hasIat ? claims.exp - claims.iat : claims.exp - now / 1000;
  const margin = Math.min(refreshBefore, lifetime / 2);
  return Math.max(0, Math.floor((lifetime - margin) * 1000));
}

class Connection {
  constructor(options) {
    if (!options || typeof options.onUpdate !== "function") {
      throw new TypeError("connect() needs an onUpdate(update) callback");
    }
    if (!options.token && typeof options.getToken !== "function") {
      throw new TypeError("connect() needs a token or a getToken() callback");
    }
    this.o = { ...DEFAULTS };
    for (const [key, value] of Object.entries(options)) if (value !== undefined) this.o[key] = value;
    const g = globalThis;
    this.fetch = options.fetch ?? (g.fetch ? g.fetch.bind(g) : undefined);
    this.EventSource = "EventSource" in options ? options.EventSource : g.EventSource;
    this.setTimeout = options.setTimeout ?? g.setTimeout.bind(g);
    this.clearTimeout = options.clearTimeout ?? g.clearTimeout.bind(g);
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    this.transports = this.o.transports.filter(
      (t) => TRANSPORTS.includes(t) && (t !== "sse" || typeof this.EventSource === "function"),
    );
    if (!this.transports.length) throw new TypeError("connect(): no usable transport");
    this.token = options.token ?? null;
    this.cursor = options.lastCheck ?? null;
    this.index = 0; // into this.transports
    this.refusals = 0; // of the current transport, while plain polls succeed
    this.attempt = 0; // consecutive failures, for the backoff
    this.status = null;
    this.transport = null;
    this.stopped = false;
    this.timers = new Set();
    this.wakeSleep = null;
    this.interrupt = null; // ends the running SSE stream (stop, token refresh)
    this.controller = null; // aborts the running fetch
    this.upgradeDue = false;
    this.refreshing = null;
    this.refreshTimer = null;
    this.authRetried = false;
    this.setStatus("connecting", this.transports[0]);
  }

  // -- lifecycle ------------------------------------------------------------------

  async run() {
    if (!this.token) await this.refreshToken();
    this.scheduleRefresh();
    while (!this.stopped) {
      try {
        await this.step();
      } catch (error) {
        if (this.stopped) break;
        this.report(error);
        await this.sleep(this.nextBackoff());
      }
    }
  }

  stop() {
    if (this.stopped) return;
    this.stopped = true;
    for (const timer of this.timers) this.clearTimeout(timer);
    this.timers.clear();
    this.controller?.abort();
    this.interrupt?.("stopped");
    this.wakeSleep?.();
  }

  /** Skip the pending backoff and try again now (e.g. the browser came back online). */
  retryNow() {
    this.wakeSleep?.();
  }

  // -- one step of the loop: a connection attempt with the current transport ---------

  async step() {
    const transport = this.transports[this.index];
    if (this.upgradeDue && this.index > 0) {
      this.upgradeDue = false;
      this.index = 0;
      this.refusals = 0;
      return;
    }
    if (this.cursor === null && transport === "sse") {
      // Learn the server's cursor first, so that nothing published from now on is missed
      // even if the first stream dies before its first event.
      const answer = await this.poll(0);
      if (!answer.ok) return this.failed(answer);
    }
    const outcome =
      transport === "sse" ? await this.runSse() : await this.runPolls(transport === "longpoll");
    if (this.stopped || outcome.interrupted) return;
    if (outcome.auth) return this.failed(outcome);
    if (outcome.refusedEarly) {
      // Was it the transport or the server? A plain poll tells (and delivers, if anything).
      const probe = await this.poll(0);
      if (!probe.ok) return this.failed(probe);
      this.refusals += 1;
      if (this.refusals >= this.o.refusalsBeforeFallback && this.index < this.transports.length - 1) {
        this.index += 1;
        this.refusals = 0;
        this.attempt = 0;
        this.setStatus(this.status, this.transports[this.index]);
        if (this.o.upgradeAfter > 0) this.later(this.o.upgradeAfter, () => (this.upgradeDue = true));
        return;
      }
      return this.sleep(this.nextBackoff());
    }
    return this.failed(outcome);
  }

  async failed(outcome) {
    if (outcome.auth) {
      if (typeof this.o.getToken !== "function") {
        this.report(outcome.error);
        this.setStatus("offline", this.transport);
        this.stop();
        return;
      }
      const refused = this.token;
      await this.refreshToken();
      if (this.stopped) return;
      if (this.token !== refused && !this.authRetried) {
        // The token had probably expired: retry at once with the new one, but only once
        // until something succeeds, so a relay refusing every token is not hammered.
        this.authRetried = true;
        return;
      }
    }
    if (this.stopped) return;
    if (outcome.error) this.report(outcome.error);
    this.setStatus("offline", this.transport);
    await this.sleep(this.nextBackoff());
  }

  nextBackoff() {
    const delay = backoffDelay(this.attempt, this.o.backoffBase, this.o.backoffMax, this.random);
    this.attempt += 1;
    return delay;
  }

  // -- SSE ------------------------------------------------------------------------

  runSse() {
    return new Promise((resolve) => {
      const params = { token: this.token, last_check: this.cursor, limit: this.o.limit };
      const source = new this.EventSource(buildUrl(this.o.url, SSE_PATH, params));
      let opened = false;
      let finished = false;
      let resetCursor = null;
      const finish = (outcome) => {
        if (finished) return;
        finished = true;
        source.close();
        if (resetCursor !== null) {
          // A reset with no event after it: resume from where the reset was announced,
          // or every reconnect would announce it again. The app reloads its state anyway.
          this.cursor = resetCursor;
        }
        this.interrupt = null;
        resolve(outcome);
      };
      this.interrupt = (why) => finish({ interrupted: why });
      source.onopen = () => {
        if (this.stopped) return;
        opened = true;
        this.attempt = 0;
        this.authRetried = false;
        this.refusals = 0;
        this.setStatus("live", "sse");
      };
      source.onmessage = (message) => {
        if (this.stopped) return;
        let update;
        try {
          update = JSON.parse(message.data);
        } catch (error) {
          this.report(error);
          return;
        }
        // The event's id is its cursor: a new EventSource resumes from it via last_check.
        if (message.lastEventId) this.cursor = message.lastEventId;
        resetCursor = null;
        this.deliver(update);
      };
      source.addEventListener("reset", (message) => {
        if (this.stopped) return;
        let info = { reset: true };
        try {
          info = JSON.parse(message.data);
        } catch {}
        // The events after the reset carry the cursor forward; the reset frame does not,
        // unless the stream ends before any of them (see finish).
        if (typeof info.timestamp === "string") resetCursor = info.timestamp;
        this.callback("onReset", info);
      });
      source.addEventListener("token_expired", () => {
        // relay ends a stream when its token expires (a refresh timer that did not fire:
        // a sleeping laptop, a throttled tab). Treated as a 401: getToken, then resume
        // from the last event's id at once.
        finish({ auth: true, error: relayError("token_expired", { detail: "token expired" }) });
      });
      source.onerror = () => {
        // Close it: the browser's own reconnect has a fixed delay (no backoff, no jitter),
        // which is how reconnect storms start. We reconnect ourselves with last_check.
        if (opened) finish({ dropped: true });
        else finish({ refusedEarly: true });
      };
    });
  }

  // -- long-poll and plain polling ------------------------------------------------

  async runPolls(long) {
    const transport = long ? "longpoll" : "poll";
    let longPollAnswered = false;
    for (let first = true; !this.stopped; first = false) {
      if (this.upgradeDue) return { interrupted: "upgrade" };
      // Each run opens with a plain poll: it learns the cursor if there is none yet, and
      // tells a refused long-poll apart from a relay that is down.
      const wait = long && !first ? this.o.wait : 0;
      const answer = await this.poll(wait);
      if (this.stopped) return { interrupted: "stopped" };
      if (!answer.ok) {
        if (answer.auth || !wait) return answer;
        return longPollAnswered ? answer : { ...answer, refusedEarly: true };
      }
      if (wait) longPollAnswered = true;
      this.attempt = 0;
      if (!long || longPollAnswered) this.refusals = 0;
      this.setStatus("polling", transport);
      if (!answer.more && !long) await this.sleep(this.o.pollInterval);
    }
    return { interrupted: "stopped" };
  }

  /** One check-updates request with the current cursor; delivers what it gets. */
  async poll(wait) {
    const params = { last_check: this.cursor, wait: wait || undefined, limit: this.o.limit };
    const controller = new AbortController();
    this.controller = controller;
    const timeout = this.later(wait * 1000 + this.o.requestTimeout, () => controller.abort());
    let response;
    let body;
    try {
      response = await this.fetch(buildUrl(this.o.url, POLL_PATH, params), {
        headers: { Authorization: `Bearer ${this.token}`, Accept: "application/json" },
        signal: controller.signal,
        cache: "no-store",
      });
      body = await response.json().catch(() => null);
    } catch (error) {
      return { ok: false, error: this.stopped ? null : relayError("network", error) };
    } finally {
      this.cancel(timeout);
      if (this.controller === controller) this.controller = null;
    }
    if (this.stopped) return { ok: false };
    if (response.status === 401) {
      return { ok: false, auth: true, error: relayError(body?.error ?? "unauthorized", body) };
    }
    if (!response.ok || !body || typeof body.timestamp !== "string") {
      return { ok: false, error: relayError(body?.error ?? `http_${response.status}`, body) };
    }
    if (body.reset) this.callback("onReset", { timestamp: body.timestamp, reset: true });
    for (const update of body.updates ?? []) this.deliver(update);
    this.cursor = body.timestamp; // the server's cursor, echoed verbatim next time
    this.authRetried = false;
    return { ok: true, more: Boolean(body.more) };
  }

  // -- tokens ---------------------------------------------------------------------

  /** Ask getToken for a new token; concurrent callers (timer and a 401) share one call. */
  refreshToken() {
    if (typeof this.o.getToken !== "function") return Promise.resolve();
    this.refreshing ??= (async () => {
      try {
        const token = await this.o.getToken();
        if (this.stopped) return;
        if (!token) throw new Error("getToken() returned no token");
        this.token = token;
        this.scheduleRefresh();
      } catch (error) {
        this.report(relayError("token_refresh_failed", error));
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  scheduleRefresh() {
    if (typeof this.o.getToken !== "function" || !this.token) return;
    if (this.refreshTimer) this.cancel(this.refreshTimer);
    const delay = refreshDelay(this.token, this.o.refreshBefore, this.now());
    if (delay === null) return;
    this.refreshTimer = this.later(delay, async () => {
      this.refreshTimer = null;
      await this.refreshToken();
      // An SSE stream was authorized once, at connect: reconnect it with the new token.
      // Polls pick the new token up with their next request.
      this.interrupt?.("token_refreshed");
    });
  }

  // -- plumbing -------------------------------------------------------------------

  deliver(update) {
    this.callback("onUpdate", update);
  }

  callback(name, ...args) {
    const fn = this.o[name];
    if (typeof fn !== "function" || this.stopped) return;
    try {
      fn(...args);
    } catch (error) {
      // A throwing handler must not stall the stream or move the cursor backwards.
      if (name !== "onError") this.report(error);
    }
  }

  report(error) {
    if (error) this.callback("onError", error);
  }

  setStatus(status, transport) {
    if (this.stopped || (status === this.status && transport === this.transport)) return;
    this.status = status;
    this.transport = transport;
    this.callback("onStatus", status, { transport });
  }

  later(ms, fn) {
    const timer = this.setTimeout(() => {
      this.timers.delete(timer);
      if (!this.stopped) fn();
    }, ms);
    this.timers.add(timer);
    return timer;
  }

  cancel(timer) {
    this.timers.delete(timer);
    this.clearTimeout(timer);
  }

  sleep(ms) {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (this.wakeSleep === done) this.wakeSleep = null;
        resolve();
      };
      const timer = this.later(ms, done);
      this.wakeSleep = () => {
        this.cancel(timer);
        done();
      };
    });
  }
}

function relayError(code, detail) {
  const message = detail?.detail ?? detail?.message ?? code;
  const error = new Error(`relay: ${message}`);
  error.code = code;
  if (detail instanceof Error) error.cause = detail;
  return error;
}

/**
 * Connect to relay and call `onUpdate(update)` for every event, once, in order.
 * Returns a handle: `stop()`, `retryNow()`, and the current `status`, `transport`, `cursor`.
 */
export function connect(options) {
  const connection = new Connection(options);
  const onOnline = () => connection.retryNow();
  const g = globalThis;
  if (typeof g.addEventListener === "function") g.addEventListener("online", onOnline);
  connection.run().catch((error) => connection.report(error));
  return {
    stop() {
      if (typeof g.removeEventListener === "function") g.removeEventListener("online", onOnline);
      connection.stop();
    },
    retryNow: () => connection.retryNow(),
    get status() {
      return connection.status;
    },
    get transport() {
      return connection.transport;
    },
    get cursor() {
      return connection.cursor;
    },
  };
}
