// The client: one Socket.IO connection, its authentication, and the pieces built on it (the
// outbox, the gap-free stream, and the stores the UI reads).

import { io, type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";

import { ConfabError } from "./errors.js";
import { KeyedListeners, Listeners, type Unsubscribe } from "./listeners.js";
import { Outbox, type OutboxEntry } from "./outbox.js";
import { OutboxPersistence, type OutboxStorage } from "./outbox-storage.js";
import { ConversationList } from "./stores/conversations.js";
import { PresenceStore } from "./stores/presence.js";
import { ConversationView, type ViewOptions } from "./stores/view.js";
import { Stream } from "./stream.js";
import { looksExpired, readClaims } from "./token.js";
import type {
  ClientEvents,
  Conversation,
  Envelope,
  ErrorBody,
  HistoryPage,
  Message,
  Presence,
  Receipt,
  ServerEvents,
  Typing,
  UserId,
} from "./types.js";

export interface ConnectOptions {
  /** The confab server, e.g. `https://chat.example.com`. Default: the page's own origin. */
  url?: string;
  /**
   * Returns a token for the current user. Called for the first connection, on every
   * reconnection, and when the session is about to expire, so it should return a fresh token
   * (from your backend) rather than a cached one that may have expired.
   */
  getToken: () => string | Promise<string>;
  /** How long to wait for an answer to a request. Default 10 s. */
  ackTimeoutMs?: number;
  /** First and longest delay between reconnection attempts. Defaults 500 ms and 5 s. */
  reconnectionDelayMs?: number;
  reconnectionDelayMaxMs?: number;
  /** After how long without a `typing()` call the client sends `typing:stop`. Default 3 s. */
  typingIdleMs?: number;
  /** Passed to `socket.io-client` as is (transports, path, …). */
  socketOptions?: Partial<ManagerOptions & SocketOptions>;
  /**
   * Where unsent messages are kept across page loads, typically `localStorage`. With it, a
   * message written offline is sent by the next client of the same user even if this page was
   * closed first. Without it (the default) the outbox lives as long as the client.
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
 * - `reconnecting`: the connection dropped; the client keeps trying.
 * - `unauthorized`: the server refused the token as invalid; call `reconnect()` after signing in.
 * - `closed`: `close()` was called.
 */
export type ConnectionState = "connecting" | "syncing" | "live" | "reconnecting" | "unauthorized" | "closed";

/** What a conversation subscriber is told. */
export interface ConversationHandlers {
  /** A new message: each exactly once, in seq order. */
  message?: (message: Message) => void;
  /** A message already delivered was edited or deleted. */
  update?: (message: Message) => void;
  typing?: (typing: Typing) => void;
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
  /** The token was refused or a refresh failed; `error.reason` says why. */
  "auth:error": ConfabError;
}

/** The unauthorized reasons after which retrying with a fresh token makes sense. */
const RETRY_AUTH_LIMIT = 5;

/**
 * On `resync`, how far before the last event seen the catch-up asks for edits and deletions.
 * What was missed may predate events that did arrive (a dead node's last changes precede its
 * reaping by the node timeout, 15 s by default; other nodes' changes during a Redis outage
 * precede the events our own node kept delivering meanwhile).
 */
const RESYNC_LOOKBACK_MS = 120_000;

export function connect(options: ConnectOptions): ConfabClient {
  return new ConfabClient(options);
}

export class ConfabClient {
  /** The underlying Socket.IO socket, for diagnostics and tests. Prefer the typed methods. */
  readonly socket: Socket;
  readonly conversations: ConversationList;
  readonly presence: PresenceStore;

  private readonly options: Required<Pick<ConnectOptions, "ackTimeoutMs" | "typingIdleMs">> & ConnectOptions;
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
  private lastToken: string | undefined;
  private tokenError: unknown;
  private authRetries = 0;
  /** Consecutive refused handshakes other than `unauthorized`: backs off the retries. */
  private refusals = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private connectGeneration = 0;
  /** The latest catch-up (after a connect or a `resync`): only it may set the state `live`. */
  private catchUpGeneration = 0;
  private catchingUp = false;
  /** A `resync` arrived during a catch-up: run one more when it ends. */
  private catchUpAgain = false;
  private readonly socketHandlers: [string, (...args: never[]) => void][] = [];
  private userId: string | undefined;
  private userName: string | undefined;

  constructor(options: ConnectOptions) {
    this.options = { ackTimeoutMs: 10_000, typingIdleMs: 3_000, ...options };
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
      auth: (cb: (data: object) => void) => {
        this.freshToken().then(
          (token) => cb({ token }),
          // No token to be had right now: try with the last one; the refusal is handled in
          // `onConnectError`, which retries because `tokenError` is set.
          () => cb({ token: this.lastToken ?? "" }),
        );
      },
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
    });
    this.listen();
    if (options.autoConnect !== false) this.connect();
  }

  // ---- connection ------------------------------------------------------------------------

  get state(): ConnectionState {
    return this.stateValue;
  }

  /** The current user, from the latest token's claims (known once the first token is fetched). */
  get me(): { id: string; name: string | undefined } | undefined {
    return this.userId === undefined ? undefined : { id: this.userId, name: this.userName };
  }

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
    this.socket.connect();
  }

  /** Connects again after `unauthorized` (say, once the user signed in again). */
  reconnect(): void {
    if (this.stateValue === "closed") return;
    this.authRetries = 0;
    clearTimeout(this.retryTimer);
    this.setState("reconnecting");
    this.socket.disconnect().connect();
  }

  /** Disconnects for good and releases everything: listeners, timers, pending sends. */
  close(): void {
    if (this.stateValue === "closed") return;
    this.setState("closed");
    clearTimeout(this.retryTimer);
    for (const t of this.typingState.values()) clearTimeout(t.idle);
    this.typingState.clear();
    for (const [event, handler] of this.socketHandlers) this.socket.off(event, handler as never);
    this.socketHandlers.length = 0;
    this.socket.io.off("reconnect_attempt", this.onReconnectAttempt);
    this.socket.disconnect();
    // What is unsent stays stored for the user's next client; closing empties the outbox.
    this.saveOutbox();
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

  async createDirect(userId: UserId): Promise<Conversation> {
    const { conversation } = await this.request("conversation:create", { kind: "direct", user_id: userId });
    this.learn(conversation);
    return conversation;
  }

  async createGroup(title: string, memberIds: UserId[]): Promise<Conversation> {
    const { conversation } = await this.request("conversation:create", {
      kind: "group",
      title,
      member_ids: memberIds,
    });
    this.learn(conversation);
    return conversation;
  }

  /** Fetches the conversation list (and refreshes `conversations`). */
  async listConversations(): Promise<Conversation[]> {
    return this.loadConversations();
  }

  async addMembers(conversationId: string, userIds: UserId[]): Promise<Conversation> {
    const { conversation } = await this.request("conversation:members:add", {
      conversation_id: conversationId,
      user_ids: userIds,
    });
    this.conversations.upsert(conversation);
    return conversation;
  }

  async removeMembers(conversationId: string, userIds: UserId[]): Promise<Conversation> {
    const { conversation } = await this.request("conversation:members:remove", {
      conversation_id: conversationId,
      user_ids: userIds,
    });
    this.conversations.upsert(conversation);
    return conversation;
  }

  async leave(conversationId: string): Promise<void> {
    await this.request("conversation:leave", { conversation_id: conversationId });
    this.removed(conversationId);
  }

  // ---- messages --------------------------------------------------------------------------

  /**
   * Sends a message through the outbox: it is retried with the same `client_id` across
   * timeouts, outages and reconnects until the server stores it, and resolves then. It rejects
   * only on an answer that retrying can't change (the entry then stays in the outbox as
   * `failed`: see `retry` and `discard`).
   */
  send(conversationId: string, body: string, clientId: string = newClientId()): Promise<Message> {
    this.stopTyping(conversationId);
    return this.outbox.add(conversationId, body, clientId);
  }

  /** Messages not yet stored, oldest first. */
  pending(conversationId?: string): OutboxEntry[] {
    return this.outbox.list(conversationId);
  }

  retry(clientId: string): Promise<Message> {
    return this.outbox.retry(clientId);
  }

  discard(clientId: string): void {
    this.outbox.discard(clientId);
  }

  /** Called when a conversation's outbox entries change. */
  onOutbox(conversationId: string, listener: () => void): Unsubscribe {
    return this.outboxListeners.add(conversationId, listener);
  }

  async edit(conversationId: string, messageId: string, body: string): Promise<Message> {
    const { message } = await this.request("message:edit", {
      conversation_id: conversationId,
      message_id: messageId,
      body,
    });
    // Our own socket gets no `message:updated` for it: the ack is the news.
    this.stream.change(message);
    return message;
  }

  async delete(conversationId: string, messageId: string): Promise<Message> {
    const { message } = await this.request("message:delete", {
      conversation_id: conversationId,
      message_id: messageId,
    });
    this.stream.change(message);
    return message;
  }

  /** A page of history; see `message:history` in the protocol. */
  history(
    conversationId: string,
    page: { beforeSeq?: number; afterSeq?: number; limit?: number } = {},
  ): Promise<HistoryPage> {
    return this.request("message:history", {
      conversation_id: conversationId,
      ...(page.beforeSeq !== undefined && { before_seq: page.beforeSeq }),
      ...(page.afterSeq !== undefined && { after_seq: page.afterSeq }),
      ...(page.limit !== undefined && { limit: page.limit }),
    });
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

  /** A store for one conversation's screen; call `dispose()` when done with it. */
  view(conversationId: string, options?: ViewOptions): ConversationView {
    return new ConversationView(this, conversationId, options);
  }

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

  stopTyping(conversationId: string): void {
    const state = this.typingState.get(conversationId);
    if (!state) return;
    clearTimeout(state.idle);
    this.typingState.delete(conversationId);
    this.fireAndForget("typing:stop", { conversation_id: conversationId });
  }

  /** Marks everything up to `seq` read. Lower or repeated marks are not sent. */
  async markRead(conversationId: string, seq: number): Promise<void> {
    if (seq <= (this.readMarks.get(conversationId) ?? 0)) return;
    this.readMarks.set(conversationId, seq);
    this.conversations.read(conversationId, seq, true);
    try {
      const { last_read_seq } = await this.request("conversation:read", { conversation_id: conversationId, seq });
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
    for (const m of this.conversations.get(conversationId)?.conversation.members ?? []) {
      if (m.user_id !== this.userId && m.last_read_seq !== undefined) marks.set(m.user_id, m.last_read_seq);
    }
    for (const [user, seq] of this.receipts.get(conversationId) ?? []) {
      marks.set(user, Math.max(seq, marks.get(user) ?? 0));
    }
    return marks;
  }

  /** Asks for users' presence (see also the `presence` store, which follows it live). */
  async fetchPresence(userIds: UserId[]): Promise<Presence[]> {
    if (userIds.length === 0) return [];
    return (await this.request("presence:get", { user_ids: userIds })).presence;
  }

  // ---- requests --------------------------------------------------------------------------

  /**
   * Sends a client → server event and resolves with the ack's `data`. Rejects with a
   * ConfabError: the server's, or `timeout` / `disconnected` / `closed`. While disconnected the
   * request waits (up to the timeout) for the connection to come back.
   */
  request<E extends keyof ClientEvents>(event: E, payload: ClientEvents[E][0]): Promise<ClientEvents[E][1]> {
    if (this.stateValue === "closed") return Promise.reject(ConfabError.client("closed", "the client is closed"));
    return new Promise((resolve, reject) => {
      this.socket.timeout(this.options.ackTimeoutMs).emit(event, payload, (err: Error | null, reply: unknown) => {
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

  private async freshToken(): Promise<string> {
    try {
      const token = await this.options.getToken();
      this.tokenError = undefined;
      this.lastToken = token;
      const claims = readClaims(token);
      this.userId = claims.sub ?? this.userId;
      this.userName = claims.name ?? this.userName;
      this.adoptOutbox();
      return token;
    } catch (e) {
      this.tokenError = e;
      throw e;
    }
  }

  /**
   * Once the user is known: takes over the messages earlier pages of this user left unsent,
   * before the first connection, so they go out with it.
   */
  private adoptOutbox(): void {
    const storage = this.options.outboxStorage;
    if (!storage || this.outboxStore !== undefined || this.userId === undefined || this.stateValue === "closed") return;
    this.outboxStore = new OutboxPersistence(storage, this.userId, newClientId());
    this.outbox.restore(this.outboxStore.adopt());
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
      const conversation = this.conversations.membersChanged(change.conversation_id, change.changed, change.removed);
      // Not in the list yet (its `conversation:list` answer is on the way): reload it to be sure.
      if (conversation === undefined) this.conversations.refreshSoon(() => this.loadConversations());
      else this.eventListeners.emit("conversation:updated", conversation);
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
    this.on_("resync", () => this.onResync());
  }

  private readonly onReconnectAttempt = (): void => {
    if (this.stateValue !== "closed" && this.stateValue !== "unauthorized") this.setState("reconnecting");
  };

  private onConnect(): void {
    this.authRetries = 0;
    this.refusals = 0;
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
    if (this.stateValue !== "unauthorized") this.setState("reconnecting");
    if (reason === "io server disconnect") {
      // The server ended the session (the token expired) or dropped us on purpose: socket.io
      // doesn't reconnect by itself then. Connect again; the auth function gets a fresh token.
      this.retryTimer = setTimeout(() => this.stateValue !== "closed" && this.socket.connect(), 0);
    }
  }

  private onConnectError(err: Error & { data?: { code?: string; reason?: string; retry_after_ms?: number } }): void {
    if (this.stateValue === "closed") return;
    // A transport failure: the manager keeps retrying by itself.
    if (this.socket.active) {
      if (this.stateValue !== "connecting") this.setState("reconnecting");
      return;
    }
    // The server refused the handshake. Today's server sends only `message`; the protocol's
    // `data` ({ code, reason }) is used when present.
    const code = err.data?.code ?? err.message;
    let delay: number;
    if (code === "unauthorized") {
      const reason =
        err.data?.reason ?? (this.tokenError !== undefined || looksExpired(this.lastToken) ? "expired" : "invalid");
      const error = new ConfabError({ code: "unauthorized", message: err.message, reason });
      this.eventListeners.emit("auth:error", error);
      if ((reason !== "expired" && this.tokenError === undefined) || ++this.authRetries > RETRY_AUTH_LIMIT) {
        this.setState("unauthorized");
        return;
      }
      delay = Math.min(30_000, 250 * 2 ** (this.authRetries - 1));
    } else if (code === "rate_limited") {
      delay = err.data?.retry_after_ms ?? 1_000;
    } else {
      // too_many_connections, unavailable, or something new: back off and try again.
      delay = Math.min(30_000, 1_000 * 2 ** Math.min(this.refusals++, 5));
    }
    this.setState("reconnecting");
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (this.stateValue !== "closed" && this.stateValue !== "unauthorized") this.socket.connect();
    }, delay);
  }

  /** `session:expiring`: swap in a fresh token; if that fails, reconnect with one. */
  private async refreshSession(): Promise<void> {
    const generation = this.connectGeneration;
    try {
      const token = await this.freshToken();
      if (generation !== this.connectGeneration) return; // a new session has its own token
      await this.request("auth:refresh", { token });
    } catch (e) {
      if (e instanceof ConfabError) this.eventListeners.emit("auth:error", e);
      // Too late (the session ended and a new one began) or closed: nothing to repair.
      if (generation !== this.connectGeneration || this.stateValue === "closed" || !this.socket.connected) return;
      this.socket.disconnect().connect();
    }
  }

  private async loadConversations(): Promise<Conversation[]> {
    const { conversations } = await this.request("conversation:list", {});
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
