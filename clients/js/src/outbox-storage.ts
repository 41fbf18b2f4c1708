// Keeps the outbox across page loads, so a message written offline is still sent when the tab
// was closed before the connection came back.
//
// Each client writes its entries under a key of its own (`confab.outbox.v1.<user>.<random>`), so
// two tabs never overwrite each other. Keys are per user, so another user signing in on the same
// browser never sends them.
//
// Tabs coordinate with Web Locks: each client holds the lock named after its key for as long as
// it lives (the browser releases it when the tab closes or crashes). A client adopts a key (takes
// its entries over and removes it) only once it gets that key's lock: at once for the key of a
// tab that is gone, and for the key of a tab still open when that tab closes. So an entry has one
// owner at a time, and a message discarded in the tab that shows it can't be sent by another.
// Keys that appear later (another tab opened meanwhile) are learnt from `storage` events.
//
// Without Web Locks (a page on plain http other than localhost, old browsers, Node), a new
// client adopts every key of its user at once, as tabs can't tell which are still open: both tabs
// then send those entries, which is safe because the server stores a (sender, conversation,
// `client_id`) once. A discard is then written down (a tombstone, kept a week) and honoured by
// every client: not adopted, dropped when the `storage` event tells, and checked before sending.

import type { OutboxState } from "./outbox.js";
import type { ErrorCode } from "./types.js";

/** The part of the Web Storage API the client uses: `localStorage` is one. */
export interface OutboxStorage {
  /** How many keys there are. */
  readonly length: number;
  /** The key at `index`, or `null`. */
  key(index: number): string | null;
  /** The value under `key`, or `null`. */
  getItem(key: string): string | null;
  /** Stores a value (may throw when full). */
  setItem(key: string, value: string): void;
  /** Removes a key. */
  removeItem(key: string): void;
}

/** The part of the Web Locks API (`navigator.locks`) the outbox uses to coordinate tabs. */
export interface OutboxLocks {
  request(name: string, options: { signal?: AbortSignal }, callback: () => Promise<void>): Promise<unknown>;
}

/** An outbox entry as stored: what it takes to send it again and to show it. */
export interface StoredEntry {
  clientId: string;
  conversationId: string;
  body: string;
  /** Uploaded attachments it carries (absent in entries stored by older clients). */
  attachmentIds?: string[];
  /** `sending` is stored as `queued`: the attempt did not outlive the page. */
  state: Exclude<OutboxState, "sending">;
  error: { code: ErrorCode; message: string } | undefined;
  attempts: number;
  createdAt: number;
}

/** What the persistence tells its client. */
export interface OutboxPersistenceHost {
  /** Entries another client left, now this one's. */
  adopted(entries: StoredEntry[]): void;
  /** Entries discarded by another client: drop them. */
  discarded(clientIds: string[]): void;
}

/** What the client reads of a `storage` event. */
interface StorageEventLike {
  key: string | null;
  newValue: string | null;
  storageArea?: unknown;
}

const PREFIX = "confab.outbox.v1.";
const DISCARDED_PREFIX = "confab.outbox-discarded.v1.";
/** How long a discard is remembered, and how many at most. */
const TOMBSTONE_MS = 7 * 24 * 3600_000;
const TOMBSTONES_MAX = 500;

/** `navigator.locks` where there is one. */
export function webLocks(): OutboxLocks | undefined {
  const nav = (globalThis as { navigator?: { locks?: OutboxLocks } }).navigator;
  return nav?.locks && typeof nav.locks.request === "function" ? nav.locks : undefined;
}

export class OutboxPersistence {
  private readonly key: string;
  private readonly userPrefix: string;
  private readonly discardedKey: string;
  private readonly stop = new AbortController();
  /** Whether this client may write its key: it holds the key's lock (or there are no locks). */
  private owning: boolean;
  /** Entries to write once this client holds its key's lock. */
  private unsaved: StoredEntry[] | undefined;
  /** Keys of other clients whose lock we wait for (or hold, adopting). */
  private readonly watched = new Set<string>();

  constructor(
    private readonly storage: OutboxStorage,
    /** Whose entries these are. */
    readonly userId: string,
    tabId: string,
    private readonly locks: OutboxLocks | undefined,
    private readonly host: OutboxPersistenceHost,
  ) {
    // `.` ends the user id in a key, so it is escaped in the id (encodeURIComponent leaves it):
    // otherwise user `a` would adopt the entries of user `a.b`.
    const user = encodeURIComponent(userId).replaceAll(".", "%2E");
    this.userPrefix = `${PREFIX}${user}.`;
    this.discardedKey = `${DISCARDED_PREFIX}${user}`;
    this.key = this.userPrefix + tabId;
    this.owning = locks === undefined;
  }

  /**
   * Starts: without locks, adopts every key of this user now (synchronously); with them, takes
   * this client's own lock, then adopts the keys whose lock it gets, as it gets them.
   */
  start(): void {
    const target = globalThis as unknown as {
      addEventListener?: (type: "storage", listener: (e: StorageEventLike) => void, options: { signal: AbortSignal }) => void;
    };
    target.addEventListener?.("storage", this.onStorage, { signal: this.stop.signal });
    if (this.locks === undefined) {
      const entries: StoredEntry[] = [];
      for (const key of this.userKeys()) if (key !== this.key) entries.push(...this.take(key));
      this.host.adopted(entries);
      return;
    }
    const signal = this.stop.signal;
    this.locks
      .request(this.key, { signal }, async () => {
        this.owning = true;
        if (this.unsaved !== undefined) this.save(this.unsaved);
        for (const key of this.userKeys()) this.watch(key);
        // Held until `close()`, or until the page goes.
        await new Promise<void>((done) => signal.addEventListener("abort", () => done(), { once: true }));
      })
      .catch(() => {
        // Aborted by close() before it was granted.
      });
  }

  /** Writes this client's entries, or removes its key when there are none. */
  save(entries: StoredEntry[]): void {
    if (!this.owning) {
      this.unsaved = entries;
      return;
    }
    this.unsaved = undefined;
    try {
      if (entries.length === 0) this.storage.removeItem(this.key);
      else this.storage.setItem(this.key, JSON.stringify(entries));
    } catch {
      // Full or disabled storage: the entries are still sent while this page lives.
    }
  }

  /** Remembers that the user discarded this message, for every client of theirs. */
  discard(clientId: string): void {
    const now = Date.now();
    const kept = Object.entries(this.tombstones()).filter(([, at]) => now - at < TOMBSTONE_MS);
    kept.push([clientId, now]);
    kept.sort((a, b) => a[1] - b[1]);
    try {
      this.storage.setItem(this.discardedKey, JSON.stringify(Object.fromEntries(kept.slice(-TOMBSTONES_MAX))));
    } catch {
      // Storage refused: other clients may still send it, as before.
    }
  }

  /** Whether a client of this user discarded this message. */
  isDiscarded(clientId: string): boolean {
    return clientId in this.tombstones();
  }

  /** Stops: releases this client's lock (its key stays, for the next client) and every wait. */
  close(): void {
    // Written even without the lock: the key is nobody's once this client is gone.
    if (this.unsaved !== undefined) {
      this.owning = true;
      this.save(this.unsaved);
    }
    this.stop.abort();
    this.watched.clear();
  }

  /** Waits for another client's key's lock; once had, adopts the key and lets the lock go. */
  private watch(key: string): void {
    if (key === this.key || this.watched.has(key) || this.locks === undefined || this.stop.signal.aborted) return;
    this.watched.add(key);
    this.locks
      .request(key, { signal: this.stop.signal }, async () => {
        this.watched.delete(key);
        if (this.stop.signal.aborted) return;
        const entries = this.take(key);
        if (entries.length > 0) this.host.adopted(entries);
      })
      .catch(() => {
        // Aborted by close().
      });
  }

  /** Another tab changed the storage: a new key of this user to watch, or discards to honour. */
  private readonly onStorage = (event: StorageEventLike): void => {
    if (event.storageArea !== undefined && event.storageArea !== this.storage) return;
    if (event.key === this.discardedKey) {
      this.host.discarded(Object.keys(this.tombstones()));
    } else if (event.key?.startsWith(this.userPrefix) && event.newValue !== null) {
      this.watch(event.key);
    }
  };

  /** This user's keys, as they are now. */
  private userKeys(): string[] {
    const keys: string[] = [];
    try {
      for (let i = 0; i < this.storage.length; i++) {
        const key = this.storage.key(i);
        if (key !== null && key.startsWith(this.userPrefix)) keys.push(key);
      }
    } catch {
      // Storage that can't be read (disabled by the browser): nothing to adopt.
    }
    return keys;
  }

  /** Reads a key's entries (less the discarded ones) and removes it. */
  private take(key: string): StoredEntry[] {
    const discarded = this.tombstones();
    const entries = parse(this.read(key)).filter((e) => !(e.clientId in discarded));
    try {
      this.storage.removeItem(key);
    } catch {
      // Left behind: adopted again next time, and a repeated send is stored once.
    }
    return entries;
  }

  private tombstones(): Record<string, number> {
    try {
      const value: unknown = JSON.parse(this.read(this.discardedKey) ?? "{}");
      if (typeof value !== "object" || value === null || Array.isArray(value)) return {};
      return Object.fromEntries(Object.entries(value).filter(([, at]) => typeof at === "number")) as Record<string, number>;
    } catch {
      return {};
    }
  }

  private read(key: string): string | null {
    try {
      return this.storage.getItem(key);
    } catch {
      return null;
    }
  }
}

/** Stored entries from a key's value; anything malformed (another version, a hand edit) is skipped. */
function parse(raw: string | null): StoredEntry[] {
  if (raw === null) return [];
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return [];
  }
  if (!Array.isArray(value)) return [];
  return value.filter(isStoredEntry);
}

function isStoredEntry(v: unknown): v is StoredEntry {
  if (typeof v !== "object" || v === null) return false;
  const e = v as Record<string, unknown>;
  const error = e.error as Record<string, unknown> | undefined | null;
  return (
    typeof e.clientId === "string" &&
    typeof e.conversationId === "string" &&
    typeof e.body === "string" &&
    (e.attachmentIds === undefined ||
      (Array.isArray(e.attachmentIds) && e.attachmentIds.every((id) => typeof id === "string"))) &&
    (e.state === "queued" || e.state === "failed") &&
    typeof e.attempts === "number" &&
    typeof e.createdAt === "number" &&
    (error === undefined ||
      (typeof error === "object" && error !== null && typeof error.code === "string" && typeof error.message === "string"))
  );
}
