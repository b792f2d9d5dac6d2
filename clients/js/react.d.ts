import type { ConnectOptions, RelayError, RelayUpdate, Status, Transport } from "./relay-client.js";

export interface UseRelayUpdatesOptions extends Omit<ConnectOptions, "onUpdate"> {
  /** Every update, once, in order. */
  onUpdate?: (update: RelayUpdate) => void;
  /** message.created updates: the message (`update.message`, or a published `update.data`). */
  onNewMessage?: (message: unknown, update: RelayUpdate) => void;
  /** chat.updated updates: the chat id and its data. */
  onChatUpdate?: (chatId: string | null, chat: unknown, update: RelayUpdate) => void;
  /** false: stay disconnected (status "offline"). Default true. */
  enabled?: boolean;
}

export interface RelayUpdatesState {
  status: Status;
  /** status is "live" or "polling": for the old hook's connection indicator. */
  isConnected: boolean;
  transport: Transport | null;
  lastUpdate: RelayUpdate | null;
  error: RelayError | null;
  /** Drop the connection and open a new one from the same cursor. */
  reconnect(): void;
}

export function useRelayUpdates(options: UseRelayUpdatesOptions): RelayUpdatesState;
