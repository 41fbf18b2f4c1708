// The gap-free stream: every message of every known conversation is delivered exactly once and
// in seq order, however the connection behaves.
//
// Messages reach the client three ways: `message:new` (others' messages), the ack of our own
// `message:send`, and `sync` answers (after a reconnect or a gap). Any of them may repeat or
// overtake another. Per conversation we keep the cursor (the highest seq delivered); a message
// right after it is delivered, one at or below it is a duplicate, and one further ahead waits in
// a buffer while a `sync` fetches what lies between.

import type { Message, SyncUpdate } from "./types.js";

export interface StreamHost {
  /** Calls `sync`; rejects when there is no answer (the stream retries after a reconnect). */
  sync(
    cursors: Record<string, number>,
    since?: string,
    changedAfter?: Record<string, number>,
  ): Promise<{ updates: SyncUpdate[]; server_time: string }>;
  /** Whether a request can be sent now. */
  connected(): boolean;
  /** A message to deliver: called once per (conversation, seq), in seq order. */
  deliver(message: Message): void;
  /** A delivered message changed (edited or deleted). */
  update(message: Message): void;
  /** A message arrived for a conversation the client didn't know. */
  unknownConversation(conversationId: string): void;
}

/** Delay before asking again when a sync made no progress on a gap. */
const STALL_RETRY_MS = 1000;

export class Stream {
  /** Highest seq delivered, per conversation. */
  private readonly cursors = new Map<string, number>();
  /** Messages that arrived ahead of a gap, per conversation (only non-empty maps are kept). */
  private readonly ahead = new Map<string, Map<number, Message>>();
  /** Conversations waiting for the next sync request. */
  private readonly wanted = new Set<string>();
  private inFlight = false;
  private scheduled = false;
  private stallTimer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  private readonly idleWaiters: (() => void)[] = [];
  /**
   * The latest server time we know we were up to date at (a sync's `server_time`, or a live
   * message's timestamp). After a reconnect, the next sync asks for changes since then: edits
   * and deletions made while we were away.
   */
  private upToDate: string | undefined;
  /** Set by `resync`: the next sync passes `since`. */
  private catchingUp = false;
  /** How far before `upToDate` that `since` goes (see `resync`). */
  private lookbackMs = 0;
  /**
   * Conversations with more changes than one answer held: the `since` they were asked with and
   * the seq of the last change received. The next sync asks for the rest with `changed_after`.
   */
  private readonly changesPending = new Map<string, { since: string; after: number }>();

  constructor(private readonly host: StreamHost) {}

  /** The highest seq delivered in a conversation, or undefined if the conversation is unknown. */
  cursor(conversationId: string): number | undefined {
    return this.cursors.get(conversationId);
  }

  /** Conversations the stream follows. */
  conversations(): string[] {
    return [...this.cursors.keys()];
  }

  /**
   * Starts following a conversation from `lastSeq`: later messages are delivered, earlier ones
   * are history. A conversation already followed keeps its cursor.
   */
  track(conversationId: string, lastSeq: number): void {
    if (!this.cursors.has(conversationId)) this.cursors.set(conversationId, lastSeq);
  }

  /** Stops following a conversation (we left it or were removed). */
  forget(conversationId: string): void {
    this.cursors.delete(conversationId);
    this.ahead.delete(conversationId);
    this.wanted.delete(conversationId);
    this.changesPending.delete(conversationId);
  }

  /** A message from any source. */
  ingest(message: Message): void {
    this.noteTime(message.created_at);
    const id = message.conversation_id;
    let cursor = this.cursors.get(id);
    if (cursor === undefined) {
      // Not known yet (we were added and `conversation:new` hasn't been seen, or it raced
      // with this message): follow it from here; earlier messages are its history.
      cursor = message.seq - 1;
      this.cursors.set(id, cursor);
      this.host.unknownConversation(id);
    }
    if (message.seq <= cursor) return; // a duplicate
    if (message.seq === cursor + 1) {
      this.deliverRun(id, message);
      return;
    }
    let ahead = this.ahead.get(id);
    if (!ahead) {
      ahead = new Map();
      this.ahead.set(id, ahead);
    }
    ahead.set(message.seq, message);
    this.requestSync([id]);
  }

  /** An edited or deleted message. */
  change(message: Message): void {
    this.noteTime(message.deleted_at ?? message.edited_at ?? message.created_at);
    const id = message.conversation_id;
    const cursor = this.cursors.get(id);
    if (cursor !== undefined && message.seq <= cursor) {
      this.host.update(message);
      return;
    }
    // Not delivered yet: keep the newer state if it waits in the buffer; otherwise the sync
    // that fills the gap will bring the message in its current state.
    const ahead = this.ahead.get(id);
    if (ahead?.has(message.seq)) ahead.set(message.seq, message);
    else if (cursor !== undefined) this.requestSync([id]);
  }

  /**
   * After every (re)connect, and on the server's `resync`: ask for everything after every
   * cursor, and what changed. `lookbackMs` moves `since` further back than the last time we
   * knew we were up to date: after a `resync`, live events seen since then don't prove that
   * nothing was missed (they may have come only from our own node). Calls made before the
   * request goes out are merged into one, with the longest lookback.
   */
  resync(lookbackMs = 0): void {
    this.catchingUp = true;
    // Changes still being paged through: while we were away, messages below the page's seq
    // may have changed too, so start their pages over (from the same `since`).
    for (const pending of this.changesPending.values()) pending.after = 0;
    this.lookbackMs = Math.max(this.lookbackMs, lookbackMs);
    this.requestSync(this.conversations());
  }

  /** Server timestamps are RFC 3339 UTC with milliseconds, so they compare as strings. */
  private noteTime(time: string | null | undefined): void {
    if (time && (this.upToDate === undefined || time > this.upToDate)) this.upToDate = time;
  }

  /** Resolves once no sync is wanted or in flight (after a reconnect: once caught up). */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  close(): void {
    this.closed = true;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
    clearTimeout(this.stallTimer);
    this.cursors.clear();
    this.ahead.clear();
    this.wanted.clear();
    this.changesPending.clear();
  }

  /** Sizes of the internal maps, for leak checks. */
  stats(): { cursors: number; ahead: number; wanted: number; changesPending: number } {
    return {
      cursors: this.cursors.size,
      ahead: this.ahead.size,
      wanted: this.wanted.size,
      changesPending: this.changesPending.size,
    };
  }

  /** Delivers `first`, then whatever waited in the buffer right behind it. */
  private deliverRun(id: string, first: Message): void {
    let next: Message | undefined = first;
    const ahead = this.ahead.get(id);
    while (next) {
      this.cursors.set(id, next.seq);
      ahead?.delete(next.seq);
      this.host.deliver(next);
      // A subscriber may have made us forget the conversation meanwhile.
      if (this.cursors.get(id) !== next.seq) return;
      next = ahead?.get(next.seq + 1);
    }
    if (ahead && ahead.size === 0) this.ahead.delete(id);
  }

  private requestSync(ids: string[]): void {
    if (this.closed) return;
    for (const id of ids) this.wanted.add(id);
    if (this.scheduled || this.inFlight || this.wanted.size === 0) return;
    // Gather whatever else wants a sync in this tick into the same request.
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.closed || this.inFlight) return;
    if (this.wanted.size === 0) return this.checkIdle();
    if (!this.host.connected()) return; // `resync` runs on the next connect
    const cursors: Record<string, number> = {};
    for (const id of this.wanted) {
      const cursor = this.cursors.get(id);
      if (cursor !== undefined) cursors[id] = cursor;
    }
    this.wanted.clear();
    if (Object.keys(cursors).length === 0) return this.checkIdle();
    this.inFlight = true;
    const lookbackMs = this.lookbackMs;
    let since = this.catchingUp ? before(this.upToDate, lookbackMs) : undefined;
    // One `since` for the whole request: the earliest wanted. A conversation asked with an
    // earlier one than it needed gets changes it already has again, which `change` applies
    // again harmlessly (by id).
    let changedAfter: Record<string, number> | undefined;
    for (const id of Object.keys(cursors)) {
      const pending = this.changesPending.get(id);
      if (!pending) continue;
      (changedAfter ??= {})[id] = pending.after;
      if (since === undefined || pending.since < since) since = pending.since;
    }
    this.catchingUp = false;
    this.lookbackMs = 0;
    let updates: SyncUpdate[];
    try {
      const answer = await this.host.sync(cursors, since, changedAfter);
      updates = answer.updates;
      // A sync without `since` (a gap while connected) is up to date too: live events covered
      // the rest.
      this.noteTime(answer.server_time);
    } catch {
      if (since !== undefined) {
        this.catchingUp = true;
        this.lookbackMs = Math.max(this.lookbackMs, lookbackMs);
      }
      // No answer: ask again on the next connect (or now, if we are still connected).
      this.inFlight = false;
      if (!this.closed) {
        for (const id of Object.keys(cursors)) this.wanted.add(id);
        if (this.host.connected()) this.retryLater();
      }
      return;
    }
    this.inFlight = false;
    if (this.closed) return;
    let stalled = false;
    for (const update of updates) {
      const id = update.conversation_id;
      const before = this.cursors.get(id);
      if (before === undefined) continue; // forgotten meanwhile
      for (const message of update.messages) this.ingest(message);
      const changed = update.changed ?? [];
      for (const message of changed) this.change(message);
      const lastChanged = changed.at(-1);
      if (since !== undefined && update.changed_has_more && lastChanged) {
        this.changesPending.set(id, { since, after: lastChanged.seq });
        this.wanted.add(id);
      } else if (since !== undefined) this.changesPending.delete(id);
      const after = this.cursors.get(id);
      if (after === undefined) continue;
      if (update.has_more) this.wanted.add(id);
      else if (this.ahead.has(id)) {
        // Still a gap after a complete answer: the server hadn't committed it yet when it
        // answered (the `message:new` overtook the sync). Ask again, gently if no progress.
        this.wanted.add(id);
        if (after === before) stalled = true;
      }
    }
    if (this.wanted.size > 0) {
      if (stalled) this.retryLater();
      else this.requestSync([]);
    }
    this.checkIdle();
  }

  private isIdle(): boolean {
    return !this.inFlight && !this.scheduled && this.wanted.size === 0 && this.ahead.size === 0;
  }

  private checkIdle(): void {
    if (this.isIdle()) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  private retryLater(): void {
    if (this.stallTimer !== undefined) return;
    this.stallTimer = setTimeout(() => {
      this.stallTimer = undefined;
      this.requestSync([]);
    }, STALL_RETRY_MS);
  }
}

/** A server time moved back by `ms` (in the server's format: RFC 3339 UTC with milliseconds). */
function before(time: string | undefined, ms: number): string | undefined {
  if (time === undefined || ms <= 0) return time;
  const t = Date.parse(time);
  return Number.isNaN(t) ? time : new Date(t - ms).toISOString();
}
