// Who is online: answers to `presence:get` for the users someone watches, then kept current by
// `presence` events (which the server sends for everyone we share a conversation with).

import type { Presence, UserId } from "../types.js";
import { Store } from "./store.js";
import type { Unsubscribe } from "../listeners.js";

/** What `presence.getSnapshot()` (and `usePresence`) gives: the known presence of watched users. */
export type PresenceSnapshot = ReadonlyMap<UserId, Presence>;

/** Presence of the users someone watches, kept current; a store (see `Store`). */
export class PresenceStore extends Store<PresenceSnapshot> {
  private readonly known = new Map<UserId, Presence>();
  /** How many watchers want each user. */
  private readonly watched = new Map<UserId, number>();
  private closed = false;

  /** @internal The client makes it. */
  constructor(private readonly fetch: (ids: UserId[]) => Promise<Presence[]>) {
    super();
  }

  /** A watched user's presence, when known. */
  get(userId: UserId): Presence | undefined {
    return this.known.get(userId);
  }

  /** Keeps these users' presence known; fetches those not known yet. */
  watch(userIds: UserId[]): Unsubscribe {
    const ids = [...new Set(userIds)];
    const missing: UserId[] = [];
    for (const id of ids) {
      this.watched.set(id, (this.watched.get(id) ?? 0) + 1);
      if (!this.known.has(id)) missing.push(id);
    }
    if (missing.length > 0) this.load(missing);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      for (const id of ids) {
        const n = (this.watched.get(id) ?? 1) - 1;
        if (n > 0) this.watched.set(id, n);
        else {
          this.watched.delete(id);
          // Forget it too: without a watcher an entry would only go stale.
          this.known.delete(id);
        }
      }
    };
  }

  /** A `presence` event. @internal */
  set(presence: Presence): void {
    if (!this.watched.has(presence.user_id)) return;
    this.known.set(presence.user_id, presence);
    this.changed();
  }

  /** Disconnected: what we know goes stale, so we stop claiming it. @internal */
  forget(): void {
    if (this.known.size === 0) return;
    this.known.clear();
    this.changed();
  }

  /** After a reconnect: what we knew may be stale. @internal */
  refresh(): void {
    if (this.watched.size > 0) this.load([...this.watched.keys()]);
  }

  /** @internal */
  close(): void {
    this.closed = true;
    this.known.clear();
    this.watched.clear();
    this.clearSubscribers();
  }

  /** @internal */
  stats(): { known: number; watched: number; subscribers: number } {
    return { known: this.known.size, watched: this.watched.size, subscribers: this.subscriberCount };
  }

  protected build(): PresenceSnapshot {
    return new Map(this.known);
  }

  private load(ids: UserId[]): void {
    // At most 500 per request.
    for (let i = 0; i < ids.length; i += 500) {
      this.fetch(ids.slice(i, i + 500)).then(
        (answers) => {
          if (this.closed) return;
          for (const p of answers) if (this.watched.has(p.user_id)) this.known.set(p.user_id, p);
          this.changed();
        },
        () => {
          // Refreshed on the next connect.
        },
      );
    }
  }
}
