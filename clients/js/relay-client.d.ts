/** How the client is receiving updates right now. */
export type Status = "connecting" | "live" | "polling" | "offline";
export type Transport = "sse" | "longpoll" | "poll";

/** One update event as relay sends it (see relay's DESIGN: "Update event"). */
export interface RelayUpdate {
  id: string;
  type: string;
  /** The event's cursor: ISO 8601 with microseconds, e.g. 2025-07-19T03:54:04.574010+00:00. */
  timestamp: string;
  account: string;
  chat_id: string | null;
  [field: string]: unknown;
}

export interface ResetInfo {
  reset: true;
  /** The server's cursor when it announced the reset. */
  timestamp?: string;
}

export interface RelayError extends Error {
  /** relay's error code (`token_expired`, `bad_token`, ...), `network`, or `http_<status>`. */
  code?: string;
}

export interface ConnectOptions {
  /** relay's base URL, e.g. "https://relay.example.com"; "" (default) for the page's origin. */
  url?: string;
  /** A browser JWT. Give this, getToken, or both. */
  token?: string;
  /** Returns a fresh token: called before the current one expires, and after a 401. */
  getToken?: () => string | Promise<string>;
  /** Called once per event, in order. */
  onUpdate: (update: RelayUpdate) => void;
  onStatus?: (status: Status, info: { transport: Transport }) => void;
  /** History before the cursor was trimmed or lost: reload state from the main app. */
  onReset?: (info: ResetInfo) => void;
  onError?: (error: RelayError) => void;
  /** Resume from this cursor (a `timestamp` relay gave earlier) instead of "now". */
  lastCheck?: string | null;
  /** Transports to try, in order. Default ["sse", "longpoll", "poll"]. */
  transports?: Transport[];
  /** Long-poll seconds. Default 25. */
  wait?: number;
  /** Milliseconds between plain polls. Default 3000. */
  pollInterval?: number;
  /** Milliseconds a request may take beyond its long-poll wait. Default 10000. */
  requestTimeout?: number;
  /** Full-jitter backoff: retry n waits random in [0, min(backoffMax, backoffBase * 2^n)). */
  backoffBase?: number;
  backoffMax?: number;
  /** Times a transport may fail while plain polls succeed before falling back. Default 3. */
  refusalsBeforeFallback?: number;
  /** Milliseconds in a fallback before trying SSE again; 0 never. Default 300000. */
  upgradeAfter?: number;
  /** Seconds before the token's exp to refresh it (at most half its lifetime). Default 60. */
  refreshBefore?: number;
  /** Page size per read (relay's default 100). */
  limit?: number;
  /** Injection points for tests and non-browser runtimes. */
  fetch?: typeof fetch;
  EventSource?: typeof EventSource | undefined;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (timer: unknown) => void;
  now?: () => number;
  random?: () => number;
}

export interface Connection {
  /** Close the stream, abort requests, clear timers; no callback is called afterwards. */
  stop(): void;
  /** Skip a pending backoff and retry now (called on the window's "online" event). */
  retryNow(): void;
  readonly status: Status;
  readonly transport: Transport;
  /** The server's cursor of the last update received (pass it as lastCheck to resume). */
  readonly cursor: string | null;
}

export function connect(options: ConnectOptions): Connection;

export const SSE_PATH: "/api/chats/realtime-updates/";
export const POLL_PATH: "/api/chats/check-updates/";
export const TRANSPORTS: readonly Transport[];
export function backoffDelay(
  attempt: number,
  base?: number,
  max?: number,
  random?: () => number,
): number;
export function buildUrl(
  base: string,
  path: string,
  params?: Record<string, string | number | null | undefined>,
): string;
export function decodeClaims(token: string): Record<string, unknown> | null;
export function refreshDelay(token: string, refreshBefore?: number, now?: number): number | null;
