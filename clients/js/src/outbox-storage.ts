// Keeps the outbox across page loads, so a message written offline is still sent when the tab
// was closed before the connection came back.
//
// Each client writes its entries under a key of its own (`confab.outbox.v1.<user>.<random>`), so
// two tabs never overwrite each other. A new client adopts every key of its user: it takes the
// entries over and removes those keys. A key may belong to a tab that is still open; then both
// tabs send the same entries, which is safe because the server stores a (sender, conversation,
// `client_id`) once and answers a repeat with the message it stored. Keys are per user, so
// another user signing in on the same browser never sends them.

import type { OutboxState } from "./outbox.js";
import type { ErrorCode } from "./types.js";

/** The part of the Web Storage API the client uses: `localStorage` is one. */
export interface OutboxStorage {
  readonly length: number;
  key(index: number): string | null;
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** An outbox entry as stored: what it takes to send it again and to show it. */
export interface StoredEntry {
  clientId: string;
  conversationId: string;
  body: string;
  /** `sending` is stored as `queued`: the attempt did not outlive the page. */
  state: Exclude<OutboxState, "sending">;
  error: { code: ErrorCode; message: string } | undefined;
  attempts: number;
  createdAt: number;
}

const PREFIX = "confab.outbox.v1.";

export class OutboxPersistence {
  private readonly key: string;
  private readonly userPrefix: string;

  constructor(
    private readonly storage: OutboxStorage,
    /** Whose entries these are. */
    readonly userId: string,
    tabId: string,
  ) {
    // `.` ends the user id in a key, so it is escaped in the id (encodeURIComponent leaves it):
    // otherwise user `a` would adopt the entries of user `a.b`.
    this.userPrefix = `${PREFIX}${encodeURIComponent(userId).replaceAll(".", "%2E")}.`;
    this.key = this.userPrefix + tabId;
  }

  /** Takes over the entries every client of this user left, removing their keys. */
  adopt(): StoredEntry[] {
    const keys: string[] = [];
    try {
      for (let i = 0; i < this.storage.length; i++) {
        const key = this.storage.key(i);
        if (key !== null && key.startsWith(this.userPrefix)) keys.push(key);
      }
    } catch {
      return []; // storage that can't be read (disabled by the browser): nothing to adopt
    }
    const entries: StoredEntry[] = [];
    for (const key of keys) {
      entries.push(...parse(this.read(key)));
      if (key !== this.key) this.remove(key);
    }
    return entries;
  }

  /** Writes this client's entries, or removes its key when there are none. */
  save(entries: StoredEntry[]): void {
    try {
      if (entries.length === 0) this.storage.removeItem(this.key);
      else this.storage.setItem(this.key, JSON.stringify(entries));
    } catch {
      // Full or disabled storage: the entries are still sent while this page lives.
    }
  }

  private read(key: string): string | null {
    try {
      return this.storage.getItem(key);
    } catch {
      return null;
    }
  }

  private remove(key: string): void {
    try {
      this.storage.removeItem(key);
    } catch {
      // Left behind: adopted again next time, and a repeated send is stored once.
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
    (e.state === "queued" || e.state === "failed") &&
    typeof e.attempts === "number" &&
    typeof e.createdAt === "number" &&
    (error === undefined ||
      (typeof error === "object" && error !== null && typeof error.code === "string" && typeof error.message === "string"))
  );
}
