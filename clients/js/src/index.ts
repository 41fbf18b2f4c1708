// @confab/client: a typed client for confab over socket.io-client, with an outbox that retries
// sends across reconnects and a per-conversation stream delivered exactly once, in seq order.

export { connect, ConfabClient, newClientId } from "./client.js";
export type {
  ConnectOptions,
  ConnectionState,
  ConversationHandlers,
  ClientEventMap,
  HistoryOptions,
  RequestOptions,
  SearchOptions,
  SendOptions,
  UploadOptions,
} from "./client.js";
export { ConfabError } from "./errors.js";
export type { Unsubscribe } from "./listeners.js";
export type { OutboxEntry, OutboxState, WaitOptions } from "./outbox.js";
export type { OutboxStorage } from "./outbox-storage.js";
export { ConversationList } from "./stores/conversations.js";
export type { ConversationItem, ConversationListSnapshot } from "./stores/conversations.js";
export { ConversationView } from "./stores/view.js";
export type { ConversationActions, ConversationViewSnapshot, ViewOptions } from "./stores/view.js";
export { PresenceStore } from "./stores/presence.js";
export type { PresenceSnapshot } from "./stores/presence.js";
export { readClaims } from "./token.js";
export type { TokenClaims } from "./token.js";
export type * from "./types.js";
