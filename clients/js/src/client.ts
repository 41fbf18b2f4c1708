// The client: one Socket.IO connection, its authentication, and the pieces built on it (the
// outbox, the gap-free stream, and the stores the UI reads).

import { io, type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";

import { ConfabError } from "./errors.js";
import { KeyedListeners, Listeners, type Unsubscribe } from "./listeners.js";
import { Outbox, type OutboxEntry, type WaitOptions } from "./outbox.js";
import { OutboxPersistence, webLocks, type OutboxStorage } from "./outbox-storage.js";
import { ConversationList } from "./stores/conversations.js";
import { PresenceStore } from "./stores/presence.js";
import { ConversationView, type ViewOptions } from "./stores/view.js";
import { Stream } from "./stream.js";
import { looksExpired, readClaims } from "./token.js";
import type {
  Attachment,
  ClientEvents,
  Conversation,
  Envelope,
  ErrorBody,
  HistoryPage,
  Member,
  MembersPage,
  Message,
  Presence,
  Receipt,
  SearchPage,
  ServerEvents,
  Typing,
  UserId,
} from "./types.js";

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** The confab server, e.g. `https://chat.example.com`. Default: the page's own origin. */
  url?: string;
  /**
   * Returns a token for the current user. Called for the first connection, on every
   * reconnection, and when the session is about to expire, so it should return a fresh token
   * (from your backend) rather than a cached one that may have expired. A client is for one
   * user, the `sub` of its first token: a token for anyone else is refused (state
   * `unauthorized`, reason `user_changed`). For another user, make another client.
   */
  getToken: () => string | Promise<string>;
  /** How long to wait for an answer to a request (`timeout` after). Default 10 s. */
  ackTimeoutMs?: number;
  /**
   * How long `send()` and `retry()` wait for the message to be stored before they reject with
   * `timeout`. The message stays queued and is still sent: the rejection only says it isn't
   * stored yet (`error.clientId` names it in `pending()`). Default 30 s; `Infinity` waits until
   * it is stored or refused, which offline may be never (pass a `signal` then).
   */
  sendTimeoutMs?: number;
  /**
   * First and longest delay between reconnection attempts, and between tries for a token that
   * renews an ended session. Defaults 500 ms and 5 s; each delay is jittered (±50%).
   */
  reconnectionDelayMs?: number;
  reconnectionDelayMaxMs?: number;
  /** After how long without a `typing()` call the client sends `typing:stop`. Default 3 s. */
  typingIdleMs?: number;
  /** Passed to `socket.io-client` as is (transports, path, …). */
  socketOptions?: Partial<ManagerOptions & SocketOptions>;
  /**
   * Where unsent messages are kept across page loads, typically `localStorage`. With it, a
   * message written offline is sent by the next client of the same user even if this page was
   * closed first. Without it (the default) the outbox lives as long as the client. Tabs of one
   * user coordinate through Web Locks: a tab sends what it wrote, and what tabs that closed left
   * (see the README's "Outbox across page loads").
   */
  outboxStorage?: OutboxStorage;
  /**
   * Whether to start connecting at once (the default). With `false` the client does nothing
   * until `connect()`: for code that creates it where it must not connect, such as a component
   * rendered on the server.
   */
  autoConnect?: boolean;
}

/**
 * - `connecting`: the first connection attempt (and, with `autoConnect: false`, before `connect()`).
 * - `syncing`: connected, catching up (conversation list and missed messages): after every
 *   connect, and when the server says events may have been missed (`resync`).
 * - `live`: connected and caught up.
 * - `reconnecting`: the connection dropped, or the session ended and a token that renews it is
 *   being fetched; the client keeps trying, with backoff.
 * - `unauthorized`: a token was refused: by the server as invalid, or by the client because it
 *   is for another user than this client's (`auth:error` says which). The client stops; call
 *   `reconnect()` once `getToken` gives a token the server accepts for this client's user.
 * - `ended`: the session ended (its token expired) and no token that ends later came:
 *   `getToken` kept giving the expired one, or failed, a few times with backoff. The client
 *   stops and does nothing more: tell the user their session ended, and call `reconnect()` once
 *   they have signed in again. Entered once per ended session.
 * - `closed`: `close()` was called.
 */
export type ConnectionState = "connecting" | "syncing" | "live" | "reconnecting" | "unauthorized" | "ended" | "closed";

/** Options of every call that asks the server something. */
export interface RequestOptions {
  /**
   * Stops waiting for the answer: the promise rejects with `signal.reason` (an `AbortError`
   * DOMException unless you abort with another), as `fetch` does. A request already sent may
   * still be carried out by the server; one aborted before it was sent is not sent.
   */
  signal?: AbortSignal;
  /** How long to wait for the answer before rejecting with `timeout`. Default: `ackTimeoutMs`. */
  timeoutMs?: number;
}

/** Options of `send()`. */
export interface SendOptions extends WaitOptions {
  /**
   * The message's idempotency key (at most 64 characters). Default: a fresh random one. Give
   * your own to send the same message again after a reload without storing it twice.
   */
  clientId?: string;
  /**
   * Files uploaded with `uploadAttachment()` (or their ids) to send with the message, at most
   * 10. With attachments, `body` may be empty. They are the user's own uploads, sent once.
   */
  attachments?: (Attachment | string)[];
}

/** Options of `uploadAttachment()`. */
export interface UploadOptions {
  /** The file's name (default: the `File`'s own name, if it is one). */
  name?: string;
  /**
   * Called as the upload goes: bytes sent so far and in all. In browsers (through
   * `XMLHttpRequest`, which reports upload progress); elsewhere only once, when done.
   */
  onProgress?: (loaded: number, total: number) => void;
  /** Stops the upload: rejects with `signal.reason`. */
  signal?: AbortSignal;
}

/** Options of `search()`. */
export interface SearchOptions extends RequestOptions {
  /** Only this conversation's messages. */
  conversationId?: string;
  /** Only messages older than this one: the last result's `message.id`, for the next page. */
  before?: string;
  /** At most this many (default 20, at most 50). */
  limit?: number;
}

/** Which page of history: `history()`'s options. */
export interface HistoryOptions extends RequestOptions {
  /** Messages with a lower seq than this (the newest such first in the page, which is ascending). */
  beforeSeq?: number;
  /** Messages with a higher seq than this, the oldest first. */
  afterSeq?: number;
  /** At most this many (the server's default and maximum apply). */
  limit?: number;
}

/** What a conversation subscriber is told. */
export interface ConversationHandlers {
  /** A new message: each exactly once, in seq order. */
  message?: (message: Message) => void;
  /** A message already delivered was edited or deleted. */
  update?: (message: Message) => void;
  /** A member started or stopped typing. */
  typing?: (typing: Typing) => void;
  /** A member's read mark moved. */
  receipt?: (receipt: Receipt) => void;
}

type ConversationEvent =
  | { kind: "message"; message: Message }
  | { kind: "update"; message: Message }
  | { kind: "typing"; typing: Typing }
  | { kind: "receipt"; receipt: Receipt };

/** Events for `on()`: the server events that aren't about one conversation's stream. */
export interface ClientEventMap {
  "conversation:new": Conversation;
  /** A conversation changed (its members, from the server's `conversation:members`): as it is now. */
  "conversation:updated": Conversation;
  "conversation:removed": { conversation_id: string };
  presence: Presence;
  /**
   * The server said events may have been missed (its link to the other nodes was restored, or
   * another node died). The client catches up by itself (state `syncing`, then `live`); this is
   * for diagnostics.
   */
  resync: ServerEvents["resync"];
  /**
   * A token was refused (by the server at a connection or refresh, or by the client for being
   * another user's: reason `user_changed`) or a refresh failed; `error.reason` says why.
   */
  "auth:error": ConfabError;
  /**
   * The server refused to open a connection at all, before any token was seen: an origin not
   * in `CONFAB_CORS_ORIGINS`, a host name not in `CONFAB_ALLOWED_HOSTS`, or too many new
   * connections from this address. The message names the setting to change; socket.io alone
   * only says "xhr poll error". Emitted once per distinct refusal; the client keeps retrying.
   */
  refused: ConfabError;
}

/**
 * After the session ended (or a token was refused as expired), how many times `getToken` is
 * asked for a token that ends later before the client gives up (state `ended`).
 */
const RENEWAL_TRIES = 4;

/** After `session:expiring`, how many more times a refresh is tried when it gets no better token. */
const REFRESH_RETRIES = 3;

/**
 * On `resync`, how far before the last event seen the catch-up asks for edits and deletions.
 * What was missed may predate events that did arrive (a dead node's last changes precede its
 * reaping by the node timeout, 15 s by default; other nodes' changes during a Redis outage
 * precede the events our own node kept delivering meanwhile).
 */
const RESYNC_LOOKBACK_MS = 120_000;

/** Creates a client, connecting at once unless `autoConnect` is `false`. */
export function connect(options: ConnectOptions): ConfabClient {
  return new ConfabClient(options);
}

/**
 * One user's connection to confab: requests, the outbox, the gap-free stream of messages, and
 * the stores a UI reads. Create it with {@link connect}.
 */
export class ConfabClient {
  /** The underlying Socket.IO socket, for diagnostics and tests. Prefer the typed methods. */
  readonly socket: Socket;
  /** The user's conversations, kept current: a store (`subscribe`, `getSnapshot`). */
  readonly conversations: ConversationList;
  /** Presence of the users someone watches, kept current: a store. */
  readonly presence: PresenceStore;

  private readonly options: Required<Pick<ConnectOptions, "ackTimeoutMs" | "typingIdleMs" | "sendTimeoutMs">> &
    ConnectOptions;
  private readonly stream: Stream;
  private readonly outbox: Outbox;
  /** Set once the user is known (from the first token), when `outboxStorage` was given. */
  private outboxStore: OutboxPersistence | undefined;
  /** A save is scheduled: many changes in one tick make one write. */
  private outboxSaveQueued = false;
  private stateValue: ConnectionState = "connecting";
  /** `connect()` was called (by the constructor, unless `autoConnect: false`). */
  private started = false;
  private readonly stateListeners = new Listeners<[ConnectionState]>();
  private readonly conversationListeners = new KeyedListeners<string, [ConversationEvent]>();
  private readonly messageListeners = new Listeners<[Message]>();
  private readonly outboxListeners = new KeyedListeners<string, []>();
  private readonly eventListeners = new KeyedListeners<keyof ClientEventMap, [unknown]>();
  /** Read marks of members, per conversation, from `receipt` events seen since connecting. */
  private readonly receipts = new Map<string, Map<UserId, number>>();
  /** Our own read marks sent or in flight, per conversation: never send a lower one. */
  private readonly readMarks = new Map<string, number>();
  private readonly typingState = new Map<string, { startedAt: number; idle: ReturnType<typeof setTimeout> }>();
  /** The token (and its `exp`, in seconds) handed to the connection attempt under way. */
  private attempt: { token: string; exp: number | undefined } | undefined;
  /** A token fetched (and checked) before connecting, for the next handshake. */
  private readyToken: { token: string; exp: number | undefined } | undefined;
  /** The `exp` (seconds) of the token the current session runs on. */
  private sessionExp: number | undefined;
  /**
   * Tokens whose `exp` (seconds) is not later than this are known to be expired, by the
   * server's word (a session that ended, a token refused as expired): never sent again. Known
   * without reading this machine's clock, which may be wrong.
   */
  private deadExp = 0;
  /** Consecutive failures to get a usable token for a new session: backs off, then `ended`. */
  private renewals = 0;
  /** Consecutive refused handshakes other than `unauthorized`: backs off the retries. */
  private refusals = 0;
  /** The last HTTP refusal passed on as `refused`, so a retrying client says it once. */
  private lastRefusal: string | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** Refresh attempts after `session:expiring` that found no better token, for this session. */
  private refreshRetries = 0;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private connectGeneration = 0;
  /** The latest catch-up (after a connect or a `resync`): only it may set the state `live`. */
  private catchUpGeneration = 0;
  private catchingUp = false;
  /** A `resync` arrived during a catch-up: run one more when it ends. */
  private catchUpAgain = false;
  private readonly socketHandlers: [string, (...args: never[]) => void][] = [];
  private userId: string | undefined;
  private userName: string | undefined;

  /** Prefer {@link connect}, which does the same. */
  constructor(options: ConnectOptions) {
    this.options = { ackTimeoutMs: 10_000, typingIdleMs: 3_000, sendTimeoutMs: 30_000, ...options };
    const socketOptions: Partial<ManagerOptions & SocketOptions> = {
      // Our own reconnection policy decides after a refused handshake; the manager retries
      // transport failures by itself.
      reconnectionDelay: options.reconnectionDelayMs ?? 500,
      reconnectionDelayMax: options.reconnectionDelayMaxMs ?? 5_000,
      // Two clients in one page (or test) must not share a connection.
      forceNew: true,
      autoConnect: false,
      ...options.socketOptions,
      // A function: socket.io calls it on every connection attempt, so each gets a fresh token.
      auth: (cb: (data: object) => void) => void this.handshakeToken(cb),
    };
    this.socket = options.url === undefined ? io(socketOptions) : io(options.url, socketOptions);
    this.conversations = new ConversationList(() => this.userId);
    this.presence = new PresenceStore((ids) => this.fetchPresence(ids));
    this.stream = new Stream({
      sync: async (cursors, since, changed_after) =>
        await this.request("sync", {
          cursors,
          ...(since === undefined ? {} : { since }),
          ...(changed_after === undefined ? {} : { changed_after }),
        }),
      connected: () => this.socket.connected,
      deliver: (message) => this.delivered(message),
      update: (message) => {
        this.conversations.messageChanged(message);
        this.conversationListeners.emit(message.conversation_id, { kind: "update", message });
      },
      unknownConversation: () => this.conversations.refreshSoon(() => this.loadConversations()),
    });
    this.outbox = new Outbox({
      connected: () => this.socket.connected,
      send: async (payload) => (await this.request("message:send", payload)).message,
      acked: (message) => this.stream.ingest(message),
      changed: (conversationId) => {
        this.outboxListeners.emit(conversationId);
        this.saveOutboxSoon();
      },
      discardedElsewhere: (clientId) => this.outboxStore?.isDiscarded(clientId) ?? false,
    });
    this.listen();
    if (options.autoConnect !== false) this.connect();
  }

  // ---- connection ------------------------------------------------------------------------

  /** Where the connection is: see {@link ConnectionState}. */
  get state(): ConnectionState {
    return this.stateValue;
  }

  /** The current user, from the latest token's claims (known once the first token is fetched). */
  get me(): { id: string; name: string | undefined } | undefined {
    return this.userId === undefined ? undefined : { id: this.userId, name: this.userName };
  }

  /** Called on every change of `state`. */
  onState(listener: (state: ConnectionState) => void): Unsubscribe {
    return this.stateListeners.add(listener);
  }

  /**
   * Starts the first connection of a client created with `autoConnect: false`. Does nothing
   * once started (the client then reconnects by itself) or closed.
   */
  connect(): void {
    if (this.started || this.stateValue === "closed") return;
    this.started = true;
    void this.renew();
  }

  /** Connects again after `unauthorized` or `ended` (say, once the user signed in again). */
  reconnect(): void {
    if (this.stateValue === "closed") return;
    this.renewals = 0;
    this.refusals = 0;
    this.stopTimers();
    this.setState("reconnecting");
    this.socket.disconnect();
    void this.renew();
  }

  /** Disconnects for good and releases everything: listeners, timers, pending sends. */
  close(): void {
    if (this.stateValue === "closed") return;
    this.setState("closed");
    this.stopTimers();
    for (const t of this.typingState.values()) clearTimeout(t.idle);
    this.typingState.clear();
    for (const [event, handler] of this.socketHandlers) this.socket.off(event, handler as never);
    this.socketHandlers.length = 0;
    this.socket.io.off("reconnect_attempt", this.onReconnectAttempt);
    this.socket.disconnect();
    // What is unsent stays stored for the user's next client; closing empties the outbox.
    this.saveOutbox();
    this.outboxStore?.close();
    this.outboxStore = undefined;
    this.outbox.close();
    this.stream.close();
    this.presence.close();
    this.conversations.close();
    this.stateListeners.clear();
    this.conversationListeners.clear();
    this.messageListeners.clear();
    this.outboxListeners.clear();
    this.eventListeners.clear();
    this.receipts.clear();
    this.readMarks.clear();
  }

  // ---- conversations ---------------------------------------------------------------------

  /** The direct conversation with `userId`: created, or the existing one. */
  async createDirect(userId: UserId, options?: RequestOptions): Promise<Conversation> {
    const { conversation } = await this.request("conversation:create", { kind: "direct", user_id: userId }, options);
    this.learn(conversation);
    return conversation;
  }

  /** A new group with the current user as its owner, and these members. */
  async createGroup(title: string, memberIds: UserId[], options?: RequestOptions): Promise<Conversation> {
    const { conversation } = await this.request(
      "conversation:create",
      { kind: "group", title, member_ids: memberIds },
      options,
    );
    this.learn(conversation);
    return conversation;
  }

  /** Fetches the conversation list (and refreshes `conversations`). */
  async listConversations(options?: RequestOptions): Promise<Conversation[]> {
    return this.loadConversations(options);
  }

  /** Adds members to a group (owner or admin only). */
  async addMembers(conversationId: string, userIds: UserId[], options?: RequestOptions): Promise<Conversation> {
    const { conversation } = await this.request(
      "conversation:members:add",
      { conversation_id: conversationId, user_ids: userIds },
      options,
    );
    this.conversations.upsert(conversation);
    return conversation;
  }

  /** Removes members from a group (owner or admin only). */
  async removeMembers(conversationId: string, userIds: UserId[], options?: RequestOptions): Promise<Conversation> {
    const { conversation } = await this.request(
      "conversation:members:remove",
      { conversation_id: conversationId, user_ids: userIds },
      options,
    );
    this.conversations.upsert(conversation);
    return conversation;
  }

  /**
   * A page of a conversation's members, in member order (owner, admins, then by when they joined): the
   * first without `after`, then the one after each page's `next` (`null` after the last). `limit` is
   * 1–1000, 100 by default. A conversation object carries only its first 100 members; this loads
   * the rest of a large group on demand.
   */
  async listMembers(
    conversationId: string,
    page: { after?: string; limit?: number } = {},
    options?: RequestOptions,
  ): Promise<MembersPage> {
    return this.request(
      "conversation:members:list",
      {
        conversation_id: conversationId,
        ...(page.after !== undefined && { after: page.after }),
        ...(page.limit !== undefined && { limit: page.limit }),
      },
      options,
    );
  }

  /** Every member of a conversation, page by page (`for await (const m of client.members(id))`). */
  async *members(conversationId: string, page: { limit?: number } = {}, options?: RequestOptions): AsyncGenerator<Member> {
    let after: string | undefined;
    do {
      const answer = await this.listMembers(conversationId, { after, limit: page.limit }, options);
      yield* answer.members;
      after = answer.next ?? undefined;
    } while (after !== undefined);
  }

  /** Leaves a group; it is forgotten here (its unsent messages fail with `not_found`). */
  async leave(conversationId: string, options?: RequestOptions): Promise<void> {
    await this.request("conversation:leave", { conversation_id: conversationId }, options);
    this.removed(conversationId);
  }

  // ---- messages --------------------------------------------------------------------------

  /**
   * Sends a message through the outbox: it is queued at once (shown in `pending()`, and kept in
   * `outboxStorage` if given), then sent and retried with the same `client_id` across timeouts,
   * outages and reconnects until the server stores it, after the conversation's earlier
   * messages. The promise settles in every case:
   * - resolves with the stored message;
   * - rejects with the server's refusal when retrying can't change it (`too_large`,
   *   `not_found`, …): the entry stays `failed`, for `retry()` or `discard()`;
   * - rejects with `timeout` when not stored within `sendTimeoutMs` (or `options.timeoutMs`),
   *   or with `signal.reason` when `options.signal` aborts: the message stays queued and is
   *   still sent; only the waiting ends;
   * - rejects with `closed` when the client is closed first.
   *
   * Rejections from the client carry `error.clientId`; pass `options.clientId` to know it up front.
   */
  send(conversationId: string, body: string, options: SendOptions = {}): Promise<Message> {
    this.stopTyping(conversationId);
    const { clientId = newClientId(), signal, timeoutMs = this.options.sendTimeoutMs, attachments = [] } = options;
    const ids = attachments.map((a) => (typeof a === "string" ? a : a.id));
    return this.outbox.add(conversationId, body, clientId, { signal, timeoutMs }, ids);
  }

  // ---- attachments and search ------------------------------------------------------------

  /**
   * Uploads a file (`POST /api/attachments`) for a later `send(..., { attachments })`; resolves
   * with the attachment as the server stored it (its type read from the bytes, an image's
   * dimensions). Rejects with a ConfabError: `invalid_payload` (a type the server doesn't
   * accept, or one the bytes contradict), `too_large`, `rate_limited`, or `disconnected` when
   * the server can't be reached (then upload again: nothing was stored).
   */
  async uploadAttachment(file: Blob, options: UploadOptions = {}): Promise<Attachment> {
    const name = options.name ?? (typeof File !== "undefined" && file instanceof File ? file.name : undefined);
    const url = this.apiUrl(`/api/attachments${name === undefined ? "" : `?name=${encodeURIComponent(name)}`}`);
    const token = await this.options.getToken();
    const headers = { authorization: `Bearer ${token}`, "content-type": file.type || "application/octet-stream" };
    const { status, body } =
      typeof XMLHttpRequest === "undefined"
        ? await fetchJson(url, { method: "POST", headers, body: file, signal: options.signal })
        : await xhrUpload(url, headers, file, options);
    options.onProgress?.(file.size, file.size);
    if (status === 201) return (body as { data: { attachment: Attachment } }).data.attachment;
    throw apiError(body, status);
  }

  /**
   * A URL that downloads an attachment without a token for a while (10–20 minutes), for an
   * `<img src>` or a download link: the server checks the user may still see it.
   */
  async attachmentUrl(attachmentId: string, options: { signal?: AbortSignal } = {}): Promise<string> {
    const token = await this.options.getToken();
    const { status, body } = await fetchJson(this.apiUrl(`/api/attachments/${encodeURIComponent(attachmentId)}/link`), {
      headers: { authorization: `Bearer ${token}` },
      signal: options.signal,
    });
    if (status !== 200) throw apiError(body, status);
    return this.apiUrl((body as { data: { url: string } }).data.url);
  }

  /** Full-text search over the user's conversations, newest first; see `message:search`. */
  search(query: string, options: SearchOptions = {}): Promise<SearchPage> {
    const { conversationId, before, limit, ...request } = options;
    return this.request(
      "message:search",
      {
        query,
        ...(conversationId !== undefined && { conversation_id: conversationId }),
        ...(before !== undefined && { before }),
        ...(limit !== undefined && { limit }),
      },
      request,
    );
  }

  /** An absolute URL on the server for `path`. */
  private apiUrl(path: string): string {
    const base = this.options.url ?? (typeof location === "undefined" ? "" : location.origin);
    return new URL(path, base).toString();
  }

  /** Messages not yet stored (of one conversation, or all), oldest first. */
  pending(conversationId?: string): OutboxEntry[] {
    return this.outbox.list(conversationId);
  }

  /**
   * Sends a `failed` entry again (same `client_id`); for a queued one, waits for it. Settles as
   * `send()` does.
   */
  retry(clientId: string, options: WaitOptions = {}): Promise<Message> {
    const { signal, timeoutMs = this.options.sendTimeoutMs } = options;
    return this.outbox.retry(clientId, { signal, timeoutMs });
  }

  /**
   * Drops an entry from the outbox (and from `outboxStorage`): it is not sent. Whoever waits for
   * it is rejected. An entry being sent may still be stored by the server.
   */
  discard(clientId: string): void {
    if (!this.outbox.has(clientId)) return;
    this.outbox.discard(clientId);
    // For the user's other tabs: a copy they hold (without Web Locks) is not sent either.
    this.outboxStore?.discard(clientId);
  }

  /** Called when a conversation's outbox entries change. */
  onOutbox(conversationId: string, listener: () => void): Unsubscribe {
    return this.outboxListeners.add(conversationId, listener);
  }

  /** Edits one of the user's messages; resolves with it as stored. */
  async edit(conversationId: string, messageId: string, body: string, options?: RequestOptions): Promise<Message> {
    const { message } = await this.request(
      "message:edit",
      { conversation_id: conversationId, message_id: messageId, body },
      options,
    );
    // Our own socket gets no `message:updated` for it: the ack is the news.
    this.stream.change(message);
    return message;
  }

  /** Deletes one of the user's messages (its `body` becomes `null`); resolves with it as stored. */
  async delete(conversationId: string, messageId: string, options?: RequestOptions): Promise<Message> {
    const { message } = await this.request(
      "message:delete",
      { conversation_id: conversationId, message_id: messageId },
      options,
    );
    this.stream.change(message);
    return message;
  }

  /** A page of history, ascending by seq; see `message:history` in the protocol. */
  history(conversationId: string, options: HistoryOptions = {}): Promise<HistoryPage> {
    const { beforeSeq, afterSeq, limit, ...request } = options;
    return this.request(
      "message:history",
      {
        conversation_id: conversationId,
        ...(beforeSeq !== undefined && { before_seq: beforeSeq }),
        ...(afterSeq !== undefined && { after_seq: afterSeq }),
        ...(limit !== undefined && { limit }),
      },
      request,
    );
  }

  /** The highest seq delivered by the stream in a conversation (undefined when unknown). */
  cursor(conversationId: string): number | undefined {
    return this.stream.cursor(conversationId);
  }

  /** Every new message of every conversation, exactly once and in seq order per conversation. */
  onMessage(listener: (message: Message) => void): Unsubscribe {
    return this.messageListeners.add(listener);
  }

  /** Subscribes to one conversation's stream: messages, updates, typing and receipts. */
  subscribe(conversationId: string, handlers: ConversationHandlers): Unsubscribe {
    return this.conversationListeners.add(conversationId, (event) => {
      switch (event.kind) {
        case "message":
          handlers.message?.(event.message);
          break;
        case "update":
          handlers.update?.(event.message);
          break;
        case "typing":
          handlers.typing?.(event.typing);
          break;
        case "receipt":
          handlers.receipt?.(event.receipt);
          break;
      }
    });
  }

  /**
   * A store for one conversation's screen; call `dispose()` when done with it. (In React,
   * `useConversation` makes and disposes it.)
   */
  view(conversationId: string, options?: ViewOptions): ConversationView {
    return new ConversationView(this, conversationId, options);
  }

  /** Listens to an event of {@link ClientEventMap}. */
  on<E extends keyof ClientEventMap>(event: E, listener: (payload: ClientEventMap[E]) => void): Unsubscribe {
    return this.eventListeners.add(event, listener as (payload: unknown) => void);
  }

  // ---- typing, read marks, presence ------------------------------------------------------

  /**
   * Call on every keystroke: sends `typing:start` at most every 2 seconds, and `typing:stop`
   * once the user pauses (`typingIdleMs`) or sends.
   */
  typing(conversationId: string): void {
    const now = Date.now();
    const state = this.typingState.get(conversationId);
    if (state) clearTimeout(state.idle);
    const idle = setTimeout(() => this.stopTyping(conversationId), this.options.typingIdleMs);
    if (!state || now - state.startedAt >= 2_000) {
      this.fireAndForget("typing:start", { conversation_id: conversationId });
      this.typingState.set(conversationId, { startedAt: now, idle });
    } else {
      state.idle = idle;
    }
  }

  /** Says the user stopped typing (sent once, if `typing()` said they started). */
  stopTyping(conversationId: string): void {
    const state = this.typingState.get(conversationId);
    if (!state) return;
    clearTimeout(state.idle);
    this.typingState.delete(conversationId);
    this.fireAndForget("typing:stop", { conversation_id: conversationId });
  }

  /** Marks everything up to `seq` read. Lower or repeated marks are not sent. */
  async markRead(conversationId: string, seq: number, options?: RequestOptions): Promise<void> {
    if (seq <= (this.readMarks.get(conversationId) ?? 0)) return;
    this.readMarks.set(conversationId, seq);
    this.conversations.read(conversationId, seq, true);
    try {
      const { last_read_seq } = await this.request("conversation:read", { conversation_id: conversationId, seq }, options);
      this.conversations.read(conversationId, last_read_seq, true);
    } catch (e) {
      // Let a later call try again.
      if (this.readMarks.get(conversationId) === seq) this.readMarks.delete(conversationId);
      throw e;
    }
  }

  /**
   * Read marks of the other members: from the conversation's member list (as last loaded), moved
   * forward by `receipt` events since.
   */
  readMarksOf(conversationId: string): ReadonlyMap<UserId, number> {
    const marks = new Map<UserId, number>();
    for (const m of this.conversations.get(conversationId)?.members ?? []) {
      if (m.user_id !== this.userId && m.last_read_seq !== undefined) marks.set(m.user_id, m.last_read_seq);
    }
    for (const [user, seq] of this.receipts.get(conversationId) ?? []) {
      marks.set(user, Math.max(seq, marks.get(user) ?? 0));
    }
    return marks;
  }

  /** Asks for users' presence (see also the `presence` store, which follows it live). */
  async fetchPresence(userIds: UserId[], options?: RequestOptions): Promise<Presence[]> {
    if (userIds.length === 0) return [];
    return (await this.request("presence:get", { user_ids: userIds }, options)).presence;
  }

  // ---- requests --------------------------------------------------------------------------

  /**
   * The protocol layer, below the rest of the API: sends a client → server event of
   * docs/PROTOCOL.md as it is (its payload and answer are the wire's JSON) and resolves with the
   * ack's `data`. Rejects with a ConfabError: the server's, or `timeout` / `disconnected` /
   * `closed`; or with `signal.reason` on abort. While disconnected the request waits (up to the
   * timeout) for the connection to come back.
   */
  request<E extends keyof ClientEvents>(
    event: E,
    payload: ClientEvents[E][0],
    options: RequestOptions = {},
  ): Promise<ClientEvents[E][1]> {
    if (this.stateValue === "closed") return Promise.reject(ConfabError.client("closed", "the client is closed"));
    const { signal, timeoutMs = this.options.ackTimeoutMs } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(signal?.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      // Settling twice is harmless: after an abort the answer is ignored.
      this.socket.timeout(timeoutMs).emit(event, payload, (err: Error | null, reply: unknown) => {
        signal?.removeEventListener("abort", onAbort);
        if (err) {
          const code = err.message === "operation has timed out" ? "timeout" : "disconnected";
          reject(ConfabError.client(code, err.message));
          return;
        }
        const envelope = reply as Envelope<ClientEvents[E][1]>;
        if (envelope && envelope.ok === true) resolve(envelope.data);
        else reject(new ConfabError(envelope?.error ?? { code: "internal", message: "malformed ack" }));
      });
    });
  }

  /** Sizes of every internal map and the socket's listener counts, for leak checks. */
  stats(): Record<string, number> {
    return {
      socketListeners: listenerCount(this.socket),
      managerListeners: (this.socket.io as unknown as { listeners(e: string): unknown[] }).listeners("reconnect_attempt")
        .length,
      conversationSubscriptions: this.conversationListeners.size,
      messageListeners: this.messageListeners.size,
      outboxSubscriptions: this.outboxListeners.size,
      eventSubscriptions: this.eventListeners.size,
      stateListeners: this.stateListeners.size,
      typingTimers: this.typingState.size,
      receipts: this.receipts.size,
      ...prefix("stream.", this.stream.stats()),
      ...prefix("outbox.", this.outbox.stats()),
      ...prefix("conversations.", this.conversations.stats()),
      ...prefix("presence.", this.presence.stats()),
    };
  }

  // ---- internals -------------------------------------------------------------------------

  private setState(state: ConnectionState): void {
    if (this.stateValue === state || (this.stateValue === "closed" && state !== "closed")) return;
    this.stateValue = state;
    this.stateListeners.emit(state);
  }

  /** Whether the client has stopped: closed, or waiting for `reconnect()`. */
  private get stopped(): boolean {
    return this.stateValue === "closed" || this.stateValue === "unauthorized" || this.stateValue === "ended";
  }

  private stopTimers(): void {
    clearTimeout(this.retryTimer);
    clearTimeout(this.refreshTimer);
  }

  /**
   * Asks `getToken` for a token and checks it: one for another user than this client's is
   * refused (`user_changed`), and so is one known to be expired (`stale`: its `exp` is not later
   * than that of a session that ended or a token refused as expired).
   */
  private async nextToken(): Promise<
    { token: string; exp: number | undefined } | { problem: "user_changed" | "stale" | "unavailable" }
  > {
    let token: string;
    try {
      token = await this.options.getToken();
    } catch {
      return { problem: "unavailable" };
    }
    const claims = readClaims(token);
    if (claims.sub !== undefined) {
      // The first user the client sees is the one it is for, for good: what it holds (unsent
      // messages, stream cursors, the conversation list, read marks) is that user's.
      if (this.userId === undefined) this.userId = claims.sub;
      else if (claims.sub !== this.userId) return { problem: "user_changed" };
    }
    this.userName = claims.name ?? this.userName;
    this.adoptOutbox();
    if (claims.exp !== undefined && claims.exp <= this.deadExp) return { problem: "stale" };
    return { token, exp: claims.exp };
  }

  /**
   * Gets a usable token, then connects with it; without one, backs off and tries again, up to
   * `RENEWAL_TRIES`. The token is fetched before the connection is opened, so that a client
   * without a usable token opens nothing at all.
   */
  private async renew(): Promise<void> {
    clearTimeout(this.retryTimer);
    const next = await this.nextToken();
    if (this.stopped || this.socket.active) return;
    if ("problem" in next) {
      this.tokenProblem(next.problem);
      return;
    }
    this.readyToken = next;
    this.socket.connect();
  }

  /** socket.io's `auth`, on each connection attempt: the token checked by `renew`, or a fresh one. */
  private async handshakeToken(cb: (data: object) => void): Promise<void> {
    const ready = this.readyToken;
    this.readyToken = undefined;
    // The manager's own reconnections (after a transport failure) come without one.
    const next = ready ?? (await this.nextToken());
    if (this.stateValue === "closed") return;
    if ("problem" in next) {
      // The transport is open, but the server has seen no CONNECT: leave without one.
      this.socket.disconnect();
      this.tokenProblem(next.problem);
      return;
    }
    this.attempt = next;
    cb({ token: next.token });
  }

  /** No usable token for a new session: refuse another user's; otherwise back off and retry. */
  private tokenProblem(problem: "user_changed" | "stale" | "unavailable"): void {
    if (problem === "user_changed") {
      this.refuseOtherUser();
      return;
    }
    this.renewalFailed();
  }

  /** A token for another user: stop, before anything is sent with it (and leave the session). */
  private refuseOtherUser(): void {
    this.stopTimers();
    this.eventListeners.emit(
      "auth:error",
      new ConfabError({
        code: "unauthorized",
        message: `getToken returned a token for another user than this client's (${this.userId ?? "?"})`,
        reason: "user_changed",
      }),
    );
    this.setState("unauthorized");
    this.socket.disconnect();
  }

  /** A try at a token for a new session failed: again later (jittered), or give up: `ended`. */
  private renewalFailed(): void {
    if (++this.renewals >= RENEWAL_TRIES) {
      this.stopTimers();
      this.setState("ended");
      return;
    }
    this.setState("reconnecting");
    const delay = Math.min(this.maxDelay, this.baseDelay * 2 ** (this.renewals - 1));
    this.retryAfter(jitter(delay));
  }

  /** Calls `renew` after `ms`, unless the client stopped meanwhile. */
  private retryAfter(ms: number): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (!this.stopped) void this.renew();
    }, ms);
  }

  private get baseDelay(): number {
    return this.options.reconnectionDelayMs ?? 500;
  }

  private get maxDelay(): number {
    return this.options.reconnectionDelayMaxMs ?? 5_000;
  }

  /**
   * Once the user is known: takes over the messages earlier pages of this user left unsent,
   * before the first connection, so they go out with it.
   */
  private adoptOutbox(): void {
    const storage = this.options.outboxStorage;
    if (!storage || this.outboxStore !== undefined || this.userId === undefined || this.stateValue === "closed") return;
    this.outboxStore = new OutboxPersistence(storage, this.userId, newClientId(), webLocks(), {
      adopted: (entries) => {
        this.outbox.restore(entries);
        this.saveOutbox();
      },
      discarded: (clientIds) => this.outbox.dropDiscarded(clientIds),
    });
    this.outboxStore.start();
    this.saveOutbox();
  }

  private saveOutboxSoon(): void {
    if (this.outboxStore === undefined || this.outboxSaveQueued) return;
    this.outboxSaveQueued = true;
    queueMicrotask(() => {
      this.outboxSaveQueued = false;
      this.saveOutbox();
    });
  }

  private saveOutbox(): void {
    // A token for another user (a sign-in in the same tab) must not store under the first one.
    if (this.outboxStore === undefined || this.userId !== this.outboxStore.userId) return;
    this.outboxStore.save(this.outbox.snapshot());
  }

  private on_<A extends unknown[]>(event: string, handler: (...args: A) => void): void {
    this.socket.on(event, handler as never);
    this.socketHandlers.push([event, handler as never]);
  }

  private listen(): void {
    this.on_("connect", () => this.onConnect());
    this.on_("disconnect", (reason: string) => this.onDisconnect(reason));
    this.on_("connect_error", (err: Error & { data?: { code?: string; reason?: string; retry_after_ms?: number } }) =>
      this.onConnectError(err),
    );
    this.socket.io.on("reconnect_attempt", this.onReconnectAttempt);
    this.on_("message:new", ({ message }: ServerEvents["message:new"]) => this.stream.ingest(message));
    this.on_("message:updated", ({ message }: ServerEvents["message:updated"]) => this.stream.change(message));
    this.on_("conversation:new", ({ conversation }: ServerEvents["conversation:new"]) => {
      this.learn(conversation);
      this.eventListeners.emit("conversation:new", conversation);
    });
    this.on_("conversation:members", (change: ServerEvents["conversation:members"]) => {
      const conversation = this.conversations.membersChanged(
        change.conversation_id,
        change.changed,
        change.removed,
        change.member_count,
      );
      // Not in the list yet (its `conversation:list` answer is on the way): reload it to be sure.
      if (conversation === undefined) this.conversations.refreshSoon(() => this.loadConversations());
      else {
        this.eventListeners.emit("conversation:updated", conversation);
        // A group that shrank back to 100 or fewer: the copy held only its first page, so the list
        // no longer adds up. Its members are loaded again (all of them fit in one page).
        if (conversation.member_count <= 100 && conversation.members.length !== conversation.member_count) {
          void this.reloadMembers(conversation.id);
        }
      }
    });
    this.on_("conversation:removed", (payload: ServerEvents["conversation:removed"]) => {
      this.removed(payload.conversation_id);
      this.eventListeners.emit("conversation:removed", payload);
    });
    this.on_("receipt", (receipt: Receipt) => {
      if (receipt.user_id === this.userId) {
        // Read on another device of ours: badges clear here too.
        this.readMarks.set(receipt.conversation_id, Math.max(receipt.seq, this.readMarks.get(receipt.conversation_id) ?? 0));
        this.conversations.read(receipt.conversation_id, receipt.seq, true);
      } else {
        let marks = this.receipts.get(receipt.conversation_id);
        if (!marks) {
          marks = new Map();
          this.receipts.set(receipt.conversation_id, marks);
        }
        marks.set(receipt.user_id, Math.max(receipt.seq, marks.get(receipt.user_id) ?? 0));
      }
      this.conversationListeners.emit(receipt.conversation_id, { kind: "receipt", receipt });
    });
    this.on_("typing", (typing: Typing) => {
      this.conversationListeners.emit(typing.conversation_id, { kind: "typing", typing });
    });
    this.on_("presence", (presence: Presence) => {
      this.presence.set(presence);
      this.eventListeners.emit("presence", presence);
    });
    this.on_("session:expiring", () => void this.refreshSession());
    this.on_("session:expired", ({ expires_at }: ServerEvents["session:expired"]) => {
      // The server ended the session: its token, and any ending no later, is expired.
      const ended = Math.floor(Date.parse(expires_at) / 1000);
      this.deadExp = Math.max(this.deadExp, this.sessionExp ?? 0, Number.isFinite(ended) ? ended : 0);
    });
    this.on_("resync", () => this.onResync());
  }

  private readonly onReconnectAttempt = (): void => {
    if (!this.stopped) this.setState("reconnecting");
  };

  private onConnect(): void {
    this.renewals = 0;
    this.refusals = 0;
    this.refreshRetries = 0;
    this.sessionExp = this.attempt?.exp;
    ++this.connectGeneration;
    // Outgoing messages first: they don't depend on the rest.
    this.outbox.pump();
    // This catch-up covers any `resync` that came before it.
    this.catchUpAgain = false;
    this.catchUp(0);
  }

  /**
   * `resync`: events may have been missed without a seq gap showing it. Catch up as after a
   * reconnect, but on the same connection: the outbox is not concerned (its sends get their
   * acks as usual). Several at once make one catch-up, plus at most one more if they come
   * while one runs (what it read may predate what the `resync` is about).
   */
  private onResync(): void {
    if (this.stateValue === "closed" || !this.socket.connected) return; // the next connect catches up
    this.eventListeners.emit("resync", {});
    if (this.catchingUp) this.catchUpAgain = true;
    else this.catchUp(RESYNC_LOOKBACK_MS);
  }

  /** Missed messages, edits and deletions, the conversation list and presence; then `live`. */
  private catchUp(lookbackMs: number): void {
    this.setState("syncing");
    const generation = ++this.catchUpGeneration;
    this.catchingUp = true;
    this.stream.resync(lookbackMs);
    this.presence.refresh();
    const current = () => generation === this.catchUpGeneration && this.socket.connected && this.stateValue !== "closed";
    this.loadConversations()
      .then(() => this.stream.idle())
      .then(
        () => {
          if (!current()) return;
          this.catchingUp = false;
          if (this.catchUpAgain) {
            this.catchUpAgain = false;
            this.catchUp(RESYNC_LOOKBACK_MS);
          } else {
            this.setState("live");
          }
        },
        () => {
          // The list failed (timeout, outage): try again shortly if still connected.
          if (current()) {
            clearTimeout(this.retryTimer);
            this.retryTimer = setTimeout(() => current() && this.catchUp(lookbackMs), 1_000);
          }
        },
      );
  }

  private onDisconnect(reason: string): void {
    if (this.stateValue === "closed") return;
    // Typing states end with the connection (the server says so to the others).
    for (const t of this.typingState.values()) clearTimeout(t.idle);
    this.typingState.clear();
    // Others' presence can't be followed while we're away; it is fetched again on reconnect.
    this.presence.forget();
    clearTimeout(this.refreshTimer);
    if (this.stopped) return;
    this.setState("reconnecting");
    if (reason === "io server disconnect") {
      // The server ended the session (the token expired) or dropped us on purpose: socket.io
      // doesn't reconnect by itself then. Renew with a fresh token, after a jittered pause so
      // that clients dropped together don't come back together.
      this.retryAfter(Math.random() * this.baseDelay);
    }
  }

  private onConnectError(err: Error & { data?: { code?: string; reason?: string; retry_after_ms?: number } }): void {
    if (this.stopped) return;
    // A transport failure: the manager keeps retrying by itself (with jittered backoff).
    if (this.socket.active) {
      this.reportRefusal(err);
      if (this.stateValue !== "connecting") this.setState("reconnecting");
      return;
    }
    // The server refused the handshake: `data` says why (`{ code, reason }`); a server
    // without it sends only `message`.
    const code = err.data?.code ?? err.message;
    if (code === "unauthorized") {
      const reason = err.data?.reason ?? (looksExpired(this.attempt?.token) ? "expired" : "invalid");
      this.eventListeners.emit("auth:error", new ConfabError({ code: "unauthorized", message: err.message, reason }));
      if (reason !== "expired") {
        this.stopTimers();
        this.setState("unauthorized");
        return;
      }
      // Expired by the server's clock: so is every token ending no later. Only a token that
      // ends later is worth a try; `renew` asks for one, with backoff, and gives up in time.
      this.deadExp = Math.max(this.deadExp, this.attempt?.exp ?? 0);
      this.renewalFailed();
      return;
    }
    // rate_limited (no sooner than its retry_after_ms), too_many_connections, unavailable, or
    // something new: back off and try again.
    const backoff = jitter(Math.min(30_000, 1_000 * 2 ** Math.min(this.refusals++, 5)));
    const told = err.data?.retry_after_ms;
    const delay = code === "rate_limited" && told !== undefined ? told * (1 + Math.random() / 2) : backoff;
    this.setState("reconnecting");
    this.retryAfter(delay);
  }

  /**
   * A handshake the server answered with an HTTP error (403 for an origin or host it doesn't
   * allow, 429/503 for too many new sessions) reaches socket.io as "xhr poll error", the body
   * in the transport's context. The body is the protocol's error envelope (the server lets the
   * refused origin read it), whose message names the setting: pass it on, once.
   */
  private reportRefusal(err: Error & { description?: unknown; context?: unknown }): void {
    const status = err.description;
    if (typeof status !== "number" || status < 400) return;
    const text = (err.context as { responseText?: unknown } | undefined)?.responseText;
    if (typeof text !== "string") return;
    let body: { error?: { code?: string; message?: string; retry_after_ms?: number } };
    try {
      body = JSON.parse(text);
    } catch {
      return;
    }
    const error = body?.error;
    if (!error?.code || !error.message || error.message === this.lastRefusal) return;
    this.lastRefusal = error.message;
    this.eventListeners.emit(
      "refused",
      new ConfabError({ code: error.code as ErrorBody["code"], message: error.message, retry_after_ms: error.retry_after_ms }),
    );
  }

  /**
   * `session:expiring`: swap in a fresh token (`auth:refresh`), on the same connection. A token
   * that doesn't end later than the session's renews nothing and is not sent; nor is a refused
   * or failed refresh answered by reconnecting (that would need a token as good). Either way the
   * refresh is tried again a few times, with backoff (a host app's token cache may renew late);
   * if the session ends first, the client renews it with a new connection, or ends.
   */
  private async refreshSession(): Promise<void> {
    clearTimeout(this.refreshTimer);
    const generation = this.connectGeneration;
    const current = () => generation === this.connectGeneration && !this.stopped && this.socket.connected;
    const next = await this.nextToken();
    if (!current()) return; // a new session has its own token, or none is wanted
    if ("problem" in next) {
      if (next.problem === "user_changed") this.refuseOtherUser();
      else this.retryRefresh(generation);
      return;
    }
    if (next.exp !== undefined && this.sessionExp !== undefined && next.exp <= this.sessionExp) {
      this.retryRefresh(generation);
      return;
    }
    try {
      await this.request("auth:refresh", { token: next.token });
      if (generation === this.connectGeneration) {
        this.sessionExp = next.exp;
        this.refreshRetries = 0;
      }
    } catch (e) {
      if (e instanceof ConfabError) {
        this.eventListeners.emit("auth:error", e);
        if (e.reason === "expired") this.deadExp = Math.max(this.deadExp, next.exp ?? 0);
      }
      if (current()) this.retryRefresh(generation);
    }
  }

  private retryRefresh(generation: number): void {
    if (++this.refreshRetries > REFRESH_RETRIES) return; // the session's end will tell
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(
      () => {
        if (generation === this.connectGeneration) void this.refreshSession();
      },
      jitter(this.maxDelay * 2 ** (this.refreshRetries - 1)),
    );
  }

  /** Loads a conversation's first page of members again into `conversations`. */
  private async reloadMembers(conversationId: string): Promise<void> {
    try {
      const page = await this.listMembers(conversationId);
      const conversation = this.conversations.setMembers(conversationId, page.members, page.member_count);
      if (conversation) this.eventListeners.emit("conversation:updated", conversation);
    } catch {
      // Gone meanwhile, or offline: the next conversation list brings the members anyway.
    }
  }

  private async loadConversations(options?: RequestOptions): Promise<Conversation[]> {
    const { conversations } = await this.request("conversation:list", {}, options);
    for (const c of conversations) this.stream.track(c.id, c.last_seq);
    // Conversations we no longer belong to (removed while we were away) are forgotten.
    const ids = new Set(conversations.map((c) => c.id));
    for (const id of this.stream.conversations()) if (!ids.has(id)) this.removed(id);
    this.conversations.replaceAll(conversations);
    return conversations;
  }

  private learn(conversation: Conversation): void {
    this.stream.track(conversation.id, conversation.last_seq);
    this.conversations.upsert(conversation);
  }

  private removed(conversationId: string): void {
    this.stream.forget(conversationId);
    this.receipts.delete(conversationId);
    this.readMarks.delete(conversationId);
    this.outbox.dropConversation(
      conversationId,
      new ConfabError({ code: "not_found", message: "no longer a member of this conversation" }),
    );
    this.conversations.remove(conversationId);
  }

  private delivered(message: Message): void {
    this.conversations.messageDelivered(message);
    this.conversationListeners.emit(message.conversation_id, { kind: "message", message });
    this.messageListeners.emit(message);
  }

  private fireAndForget<E extends keyof ClientEvents>(event: E, payload: ClientEvents[E][0]): void {
    if (!this.socket.connected) return;
    this.request(event, payload).catch(() => {
      // Typing is best effort: a lost typing event is harmless.
    });
  }
}

/** `ms` ± 50%, at random: clients that fail together don't retry together. */
function jitter(ms: number): number {
  return ms * (0.5 + Math.random());
}

/** Every listener on a socket.io emitter, whatever the event: a leak shows up here. */
function listenerCount(emitter: unknown): number {
  const callbacks = (emitter as { _callbacks?: Record<string, unknown[]> })._callbacks ?? {};
  return Object.values(callbacks).reduce((n, list) => n + list.length, 0);
}

function prefix(p: string, stats: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(stats).map(([k, v]) => [p + k, v]));
}

/** A fresh idempotency key (at most 64 characters). */
export function newClientId(): string {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  // Old browsers on plain http: no randomUUID, but getRandomValues exists.
  const bytes = new Uint8Array(16);
  c.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export type { ErrorBody };

/** The envelope's error of an HTTP answer, as a ConfabError. */
function apiError(body: unknown, status: number): ConfabError {
  const error = (body as { error?: ErrorBody } | undefined)?.error;
  return new ConfabError(error ?? { code: "internal", message: `HTTP ${status}` });
}

/** An HTTP request answered with JSON; a failure to reach the server is `disconnected`. */
async function fetchJson(url: string, init: RequestInit): Promise<{ status: number; body: unknown }> {
  let response: Response;
  try {
    response = await fetch(url, init);
  } catch (e) {
    if (init.signal?.aborted) throw init.signal.reason;
    throw ConfabError.client("disconnected", e instanceof Error ? e.message : String(e));
  }
  const body: unknown = await response.json().catch(() => undefined);
  return { status: response.status, body };
}

/** An upload through XMLHttpRequest, the browser API that reports upload progress. */
function xhrUpload(
  url: string,
  headers: Record<string, string>,
  file: Blob,
  options: UploadOptions,
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => options.onProgress?.(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      let body: unknown;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = undefined;
      }
      resolve({ status: xhr.status, body });
    };
    xhr.onerror = () => reject(ConfabError.client("disconnected", "the upload failed"));
    const { signal } = options;
    if (signal) {
      if (signal.aborted) {
        reject(signal.reason);
        return;
      }
      signal.addEventListener(
        "abort",
        () => {
          xhr.abort();
          reject(signal.reason);
        },
        { once: true },
      );
    }
    xhr.send(file);
  });
}
