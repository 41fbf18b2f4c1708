// What the app keeps beside the client's stores, for as long as the user is signed in:
//
// - names: everyone's display name as last seen in any member list, kept (per user, bounded) in
//   localStorage, so a message from someone who left still says who wrote it, after a reload too;
// - timeline lines: who was added or removed, who left and who became owner, placed after the
//   last message there was when it happened (messages carry seqs; clocks may disagree);
// - typing: who is typing in every conversation, not only the one open, so that opening a
//   conversation shows someone who started before, and the list can say "typing…".
//
// Membership lines come from comparing each conversation's members before and after a change,
// whatever brought it (a `conversation:members` event, the ack of one's own change, a list
// reloaded after a reconnect); who made it comes from the events' `by` (docs/PROTOCOL.md), or
// is oneself for one's own requests. Lines live in memory only: confab doesn't store them, so
// a reload starts without them (see the report on system messages).

import type { ConfabClient, Conversation, Role, Unsubscribe, UserId } from "@confab/client";

import { listNames } from "./format.js";

export interface TimelineLine {
  key: string;
  /** Shown after the message with this seq (0: before the first). */
  afterSeq: number;
  /** When this tab learned of it (ISO). */
  at: string;
  text: string;
}

/** How long a `typing: true` counts without news (the server ends it after 6 s). */
const TYPING_TIMEOUT_MS = 8_000;
/** Names kept per signed-in user. */
const MAX_NAMES = 1_000;
/** Lines kept per conversation. */
const MAX_LINES = 200;

type Members = Map<UserId, Role>;

export class Activity {
  private readonly listeners = new Set<() => void>();
  private version = 0;
  private snapshot = { version: 0 };
  private readonly names = new Map<UserId, string>();
  private namesKey: string | undefined;
  private namesDirty = false;
  private readonly members = new Map<string, Members>();
  private readonly lines = new Map<string, TimelineLine[]>();
  /** Who made the latest change to (conversation, user), from events and our own requests. */
  private readonly actors = new Map<string, { by: UserId; until: number }>();
  private readonly typing = new Map<string, Map<UserId, ReturnType<typeof setTimeout>>>();
  private readonly typingLists = new Map<string, UserId[]>();
  private readonly subscriptions = new Map<string, Unsubscribe>();
  private readonly cleanups: (() => void)[] = [];
  private diffQueued = false;
  private lineCounter = 0;

  constructor(private readonly client: ConfabClient) {
    const list = client.conversations;
    this.cleanups.push(
      list.subscribe(() => this.queueDiff()),
      client.onState((state) => {
        this.loadNames();
        if (state === "reconnecting") this.clearTyping();
      }),
    );
    // The events' `by` (who made the change). The client's own handler, registered first, has
    // already applied the change to its store; the comparison runs a microtask later.
    const onMembers = (e: { conversation_id: string; changed: { user_id: UserId }[]; removed: UserId[]; by?: UserId }) => {
      if (typeof e.by !== "string") return;
      for (const m of e.changed) this.actor(e.conversation_id, m.user_id, e.by);
      for (const u of e.removed) this.actor(e.conversation_id, u, e.by);
    };
    const onNew = (e: { conversation: Conversation; by?: UserId }) => {
      const me = this.me();
      if (typeof e.by !== "string" || e.by === me || e.conversation.kind !== "group") return;
      this.learnNames(e.conversation);
      this.addLine(e.conversation.id, e.conversation.last_seq, `${this.name(e.by)} added you`);
    };
    client.socket.on("conversation:members", onMembers);
    client.socket.on("conversation:new", onNew);
    this.cleanups.push(() => {
      client.socket.off("conversation:members", onMembers);
      client.socket.off("conversation:new", onNew);
    });
    this.loadNames();
    this.queueDiff();
  }

  // ---- for components (useSyncExternalStore) ----------------------------------------------

  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  readonly getSnapshot = (): { version: number } => this.snapshot;

  /** A user's display name as last seen, else their id. */
  readonly name = (userId: UserId): string => {
    const me = this.client.me;
    if (me && userId === me.id) return me.name ?? me.id;
    return this.names.get(userId) ?? userId;
  };

  linesOf(conversationId: string): readonly TimelineLine[] {
    return this.lines.get(conversationId) ?? NONE;
  }

  /** Others typing in a conversation now. */
  typingIn(conversationId: string): readonly UserId[] {
    return this.typingLists.get(conversationId) ?? NONE;
  }

  /** The next membership change to these users here is ours (a request we are making). */
  expectMine(conversationId: string, userIds: UserId[]): void {
    const me = this.me();
    if (me) for (const u of userIds) this.actor(conversationId, u, me);
  }

  dispose(): void {
    for (const c of this.cleanups.splice(0)) c();
    for (const u of this.subscriptions.values()) u();
    this.subscriptions.clear();
    this.clearTyping();
    this.saveNames();
    this.listeners.clear();
  }

  // ---- internals ---------------------------------------------------------------------------

  private me(): UserId | undefined {
    return this.client.me?.id;
  }

  private changed(): void {
    this.snapshot = { version: ++this.version };
    for (const l of this.listeners) l();
  }

  private actor(conversationId: string, userId: UserId, by: UserId): void {
    this.actors.set(`${conversationId}\u0000${userId}`, { by, until: Date.now() + 60_000 });
  }

  private takeActor(conversationId: string, userId: UserId): UserId | undefined {
    const key = `${conversationId}\u0000${userId}`;
    const found = this.actors.get(key);
    this.actors.delete(key);
    return found && found.until > Date.now() ? found.by : undefined;
  }

  private queueDiff(): void {
    if (this.diffQueued) return;
    this.diffQueued = true;
    queueMicrotask(() => {
      this.diffQueued = false;
      this.diff();
    });
  }

  /** Compares every conversation's members with what they were, and says what changed. */
  private diff(): void {
    const { loaded, items } = this.client.conversations.getSnapshot();
    if (!loaded) return;
    let changed = false;
    const seen = new Set<string>();
    for (const conversation of items) {
      const lastMessage = conversation.last_message;
      seen.add(conversation.id);
      if (this.learnNames(conversation)) changed = true;
      const now: Members = new Map(conversation.members.map((m) => [m.user_id, m.role]));
      const before = this.members.get(conversation.id);
      this.members.set(conversation.id, now);
      if (!this.subscriptions.has(conversation.id)) this.follow(conversation.id);
      if (!before || conversation.kind !== "group") continue;
      const afterSeq = Math.max(lastMessage?.seq ?? 0, conversation.last_seq);
      for (const text of this.describe(conversation.id, before, now)) {
        this.addLine(conversation.id, afterSeq, text, false);
        changed = true;
      }
    }
    for (const id of [...this.members.keys()]) {
      if (seen.has(id)) continue;
      // No longer ours: forget it.
      this.members.delete(id);
      this.lines.delete(id);
      this.subscriptions.get(id)?.();
      this.subscriptions.delete(id);
      this.typing.delete(id);
      this.typingLists.delete(id);
      changed = true;
    }
    if (this.namesDirty) this.saveNames();
    if (changed) this.changed();
  }

  /** Sentences for what changed between two member lists. */
  private describe(conversationId: string, before: Members, now: Members): string[] {
    const me = this.me();
    const subject = (u: UserId) => (u === me ? "You" : this.name(u));
    const object = (u: UserId) => (u === me ? "you" : this.name(u));
    const out: string[] = [];
    const added = new Map<UserId | undefined, UserId[]>();
    const removed = new Map<UserId | undefined, UserId[]>();
    const left: UserId[] = [];
    for (const u of now.keys()) {
      if (before.has(u)) continue;
      const by = this.takeActor(conversationId, u);
      added.set(by, [...(added.get(by) ?? []), u]);
    }
    for (const u of before.keys()) {
      if (now.has(u)) continue;
      const by = this.takeActor(conversationId, u);
      if (by === u) left.push(u);
      else removed.set(by, [...(removed.get(by) ?? []), u]);
    }
    for (const [by, users] of added) {
      const names = listNames(users.map(object));
      out.push(by === undefined ? `${capitalise(names)} ${users.length === 1 ? "was" : "were"} added` : `${subject(by)} added ${names}`);
    }
    for (const u of left) out.push(`${subject(u)} left`);
    for (const [by, users] of removed) {
      const names = listNames(users.map(object));
      out.push(
        by === undefined
          ? `${capitalise(names)} ${users.length === 1 ? "is" : "are"} no longer in the group`
          : `${subject(by)} removed ${names}`,
      );
    }
    for (const [u, role] of now) {
      const was = before.get(u);
      if (was === undefined || was === role) continue;
      this.takeActor(conversationId, u);
      const is = u === me ? "are" : "is";
      if (role === "owner") out.push(`${subject(u)} ${is} now the owner`);
      else if (role === "admin") out.push(`${subject(u)} ${is} now an admin`);
      else out.push(`${subject(u)} ${is} no longer ${was === "owner" ? "the owner" : "an admin"}`);
    }
    return out;
  }

  private addLine(conversationId: string, afterSeq: number, text: string, notify = true): void {
    const lines = [...(this.lines.get(conversationId) ?? []), { key: `l${++this.lineCounter}`, afterSeq, at: new Date().toISOString(), text }];
    this.lines.set(conversationId, lines.slice(-MAX_LINES));
    if (notify) this.changed();
  }

  // ---- typing --------------------------------------------------------------------------------

  private follow(conversationId: string): void {
    const unsubscribe = this.client.subscribe(conversationId, {
      typing: (t) => {
        if (t.user_id === this.me()) return;
        if (t.typing) this.typingStarted(conversationId, t.user_id);
        else this.typingEnded(conversationId, t.user_id);
      },
      // Their message ends their typing, even before the server says so.
      message: (m) => {
        if (m.sender_id !== null) this.typingEnded(conversationId, m.sender_id);
      },
    });
    this.subscriptions.set(conversationId, unsubscribe);
  }

  private typingStarted(conversationId: string, user: UserId): void {
    let users = this.typing.get(conversationId);
    if (!users) {
      users = new Map();
      this.typing.set(conversationId, users);
    }
    clearTimeout(users.get(user));
    const had = users.has(user);
    users.set(
      user,
      setTimeout(() => this.typingEnded(conversationId, user), TYPING_TIMEOUT_MS),
    );
    if (!had) this.typingChanged(conversationId);
  }

  private typingEnded(conversationId: string, user: UserId): void {
    const users = this.typing.get(conversationId);
    const timer = users?.get(user);
    if (!users || timer === undefined) return;
    clearTimeout(timer);
    users.delete(user);
    this.typingChanged(conversationId);
  }

  private typingChanged(conversationId: string): void {
    this.typingLists.set(conversationId, [...(this.typing.get(conversationId)?.keys() ?? [])]);
    this.changed();
  }

  /** Typing states don't survive a disconnect (the server ends them for the others too). */
  private clearTyping(): void {
    if (this.typing.size === 0) return;
    for (const users of this.typing.values()) for (const t of users.values()) clearTimeout(t);
    this.typing.clear();
    this.typingLists.clear();
    this.changed();
  }

  // ---- names ---------------------------------------------------------------------------------

  /** Learns the members' names; whether any was new. */
  private learnNames(conversation: Conversation): boolean {
    let learned = false;
    for (const m of conversation.members) {
      if (m.name === null || this.names.get(m.user_id) === m.name) continue;
      // Re-inserted: the map's order is least recently learned first, for trimming.
      this.names.delete(m.user_id);
      this.names.set(m.user_id, m.name);
      learned = true;
    }
    if (learned) this.namesDirty = true;
    return learned;
  }

  /** Once the user is known: the names remembered from their earlier visits. */
  private loadNames(): void {
    const me = this.me();
    if (!me || this.namesKey !== undefined) return;
    this.namesKey = `confab.names.${me}`;
    try {
      const stored = JSON.parse(localStorage.getItem(this.namesKey) ?? "[]") as unknown;
      if (!Array.isArray(stored)) return;
      for (const entry of stored) {
        if (Array.isArray(entry) && typeof entry[0] === "string" && typeof entry[1] === "string" && !this.names.has(entry[0])) {
          this.names.set(entry[0], entry[1]);
        }
      }
      this.changed();
    } catch {
      // Unavailable or corrupt storage: names come from member lists again.
    }
  }

  private saveNames(): void {
    this.namesDirty = false;
    if (this.namesKey === undefined) return;
    const entries = [...this.names].slice(-MAX_NAMES);
    try {
      localStorage.setItem(this.namesKey, JSON.stringify(entries));
    } catch {
      // Full or unavailable: kept in memory only.
    }
  }
}

const NONE: readonly never[] = Object.freeze([]);

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** Removes what the app remembered for a user (on sign-out: the browser may be shared). */
export function forgetNames(userId: string): void {
  try {
    localStorage.removeItem(`confab.names.${userId}`);
  } catch {
    // nothing stored
  }
}
