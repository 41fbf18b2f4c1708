// The protocol's objects and payloads, as docs/PROTOCOL.md describes them. These are the wire's
// JSON as it is, snake_case names included: the records the client hands out are these same
// objects (see the README's "Names"), and the HTTP API answers with them too.

/** A user id: the `sub` of the user's token. */
export type UserId = string;

/** A stored message (PROTOCOL.md, "Message"). */
export interface Message {
  id: string;
  conversation_id: string;
  /** Numbers a conversation's messages from 1, without gaps or duplicates. */
  seq: number;
  /** `null` for a system message (posted by the host app's server, from no user). */
  sender_id: UserId | null;
  /** `"system"`: posted by the host app's server ("Your order has shipped"); show it apart. */
  kind: "user" | "system";
  /** The sender's idempotency key. */
  client_id: string;
  /** `null` once deleted. */
  body: string | null;
  created_at: string;
  edited_at: string | null;
  deleted_at: string | null;
  /** The files sent with it, in order; absent when there are none (and once deleted). */
  attachments?: Attachment[];
}

/** An uploaded file (PROTOCOL.md, "Attachment"); `uploadAttachment()` makes one. */
export interface Attachment {
  id: string;
  /** What the bytes are, read by the server: `image/png`, `image/jpeg`, `image/gif`, `image/webp`, `application/pdf` or `text/plain`. */
  content_type: string;
  /** In bytes. */
  size: number;
  /** The name it was uploaded with, cleaned by the server. */
  name: string | null;
  /** Images' dimensions in pixels, when their header gives them. */
  width?: number;
  height?: number;
}

/** A message found by `search()`, with the passage that matched. */
export interface SearchResult {
  message: Message;
  /** Plain text around the first match: show it as text, never as HTML. */
  snippet: string;
  /** `[start, end)` of each match in `snippet`, in Unicode code points. */
  highlights: [number, number][];
}

/** A page of `message:search`: newest first. */
export interface SearchPage {
  results: SearchResult[];
  /** More, older results: ask again with `before` set to the last result's message id. */
  has_more: boolean;
}

/** A member's role in a group: owners and admins manage its members. */
export type Role = "owner" | "admin" | "member";

/** A member of a conversation. */
export interface Member {
  user_id: UserId;
  name: string | null;
  role: Role;
  /** Everything up to this seq is read by this member. */
  last_read_seq: number;
}

/** A direct conversation or a group (PROTOCOL.md, "Conversation"). */
export interface Conversation {
  id: string;
  kind: "direct" | "group";
  title: string | null;
  /**
   * The first members (at most 100) in member order: owner, admins, then members by when they joined.
   * A group of up to 100 has them all; page through a larger one with `listMembers`.
   */
  members: Member[];
  /** How many members it has (as of when this copy was loaded or last changed). */
  member_count: number;
  created_at: string;
  last_seq: number;
  last_message: Message | null;
  /** Only in `conversation:list` answers: the caller's read mark. */
  last_read_seq?: number;
  /** Only in `conversation:list` answers. */
  unread_count?: number;
}

/** A page of a conversation's members (`conversation:members:list`). */
export interface MembersPage {
  members: Member[];
  member_count: number;
  /** Pass as `after` for the next page; `null` after the last one. */
  next: string | null;
}

/** Whether a user is online, and when they were last seen. */
export interface Presence {
  user_id: UserId;
  online: boolean;
  last_seen_at: string | null;
}

/** A member's read mark moved: everything up to `seq` is read. */
export interface Receipt {
  conversation_id: string;
  user_id: UserId;
  seq: number;
}

/** A member started (`typing: true`) or stopped typing. */
export interface Typing {
  conversation_id: string;
  user_id: UserId;
  typing: boolean;
}

/** A page of `message:history`: ascending seq. */
export interface HistoryPage {
  messages: Message[];
  has_more: boolean;
}

/** One conversation's part of a `sync` answer. */
export interface SyncUpdate {
  conversation_id: string;
  messages: Message[];
  has_more: boolean;
  /**
   * Messages at or below the cursor edited or deleted since the request's `since` (after its
   * `changed_after`), at most 100, ascending by seq.
   */
  changed: Message[];
  /** More changes than `changed` holds: ask again with `changed_after` its last seq. */
  changed_has_more?: boolean;
}

/** The error codes of the ack envelope and of `connect_error`. */
export type ErrorCode =
  | "invalid_payload"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "conflict"
  | "too_large"
  | "rate_limited"
  | "unavailable"
  | "internal"
  | "too_many_connections"
  // Client-side conditions, not sent by the server:
  | "timeout"
  | "disconnected"
  | "closed";

/** The error of a refused request, as the server sends it. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
  field?: string;
  reason?: string;
  retry_after_ms?: number;
}

/** Every ack: `{ ok: true, data }` or `{ ok: false, error }`. */
export type Envelope<T> = { ok: true; data: T } | { ok: false; error: ErrorBody };

/** Server → client events and their payloads. */
export interface ServerEvents {
  "message:new": { message: Message };
  "message:updated": { message: Message };
  "conversation:new": { conversation: Conversation };
  /** A group's members changed: `changed` joined or changed role (replace by `user_id`), `removed` left. */
  "conversation:members": { conversation_id: string; changed: Member[]; removed: UserId[]; member_count: number };
  "conversation:removed": { conversation_id: string };
  receipt: Receipt;
  typing: Typing;
  presence: Presence;
  "session:expiring": { expires_at: string };
  "session:expired": { expires_at: string };
  /** The host app banned or erased the user; the server disconnects the socket. Don't reconnect. */
  "session:ended": { reason: "banned" | "erased"; until: string | null };
  /** Events may have been missed (a node's link restored, or a node died): call `sync`. */
  resync: Record<string, never>;
  /** The node is shutting down: reconnect (to another node) and `sync`. */
  "server:shutdown": Record<string, never>;
}

/** Client → server events: request payload and the ack's `data`. */
export interface ClientEvents {
  "conversation:create": [
    { kind: "direct"; user_id: UserId } | { kind: "group"; title: string; member_ids: UserId[] },
    { conversation: Conversation },
  ];
  "conversation:list": [Record<string, never>, { conversations: Conversation[] }];
  "conversation:members:add": [
    { conversation_id: string; user_ids: UserId[] },
    { conversation: Conversation },
  ];
  "conversation:members:remove": [
    { conversation_id: string; user_ids: UserId[] },
    { conversation: Conversation },
  ];
  "conversation:members:list": [{ conversation_id: string; after?: string; limit?: number }, MembersPage];
  "conversation:leave": [{ conversation_id: string }, { conversation_id: string }];
  "conversation:read": [
    { conversation_id: string; seq: number },
    { conversation_id: string; last_read_seq: number },
  ];
  "message:send": [
    { conversation_id: string; client_id: string; body: string; attachment_ids?: string[] },
    { message: Message },
  ];
  "message:edit": [
    { conversation_id: string; message_id: string; body: string },
    { message: Message },
  ];
  "message:delete": [{ conversation_id: string; message_id: string }, { message: Message }];
  "message:history": [
    { conversation_id: string; before_seq?: number; after_seq?: number; limit?: number },
    HistoryPage,
  ];
  "typing:start": [{ conversation_id: string }, Record<string, never>];
  "typing:stop": [{ conversation_id: string }, Record<string, never>];
  "presence:get": [{ user_ids: UserId[] }, { presence: Presence[] }];
  sync: [{ cursors: Record<string, number>; since?: string; changed_after?: Record<string, number> }, { updates: SyncUpdate[]; server_time: string }];
  "auth:refresh": [{ token: string }, { expires_at: string }];
  "message:search": [
    { query: string; conversation_id?: string; before?: string; limit?: number },
    SearchPage,
  ];
}
