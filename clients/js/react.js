// useRelayUpdates: the React face of relay-client, shaped like the old useRealtimeUpdates
// hook (onNewMessage / onChatUpdate callbacks, an isConnected flag for the indicator).

import { useCallback, useEffect, useRef, useState } from "react";

import { connect } from "./relay-client.js";

const CALLBACKS = new Set([
  "onUpdate",
  "onNewMessage",
  "onChatUpdate",
  "onReset",
  "onError",
  "onStatus",
  "getToken",
]);

/** Route an update the way the old hook's handleUpdate did. */
function dispatch(handlers, update) {
  handlers.onUpdate?.(update);
  if (update.type === "message.created") {
    handlers.onNewMessage?.(update.message ?? update.data ?? null, update);
  } else if (update.type === "chat.updated") {
    handlers.onChatUpdate?.(update.chat_id, update.chat ?? update.data ?? null, update);
  }
}

/**
 * Live relay updates for a component. Reconnects when `url`, `token` or `enabled` change,
 * carrying the cursor over, so nothing is missed or repeated across a re-render.
 * Callbacks may change on every render without reconnecting.
 */
export function useRelayUpdates(options) {
  const { url = "", token, getToken, enabled = true } = options;
  const latest = useRef(options);
  latest.current = options;
  const cursor = useRef(options.lastCheck ?? null);
  const [generation, setGeneration] = useState(0);
  const [status, setStatus] = useState(enabled ? "connecting" : "offline");
  const [transport, setTransport] = useState(null);
  const [lastUpdate, setLastUpdate] = useState(null);
  const [error, setError] = useState(null);
  const hasTokenSource = Boolean(token || getToken);

  useEffect(() => {
    if (!enabled || !hasTokenSource) {
      setStatus("offline");
      return undefined;
    }
    const settings = {};
    for (const [key, value] of Object.entries(latest.current)) {
      if (!CALLBACKS.has(key)) settings[key] = value;
    }
    const client = connect({
      ...settings,
      url,
      token,
      lastCheck: cursor.current,
      getToken: latest.current.getToken ? () => latest.current.getToken() : undefined,
      onUpdate: (update) => {
        setLastUpdate(update);
        dispatch(latest.current, update);
      },
      onStatus: (next, info) => {
        setStatus(next);
        setTransport(info.transport);
        latest.current.onStatus?.(next, info);
      },
      onReset: (info) => latest.current.onReset?.(info),
      onError: (failure) => {
        setError(failure);
        latest.current.onError?.(failure);
      },
    });
    return () => {
      cursor.current = client.cursor;
      client.stop();
    };
  }, [url, token, enabled, hasTokenSource, generation]);

  const reconnect = useCallback(() => setGeneration((n) => n + 1), []);
  return {
    status,
    isConnected: status === "live" || status === "polling",
    transport,
    lastUpdate,
    error,
    reconnect,
  };
}
