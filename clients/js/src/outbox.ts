// The outbox: messages the user sent that the server hasn't acknowledged yet.
//
// Each entry keeps its `client_id` for life, so every attempt is the same message to the server,
// which stores it at most once. Entries are retried until acknowledged, or until the server gives
// an answer that retrying can't change (`invalid_payload`, `not_found`, `too_large`, …): then the
// entry stays, `failed`, for the user to retry or discard.
//
// Order: a conversation's messages are stored in the order they were written. So each
// conversation has at most one send in flight: the next goes once the one before is stored (or
// failed for good). Pipelining them would not keep that order under partial failure: when the
// first is answered `unavailable` and the second, already on its way, is stored, the retry of
// the first lands after it. Conversations don't wait for each other.

import { ConfabError } from "./errors.js";
import type { StoredEntry } from "./outbox-storage.js";
import type { Message } from "./types.js";

/**
 * - `queued`: waiting to be sent (for the connection, for the message before it in the
 *   conversation, or for a backoff after a failure that retrying may cure).
 * - `sending`: sent, the answer is awaited.
 * - `failed`: refused for good (`too_large`, `not_found`, …): sent again only by `retry()`.
 */
export type OutboxState = "queued" | "sending" | "failed";

/**
 * A message on its way: written, not stored yet. A record, so its fields have the protocol's
 * names, as a {@link Message} has: once stored, the message has the same `client_id`,
 * `conversation_id` and `body`.
 */
export interface OutboxEntry {
  /** The idempotency key the message is sent with, on every attempt. */
  readonly client_id: string;
  readonly conversation_id: string;
  readonly body: string;
  /** Ids of the uploaded attachments it carries. */
  readonly attachment_ids: readonly string[];
  readonly state: OutboxState;
  /** The last failure: the reason a `failed` entry stopped, or why a queued one waits. */
  readonly error: ConfabError | undefined;
  /** Attempts made so far. */
  readonly attempts: number;
  /** When it was written (ISO 8601), by this device's clock. */
  readonly created_at: string;
}

/** How long a caller waits for a send to be stored: the message is sent all the same. */
export interface WaitOptions {
  /** Stops waiting: the promise rejects with `signal.reason`; the message stays queued. */
  signal?: AbortSignal;
  /** Stops waiting after this long: rejects with `timeout`; the message stays queued. */
  timeoutMs?: number;
}

export interface OutboxHost {
  connected(): boolean;
  /** Emits `message:send`; rejects with a ConfabError (timeouts and disconnects included). */
  send(payload: { conversation_id: string; client_id: string; body: string; attachment_ids?: string[] }): Promise<Message>;
  /** The server stored the message. */
  acked(message: Message): void;
  /** The entries changed (for the UI). */
  changed(conversationId: string): void;
  /** Whether the user discarded this message elsewhere (another tab): then it is not sent. */
  discardedElsewhere(clientId: string): boolean;
}

interface Entry {
  clientId: string;
  conversationId: string;
  body: string;
  attachmentIds: string[];
  state: OutboxState;
  error: ConfabError | undefined;
  attempts: number;
  createdAt: number;
  /** Increments per attempt; a late answer to an older attempt is recognised by it. */
  attempt: number;
  waiters: Waiter[];
}

interface Waiter {
  resolve: (m: Message) => void;
  reject: (e: ConfabError) => void;
}

const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 10_000;

export class Outbox {
  private readonly entries: Entry[] = [];
  /** Conversations waiting (rate limit or backoff) until a time. */
  private readonly holdUntil = new Map<string, number>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;

  constructor(private readonly host: OutboxHost) {}

  /** Queues a message; resolves with it once stored (see `WaitOptions` for how long it waits). */
  add(
    conversationId: string,
    body: string,
    clientId: string,
    wait: WaitOptions = {},
    attachmentIds: string[] = [],
  ): Promise<Message> {
    if (this.closed) return Promise.reject(ConfabError.client("closed", "the client is closed").forSend(clientId));
    // Aborted already: nothing is queued, as `fetch` sends nothing.
    if (wait.signal?.aborted) return Promise.reject(wait.signal.reason);
    if (this.entries.some((e) => e.clientId === clientId)) {
      return Promise.reject(
        new ConfabError({ code: "invalid_payload", message: "client_id: already queued", field: "client_id" }, clientId),
      );
    }
    const entry: Entry = {
      clientId,
      conversationId,
      body,
      attachmentIds,
      state: "queued",
      error: undefined,
      attempts: 0,
      createdAt: Date.now(),
      attempt: 0,
      waiters: [],
    };
    const promise = this.waitFor(entry, wait);
    this.entries.push(entry);
    this.host.changed(conversationId);
    this.pump();
    return promise;
  }

  /** Sends a failed entry again, with the same `client_id`; waits for it like `add`. */
  retry(clientId: string, wait: WaitOptions = {}): Promise<Message> {
    const entry = this.entries.find((e) => e.clientId === clientId);
    if (!entry) return Promise.reject(new ConfabError({ code: "not_found", message: "no such outbox entry" }, clientId));
    if (wait.signal?.aborted) return Promise.reject(wait.signal.reason);
    const promise = this.waitFor(entry, wait);
    if (entry.state === "failed") {
      entry.state = "queued";
      this.host.changed(entry.conversationId);
      this.pump();
    }
    return promise;
  }

  /** Drops an entry (a failed one, typically); its senders' promises reject. */
  discard(clientId: string): void {
    const index = this.entries.findIndex((e) => e.clientId === clientId);
    if (index < 0) return;
    const [entry] = this.entries.splice(index, 1);
    if (!entry) return;
    const error = (entry.error ?? ConfabError.client("closed", "discarded")).forSend(entry.clientId);
    for (const w of entry.waiters.splice(0)) w.reject(error);
    this.host.changed(entry.conversationId);
  }

  /** Drops entries the user discarded elsewhere (another tab), without sending them. */
  dropDiscarded(clientIds: string[]): void {
    for (const id of clientIds) {
      const entry = this.entries.find((e) => e.clientId === id);
      if (entry) this.dropEntry(entry, ConfabError.client("closed", "discarded in another tab"));
    }
  }

  /** Whether an entry with this `client_id` is in the outbox. */
  has(clientId: string): boolean {
    return this.entries.some((e) => e.clientId === clientId);
  }

  /** The entries of one conversation (or all), oldest first. */
  list(conversationId?: string): OutboxEntry[] {
    return this.entries
      .filter((e) => conversationId === undefined || e.conversationId === conversationId)
      .map((e) => ({
        client_id: e.clientId,
        conversation_id: e.conversationId,
        body: e.body,
        attachment_ids: e.attachmentIds,
        state: e.state,
        error: e.error,
        attempts: e.attempts,
        created_at: new Date(e.createdAt).toISOString(),
      }));
  }

  /**
   * Takes in entries a page left behind (see outbox-storage.ts). Entries already here are kept
   * as they are; the rest join in creation order, so older messages are still sent first.
   */
  restore(stored: StoredEntry[]): void {
    if (this.closed) return;
    const changed = new Set<string>();
    for (const s of stored) {
      if (this.entries.some((e) => e.clientId === s.clientId)) continue;
      this.entries.push({
        clientId: s.clientId,
        conversationId: s.conversationId,
        body: s.body,
        attachmentIds: s.attachmentIds ?? [],
        state: s.state,
        error: s.error === undefined ? undefined : new ConfabError(s.error),
        attempts: s.attempts,
        createdAt: s.createdAt,
        attempt: 0,
        waiters: [],
      });
      changed.add(s.conversationId);
    }
    if (changed.size === 0) return;
    // Stable: entries of one page keep their order even with equal times.
    this.entries.sort((a, b) => a.createdAt - b.createdAt);
    for (const id of changed) this.host.changed(id);
    this.pump();
  }

  /** The entries as they should be stored. */
  snapshot(): StoredEntry[] {
    return this.entries.map((e) => ({
      clientId: e.clientId,
      conversationId: e.conversationId,
      body: e.body,
      ...(e.attachmentIds.length > 0 && { attachmentIds: e.attachmentIds }),
      state: e.state === "failed" ? "failed" : "queued",
      error: e.error === undefined ? undefined : { code: e.error.code, message: e.error.message },
      attempts: e.attempts,
      createdAt: e.createdAt,
    }));
  }

  /** A conversation is gone for us: its entries can never be sent. */
  dropConversation(conversationId: string, error: ConfabError): void {
    for (const entry of this.entries.filter((e) => e.conversationId === conversationId)) {
      entry.state = "failed";
      entry.error = error;
      for (const w of entry.waiters.splice(0)) w.reject(error.forSend(entry.clientId));
    }
    this.host.changed(conversationId);
  }

  /**
   * Sends what can be sent now: each conversation's oldest queued entry, unless one of its
   * entries is in flight or it waits (backoff, rate limit). Called on every connect and whenever
   * something changes.
   */
  pump(): void {
    if (this.closed || !this.host.connected()) return;
    const now = Date.now();
    const busy = new Set<string>();
    for (const e of this.entries) if (e.state === "sending") busy.add(e.conversationId);
    for (const entry of this.entries) {
      if (entry.state !== "queued") continue;
      const id = entry.conversationId;
      if (busy.has(id)) continue;
      // Whatever comes next in this conversation waits behind this entry.
      busy.add(id);
      if ((this.holdUntil.get(id) ?? 0) > now) continue;
      this.attempt(entry);
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    const error = ConfabError.client("closed", "the client is closed");
    for (const entry of this.entries.splice(0)) for (const w of entry.waiters.splice(0)) w.reject(error.forSend(entry.clientId));
    this.holdUntil.clear();
  }

  stats(): { entries: number; held: number } {
    return { entries: this.entries.length, held: this.holdUntil.size };
  }

  private attempt(entry: Entry): void {
    if (this.host.discardedElsewhere(entry.clientId)) {
      this.dropEntry(entry, ConfabError.client("closed", "discarded in another tab"));
      return;
    }
    entry.state = "sending";
    entry.attempts += 1;
    const attempt = ++entry.attempt;
    this.host.changed(entry.conversationId);
    this.host
      .send({
        conversation_id: entry.conversationId,
        client_id: entry.clientId,
        body: entry.body,
        ...(entry.attachmentIds.length > 0 && { attachment_ids: entry.attachmentIds }),
      })
      .then(
        (message) => this.succeeded(entry, message),
        (error: unknown) => {
          // A late failure of an older attempt says nothing about the current one.
          if (entry.attempt === attempt) this.failed(entry, toConfabError(error));
        },
      );
  }

  private succeeded(entry: Entry, message: Message): void {
    // Any attempt's success counts, even a late one: the message is stored.
    const index = this.entries.indexOf(entry);
    if (index < 0) return;
    this.entries.splice(index, 1);
    const id = entry.conversationId;
    if (!this.entries.some((e) => e.conversationId === id && e.state !== "failed")) this.holdUntil.delete(id);
    this.host.acked(message);
    for (const w of entry.waiters.splice(0)) w.resolve(message);
    this.host.changed(id);
    this.pump();
  }

  private failed(entry: Entry, error: ConfabError): void {
    if (!this.entries.includes(entry) || this.closed) return;
    entry.error = error;
    const id = entry.conversationId;
    if (!error.retryable) {
      entry.state = "failed";
      for (const w of entry.waiters.splice(0)) w.reject(error.forSend(entry.clientId));
      this.host.changed(id);
      this.pump();
      return;
    }
    entry.state = "queued";
    if (error.code !== "disconnected") {
      // Rate limited: wait as told. No answer or an outage: back off exponentially.
      const wait =
        error.code === "rate_limited"
          ? (error.retryAfterMs ?? BACKOFF_BASE_MS)
          : Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(entry.attempts - 1, 10));
      this.hold(id, Date.now() + wait);
    }
    // A disconnect needs no timer: `pump` runs on the next connect.
    this.host.changed(id);
  }

  private dropEntry(entry: Entry, error: ConfabError): void {
    const index = this.entries.indexOf(entry);
    if (index < 0) return;
    this.entries.splice(index, 1);
    for (const w of entry.waiters.splice(0)) w.reject(error.forSend(entry.clientId));
    this.host.changed(entry.conversationId);
  }

  /**
   * A promise for the entry's outcome, given up (not the entry) on abort or after the timeout:
   * a send offline neither hangs for ever nor loses the message.
   */
  private waitFor(entry: Entry, { signal, timeoutMs }: WaitOptions): Promise<Message> {
    return new Promise<Message>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stop = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        const i = entry.waiters.indexOf(waiter);
        if (i >= 0) entry.waiters.splice(i, 1);
      };
      const waiter: Waiter = {
        resolve: (m) => {
          stop();
          resolve(m);
        },
        reject: (e) => {
          stop();
          reject(e);
        },
      };
      const onAbort = () => {
        stop();
        reject(signal?.reason);
      };
      entry.waiters.push(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
      if (timeoutMs !== undefined && Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          stop();
          const why = entry.error ? `; last error: ${entry.error.message}` : "";
          reject(
            new ConfabError(
              { code: "timeout", message: `not stored within ${timeoutMs} ms; still queued, and sent when possible${why}` },
              entry.clientId,
            ),
          );
        }, timeoutMs);
      }
    });
  }

  private hold(conversationId: string, until: number): void {
    this.holdUntil.set(conversationId, Math.max(until, this.holdUntil.get(conversationId) ?? 0));
    this.schedule();
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.holdUntil.size === 0) return;
    const now = Date.now();
    const next = Math.min(...this.holdUntil.values());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const t = Date.now();
      for (const [id, until] of this.holdUntil) if (until <= t) this.holdUntil.delete(id);
      this.schedule();
      this.pump();
    }, Math.max(0, next - now));
  }
}

function toConfabError(error: unknown): ConfabError {
  if (error instanceof ConfabError) return error;
  return ConfabError.client("disconnected", error instanceof Error ? error.message : String(error));
}
