// One conversation's screen: its messages (live ones from the stream, older ones paged in on
// demand), the user's messages still on their way, who is typing, and how far others have read.
//
// Live and history meet without a gap or an overlap: the view subscribes to the stream first,
// then loads history *up to the stream's cursor*. Messages delivered meanwhile are keyed by seq,
// so a message that both bring is kept once.

import type { ConnectionState, ConversationHandlers } from "../client.js";
import { ConfabError } from "../errors.js";
import type { Unsubscribe } from "../listeners.js";
import type { OutboxEntry } from "../outbox.js";
import type { HistoryPage, Message, UserId } from "../types.js";
import type { ConversationListSnapshot } from "./conversations.js";
import { Store } from "./store.js";

export interface ViewOptions {
  /** Messages per history page. Default 50. */
  pageSize?: number;
  /** How long a `typing: true` counts without news (the server ends it after 6 s). Default 8 s. */
  typingTimeoutMs?: number;
}

export interface ConversationViewSnapshot {
  /** `loading` until the first page is in; `error` when the conversation can't be shown. */
  status: "loading" | "ready" | "error";
  error: ConfabError | undefined;
  /** Ascending seq, no gaps from the oldest loaded to the newest delivered. */
  messages: Message[];
  /** The user's messages not stored yet (sending, waiting to retry, or failed). */
  pending: OutboxEntry[];
  /** Whether older messages exist than the oldest loaded. */
  hasMore: boolean;
  loadingOlder: boolean;
  /** Other members typing now. */
  typing: UserId[];
  /** Other members' read marks seen since connecting. */
  readBy: ReadonlyMap<UserId, number>;
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
  history(conversationId: string, page: { beforeSeq?: number; limit?: number }): Promise<HistoryPage>;
  pending(conversationId: string): OutboxEntry[];
  readMarksOf(conversationId: string): ReadonlyMap<UserId, number>;
  send(conversationId: string, body: string): Promise<Message>;
  retry(clientId: string): Promise<Message>;
  discard(clientId: string): void;
  edit(conversationId: string, messageId: string, body: string): Promise<Message>;
  delete(conversationId: string, messageId: string): Promise<Message>;
  markRead(conversationId: string, seq: number): Promise<void>;
  typing(conversationId: string): void;
  stopTyping(conversationId: string): void;
}

export class ConversationView extends Store<ConversationViewSnapshot> {
  private readonly messages = new Map<number, Message>();
  private readonly typingUsers = new Map<UserId, ReturnType<typeof setTimeout>>();
  private readonly unsubscribes: Unsubscribe[] = [];
  private status: ConversationViewSnapshot["status"] = "loading";
  private error: ConfabError | undefined;
  private hasMore = false;
  private loadingOlder = false;
  private starting = false;
  private disposed = false;
  private readonly pageSize: number;
  private readonly typingTimeoutMs: number;

  constructor(
    private readonly host: ViewHost,
    readonly conversationId: string,
    options: ViewOptions = {},
  ) {
    super();
    this.pageSize = options.pageSize ?? 50;
    this.typingTimeoutMs = options.typingTimeoutMs ?? 8_000;
    const id = conversationId;
    this.unsubscribes.push(
      host.subscribe(id, {
        message: (m) => {
          this.messages.set(m.seq, m);
          // Their message ends their typing, even before the server says so.
          this.typingEnded(m.sender_id);
          this.changed();
        },
        update: (m) => {
          if (this.messages.has(m.seq)) {
            this.messages.set(m.seq, m);
            this.changed();
          }
        },
        typing: (t) => {
          if (t.user_id === host.me?.id) return;
          if (t.typing) this.typingStarted(t.user_id);
          else this.typingEnded(t.user_id);
          this.changed();
        },
        receipt: () => this.changed(),
      }),
      host.onOutbox(id, () => this.changed()),
      host.onState((state) => {
        if (state === "reconnecting") {
          // Typing states don't survive a disconnect; the server ends them for the others too.
          for (const t of this.typingUsers.values()) clearTimeout(t);
          this.typingUsers.clear();
          this.changed();
        }
        // A first load that failed for want of a connection is tried again once back.
        if (state === "live" && this.status !== "ready") this.start();
      }),
    );
    this.start();
  }

  /** Loads the page of messages before the oldest loaded. */
  async loadOlder(): Promise<void> {
    if (this.status !== "ready" || this.loadingOlder || !this.hasMore || this.disposed) return;
    const oldest = Math.min(...this.messages.keys());
    this.loadingOlder = true;
    this.changed();
    try {
      const page = await this.host.history(this.conversationId, { beforeSeq: oldest, limit: this.pageSize });
      if (this.disposed) return;
      for (const m of page.messages) if (!this.messages.has(m.seq)) this.messages.set(m.seq, m);
      this.hasMore = page.has_more;
    } finally {
      this.loadingOlder = false;
      if (!this.disposed) this.changed();
    }
  }

  send(body: string): Promise<Message> {
    return this.host.send(this.conversationId, body);
  }

  retry(clientId: string): Promise<Message> {
    return this.host.retry(clientId);
  }

  discard(clientId: string): void {
    this.host.discard(clientId);
  }

  edit(messageId: string, body: string): Promise<Message> {
    return this.host.edit(this.conversationId, messageId, body);
  }

  delete(messageId: string): Promise<Message> {
    return this.host.delete(this.conversationId, messageId);
  }

  /** Marks everything shown as read. */
  markRead(): Promise<void> {
    const last = Math.max(0, ...this.messages.keys());
    return last > 0 ? this.host.markRead(this.conversationId, last) : Promise.resolve();
  }

  typing(): void {
    this.host.typing(this.conversationId);
  }

  stopTyping(): void {
    this.host.stopTyping(this.conversationId);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const u of this.unsubscribes.splice(0)) u();
    for (const t of this.typingUsers.values()) clearTimeout(t);
    this.typingUsers.clear();
    this.messages.clear();
    this.clearSubscribers();
  }

  protected build(): ConversationViewSnapshot {
    const seqs = [...this.messages.keys()].sort((a, b) => a - b);
    return {
      status: this.status,
      error: this.error,
      messages: seqs.map((s) => this.messages.get(s) as Message),
      pending: this.host.pending(this.conversationId),
      hasMore: this.hasMore,
      loadingOlder: this.loadingOlder,
      typing: [...this.typingUsers.keys()],
      readBy: new Map(this.host.readMarksOf(this.conversationId)),
    };
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
        for (const m of page.messages) if (!this.messages.has(m.seq)) this.messages.set(m.seq, m);
        this.hasMore = page.has_more;
        this.status = "ready";
        this.error = undefined;
        this.changed();
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

  private typingStarted(user: UserId): void {
    clearTimeout(this.typingUsers.get(user));
    this.typingUsers.set(
      user,
      setTimeout(() => {
        this.typingUsers.delete(user);
        this.changed();
      }, this.typingTimeoutMs),
    );
  }

  private typingEnded(user: UserId): void {
    const timer = this.typingUsers.get(user);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.typingUsers.delete(user);
  }
}
