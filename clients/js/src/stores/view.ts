// One conversation's screen: a window of its messages (live ones from the stream, older and
// newer ones paged in on demand), the user's messages still on their way, who is typing, and how
// far others have read.
//
// Live and history meet without a gap or an overlap: the view subscribes to the stream first,
// then loads history *up to the stream's cursor*. Messages delivered meanwhile are keyed by seq,
// so a message that both bring is kept once.
//
// The window is bounded (`maxMessages`), so a view open all day holds what a screen can show,
// not the whole conversation. While it reaches the live end, new messages push the oldest out
// (`hasMore`: `loadOlder()` brings them back). Paging older past the bound pushes the newest out
// instead: the window leaves the live end (`hasNewer`), new messages aren't added, and
// `loadNewer()` pages forward until it is back. Each change copies only what changed into the
// next snapshot (the message array when messages changed, …), at most `maxMessages` long.

import type { ConnectionState, ConversationHandlers, HistoryOptions, RequestOptions, SendOptions } from "../client.js";
import { ConfabError } from "../errors.js";
import type { Unsubscribe } from "../listeners.js";
import type { OutboxEntry, WaitOptions } from "../outbox.js";
import type { HistoryPage, Message, UserId } from "../types.js";
import type { ConversationListSnapshot } from "./conversations.js";
import { Store } from "./store.js";

/** Options of a conversation view (`client.view(id, options)`, `useConversation(id, options)`). */
export interface ViewOptions {
  /** Messages per history page. Default 50. */
  pageSize?: number;
  /**
   * The most messages the view holds (the window; see {@link ConversationView}). Default 1000;
   * at least twice `pageSize`.
   */
  maxMessages?: number;
  /** How long a `typing: true` counts without news (the server ends it after 6 s). Default 8 s. */
  typingTimeoutMs?: number;
}

/** What a view shows: `view.getSnapshot()`, and what `useConversation` returns. */
export interface ConversationViewSnapshot {
  /** `loading` until the first page is in; `error` when the conversation can't be shown. */
  status: "loading" | "ready" | "error";
  /** Why the status is `error`. */
  error: ConfabError | undefined;
  /**
   * The window: ascending seq, no gaps, at most `maxMessages`. While `hasNewer` is false its
   * newest is the newest delivered.
   */
  messages: Message[];
  /** The user's messages not stored yet (sending, waiting to retry, or failed), oldest first. */
  pending: OutboxEntry[];
  /** Whether older messages exist than the oldest in the window (`loadOlder()`). */
  hasMore: boolean;
  /** A `loadOlder()` is under way. */
  loadingOlder: boolean;
  /**
   * Whether newer messages exist than the newest in the window: it left the live end after
   * paging older past `maxMessages`. New messages are not added meanwhile: `loadNewer()`.
   */
  hasNewer: boolean;
  /** A `loadNewer()` is under way. */
  loadingNewer: boolean;
  /** Other members typing now. */
  typing: UserId[];
  /** Other members' read marks: the member list's, moved forward by receipts since. */
  readBy: ReadonlyMap<UserId, number>;
}

/**
 * What a component does with a conversation. A {@link ConversationView} has these, and so has
 * what `useConversation` returns as `view` (which works before the view is ready, and follows
 * it).
 */
export interface ConversationActions {
  readonly conversationId: string;
  /** `client.send()` in this conversation. */
  send(body: string, options?: SendOptions): Promise<Message>;
  /** `client.retry()`. */
  retry(clientId: string, options?: WaitOptions): Promise<Message>;
  /** `client.discard()`. */
  discard(clientId: string): void;
  /** `client.edit()` in this conversation. */
  edit(messageId: string, body: string, options?: RequestOptions): Promise<Message>;
  /** `client.delete()` in this conversation. */
  delete(messageId: string, options?: RequestOptions): Promise<Message>;
  /** Pages in the messages before the oldest in the window; nothing when there are none. */
  loadOlder(options?: RequestOptions): Promise<void>;
  /** Pages in the messages after the newest in the window, back to the live end. */
  loadNewer(options?: RequestOptions): Promise<void>;
  /** Marks everything up to the newest message in the window read. */
  markRead(options?: RequestOptions): Promise<void>;
  /** `client.typing()` in this conversation: call on every keystroke. */
  typing(): void;
  /** `client.stopTyping()` in this conversation. */
  stopTyping(): void;
}

/** What a view needs from the client (the client's public API). */
export interface ViewHost {
  readonly me: { id: string } | undefined;
  readonly state: ConnectionState;
  readonly conversations: {
    subscribe(listener: () => void): Unsubscribe;
    getSnapshot(): ConversationListSnapshot;
  };
  subscribe(conversationId: string, handlers: ConversationHandlers): Unsubscribe;
  onOutbox(conversationId: string, listener: () => void): Unsubscribe;
  onState(listener: (state: ConnectionState) => void): Unsubscribe;
  cursor(conversationId: string): number | undefined;
  history(conversationId: string, options: HistoryOptions): Promise<HistoryPage>;
  pending(conversationId: string): OutboxEntry[];
  readMarksOf(conversationId: string): ReadonlyMap<UserId, number>;
  send(conversationId: string, body: string, options?: SendOptions): Promise<Message>;
  retry(clientId: string, options?: WaitOptions): Promise<Message>;
  discard(clientId: string): void;
  edit(conversationId: string, messageId: string, body: string, options?: RequestOptions): Promise<Message>;
  delete(conversationId: string, messageId: string, options?: RequestOptions): Promise<Message>;
  markRead(conversationId: string, seq: number, options?: RequestOptions): Promise<void>;
  typing(conversationId: string): void;
  stopTyping(conversationId: string): void;
}

/** How many pages `loadNewer` reads at most to get back to the live end in one call. */
const NEWER_PAGES_PER_CALL = 20;

/**
 * One conversation's screen, as a store: `subscribe` and `getSnapshot` (a
 * {@link ConversationViewSnapshot}), and the {@link ConversationActions}. Holds a bounded window
 * of messages: see {@link ViewOptions.maxMessages}. Call `dispose()` when done with it.
 */
export class ConversationView extends Store<ConversationViewSnapshot> implements ConversationActions {
  /** The window: ascending seq, contiguous. */
  private readonly messages: Message[] = [];
  private readonly typingUsers = new Map<UserId, ReturnType<typeof setTimeout>>();
  private readonly unsubscribes: Unsubscribe[] = [];
  private status: ConversationViewSnapshot["status"] = "loading";
  private error: ConfabError | undefined;
  private hasMore = false;
  /** The window reaches the live end: delivered messages join it. */
  private atLiveEnd = true;
  private loadingOlder = false;
  private loadingNewer = false;
  private starting = false;
  private disposed = false;
  private readonly pageSize: number;
  private readonly maxMessages: number;
  private readonly typingTimeoutMs: number;
  /** Parts of the last snapshot still valid (a part is rebuilt only when it changed). */
  private parts: { messages?: Message[]; pending?: OutboxEntry[]; readBy?: ReadonlyMap<UserId, number>; typing?: UserId[] } =
    {};

  /** @internal Made by `client.view(id)`. */
  constructor(
    private readonly host: ViewHost,
    readonly conversationId: string,
    options: ViewOptions = {},
  ) {
    super();
    this.pageSize = options.pageSize ?? 50;
    this.maxMessages = Math.max(options.maxMessages ?? 1000, 2 * this.pageSize);
    this.typingTimeoutMs = options.typingTimeoutMs ?? 8_000;
    const id = conversationId;
    this.unsubscribes.push(
      host.subscribe(id, {
        message: (m) => {
          // Their message ends their typing, even before the server says so.
          const typingChanged = m.sender_id !== null && this.typingEnded(m.sender_id);
          if (this.atLiveEnd) {
            this.put([m]);
            this.trimOldest();
            this.changed("messages");
          }
          if (typingChanged) this.changed("typing");
        },
        update: (m) => {
          const i = this.indexOf(m.seq);
          if (i >= 0) {
            this.messages[i] = m;
            this.changed("messages");
          }
        },
        typing: (t) => {
          if (t.user_id === host.me?.id) return;
          if (t.typing) this.typingStarted(t.user_id);
          else this.typingEnded(t.user_id);
          this.changed("typing");
        },
        receipt: () => this.changed("readBy"),
      }),
      host.onOutbox(id, () => this.changed("pending")),
      host.onState((state) => {
        if (state === "reconnecting" && this.typingUsers.size > 0) {
          // Typing states don't survive a disconnect; the server ends them for the others too.
          for (const t of this.typingUsers.values()) clearTimeout(t);
          this.typingUsers.clear();
          this.changed("typing");
        }
        if (state === "live") {
          // The member list, with its read marks, was loaded again.
          this.changed("readBy");
          // A first load that failed for want of a connection is tried again once back.
          if (this.status !== "ready") this.start();
        }
      }),
    );
    this.start();
  }

  async loadOlder(options?: RequestOptions): Promise<void> {
    if (this.status !== "ready" || this.loadingOlder || !this.hasMore || this.disposed) return;
    const oldest = this.messages[0]?.seq;
    if (oldest === undefined) return;
    this.loadingOlder = true;
    this.changed();
    try {
      const page = await this.host.history(this.conversationId, {
        beforeSeq: oldest,
        limit: this.pageSize,
        ...options,
      });
      if (this.disposed) return;
      this.put(page.messages);
      this.hasMore = page.has_more;
      // Past the bound the newest go: the window leaves the live end.
      const over = this.messages.length - this.maxMessages;
      if (over > 0) {
        this.messages.splice(this.messages.length - over, over);
        this.atLiveEnd = false;
      }
      this.parts.messages = this.parts.readBy = undefined;
    } finally {
      this.loadingOlder = false;
      if (!this.disposed) this.changed();
    }
  }

  async loadNewer(options?: RequestOptions): Promise<void> {
    if (this.status !== "ready" || this.loadingNewer || this.atLiveEnd || this.disposed) return;
    this.loadingNewer = true;
    this.changed();
    try {
      for (let pages = 0; pages < NEWER_PAGES_PER_CALL && !this.atLiveEnd; pages++) {
        const newest = this.messages[this.messages.length - 1]?.seq ?? 0;
        const page = await this.host.history(this.conversationId, {
          afterSeq: newest,
          limit: this.pageSize,
          ...options,
        });
        if (this.disposed) return;
        this.put(page.messages);
        this.trimOldest();
        this.parts.messages = this.parts.readBy = undefined;
        // Back at the live end once nothing newer is stored than what the stream delivered:
        // messages delivered while the window was away are in a later page, if any.
        const last = this.messages[this.messages.length - 1]?.seq ?? 0;
        if (!page.has_more && last >= (this.host.cursor(this.conversationId) ?? 0)) this.atLiveEnd = true;
        this.changed();
      }
    } finally {
      this.loadingNewer = false;
      if (!this.disposed) this.changed();
    }
  }

  send(body: string, options?: SendOptions): Promise<Message> {
    return this.host.send(this.conversationId, body, options);
  }

  retry(clientId: string, options?: WaitOptions): Promise<Message> {
    return this.host.retry(clientId, options);
  }

  discard(clientId: string): void {
    this.host.discard(clientId);
  }

  edit(messageId: string, body: string, options?: RequestOptions): Promise<Message> {
    return this.host.edit(this.conversationId, messageId, body, options);
  }

  delete(messageId: string, options?: RequestOptions): Promise<Message> {
    return this.host.delete(this.conversationId, messageId, options);
  }

  markRead(options?: RequestOptions): Promise<void> {
    const last = this.messages[this.messages.length - 1]?.seq ?? 0;
    return last > 0 ? this.host.markRead(this.conversationId, last, options) : Promise.resolve();
  }

  typing(): void {
    this.host.typing(this.conversationId);
  }

  stopTyping(): void {
    this.host.stopTyping(this.conversationId);
  }

  /** Releases everything: subscriptions, timers, messages. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const u of this.unsubscribes.splice(0)) u();
    for (const t of this.typingUsers.values()) clearTimeout(t);
    this.typingUsers.clear();
    this.messages.length = 0;
    this.parts = {};
    this.clearSubscribers();
  }

  /** What the view holds, for tests and leak checks. */
  stats(): { messages: number; typingTimers: number; subscribers: number } {
    return { messages: this.messages.length, typingTimers: this.typingUsers.size, subscribers: this.subscriberCount };
  }

  protected build(): ConversationViewSnapshot {
    const parts = this.parts;
    parts.messages ??= this.messages.slice();
    parts.pending ??= this.host.pending(this.conversationId);
    parts.readBy ??= new Map(this.host.readMarksOf(this.conversationId));
    parts.typing ??= [...this.typingUsers.keys()];
    return {
      status: this.status,
      error: this.error,
      messages: parts.messages,
      pending: parts.pending,
      hasMore: this.hasMore,
      loadingOlder: this.loadingOlder,
      hasNewer: !this.atLiveEnd,
      loadingNewer: this.loadingNewer,
      typing: parts.typing,
      readBy: parts.readBy,
    };
  }

  /** The state changed: `part` (if any) of the snapshot is rebuilt, the rest reused. */
  protected override changed(part?: "messages" | "pending" | "readBy" | "typing"): void {
    if (part !== undefined) this.parts[part] = undefined;
    // Read marks are compared with the messages shown: fetched again with them.
    if (part === "messages") this.parts.readBy = undefined;
    super.changed();
  }

  /** Waits for the conversation list, then loads the newest page below the stream's cursor. */
  private start(): void {
    if (this.starting || this.disposed || this.status === "ready") return;
    const list = this.host.conversations;
    if (!list.getSnapshot().loaded) {
      const unsubscribe = list.subscribe(() => {
        if (!list.getSnapshot().loaded) return;
        unsubscribe();
        const i = this.unsubscribes.indexOf(unsubscribe);
        if (i >= 0) this.unsubscribes.splice(i, 1);
        this.start();
      });
      this.unsubscribes.push(unsubscribe);
      return;
    }
    const cursor = this.host.cursor(this.conversationId);
    if (cursor === undefined) {
      this.status = "error";
      this.error = new ConfabError({ code: "not_found", message: "no such conversation" });
      this.changed();
      return;
    }
    this.starting = true;
    this.host.history(this.conversationId, { beforeSeq: cursor + 1, limit: this.pageSize }).then(
      (page) => {
        this.starting = false;
        if (this.disposed) return;
        this.put(page.messages);
        this.trimOldest();
        this.hasMore ||= page.has_more;
        this.status = "ready";
        this.error = undefined;
        this.changed("messages");
      },
      (e: unknown) => {
        this.starting = false;
        if (this.disposed) return;
        if (e instanceof ConfabError && !e.retryable) {
          this.status = "error";
          this.error = e;
          this.changed();
        }
        // Retryable: tried again when the connection is live.
      },
    );
  }

  /** Adds messages to the window by seq (a message already there is kept: it may be newer). */
  private put(messages: Message[]): void {
    for (const m of messages) {
      const last = this.messages[this.messages.length - 1];
      // The usual cases first: the next live message, or a page older than everything.
      if (last === undefined || m.seq > last.seq) {
        this.messages.push(m);
        continue;
      }
      const i = this.insertionPoint(m.seq);
      if (this.messages[i]?.seq !== m.seq) this.messages.splice(i, 0, m);
    }
  }

  /** Past the bound, the oldest go (they can be paged in again). */
  private trimOldest(): void {
    const over = this.messages.length - this.maxMessages;
    if (over <= 0) return;
    this.messages.splice(0, over);
    this.hasMore = true;
  }

  /** Index of the message with this seq in the window, or -1. */
  private indexOf(seq: number): number {
    const i = this.insertionPoint(seq);
    return this.messages[i]?.seq === seq ? i : -1;
  }

  /** The first index whose seq is not below `seq` (binary search). */
  private insertionPoint(seq: number): number {
    let lo = 0;
    let hi = this.messages.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.messages[mid] as Message).seq < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private typingStarted(user: UserId): void {
    clearTimeout(this.typingUsers.get(user));
    this.typingUsers.set(
      user,
      setTimeout(() => {
        this.typingUsers.delete(user);
        this.changed("typing");
      }, this.typingTimeoutMs),
    );
  }

  /** Whether the user was typing. */
  private typingEnded(user: UserId): boolean {
    const timer = this.typingUsers.get(user);
    if (timer === undefined) return false;
    clearTimeout(timer);
    this.typingUsers.delete(user);
    return true;
  }
}
