// The conversation list, kept current: last message, unread count, most recent activity first.

import type { Conversation, Member, Message, Role, UserId } from "../types.js";
import { Store } from "./store.js";

/**
 * A conversation of the list, kept current: a {@link Conversation} (as `conversation:list`
 * answers it) whose `last_message`, `last_seq`, `last_read_seq` and `unread_count` follow the
 * live stream, read marks and member changes. A record, so it has the protocol's field names.
 */
export interface ConversationItem extends Conversation {
  /** Everything up to this seq is read by the current user (here or on another device). */
  last_read_seq: number;
  /** Messages after the user's read mark that are neither theirs nor deleted (as far as known). */
  unread_count: number;
}

/** What `conversations.getSnapshot()` (and `useConversations()`) gives. */
export interface ConversationListSnapshot {
  /** Whether the list has been loaded at least once. */
  loaded: boolean;
  /** Most recent activity first. */
  items: ConversationItem[];
}

interface Entry {
  conversation: Conversation;
  lastMessage: Message | null;
  lastReadSeq: number;
  /** Unread count the server reported for messages up to `baseSeq`. */
  baseUnread: number;
  baseSeq: number;
  /** Seqs of others' messages delivered live after `baseSeq`. */
  liveUnread: Set<number>;
}

const ROLE_RANK: Record<Role, number> = { owner: 0, admin: 1, member: 2 };

/** The user's conversations, kept current; a store (see `Store`). */
export class ConversationList extends Store<ConversationListSnapshot> {
  private readonly entries = new Map<string, Entry>();
  private loaded = false;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;

  /** @internal The client makes it. */
  constructor(private readonly me: () => string | undefined) {
    super();
  }

  /** One conversation of the list, by id. */
  get(id: string): ConversationItem | undefined {
    return this.getSnapshot().items.find((i) => i.id === id);
  }

  /** A `conversation:list` answer: the whole truth, read state included. @internal */
  replaceAll(conversations: Conversation[]): void {
    const previous = new Map(this.entries);
    this.entries.clear();
    for (const c of conversations) {
      const old = previous.get(c.id);
      const lastReadSeq = Math.max(c.last_read_seq ?? 0, old?.lastReadSeq ?? 0);
      this.entries.set(c.id, {
        conversation: c,
        lastMessage: newer(c.last_message, old?.lastMessage ?? null),
        lastReadSeq,
        baseUnread: lastReadSeq > (c.last_read_seq ?? 0) && lastReadSeq >= c.last_seq ? 0 : (c.unread_count ?? 0),
        baseSeq: c.last_seq,
        // Messages delivered after the server counted (they raced the answer) still count.
        liveUnread: new Set([...(old?.liveUnread ?? [])].filter((s) => s > c.last_seq && s > lastReadSeq)),
      });
    }
    this.loaded = true;
    this.changed();
  }

  /** A conversation object from an event or an ack (without read state). @internal */
  upsert(conversation: Conversation): void {
    const old = this.entries.get(conversation.id);
    this.entries.set(conversation.id, {
      conversation: { ...old?.conversation, ...conversation },
      lastMessage: newer(conversation.last_message, old?.lastMessage ?? null),
      lastReadSeq: old?.lastReadSeq ?? 0,
      baseUnread: old?.baseUnread ?? 0,
      baseSeq: old?.baseSeq ?? conversation.last_seq,
      liveUnread: old?.liveUnread ?? new Set(),
    });
    this.changed();
  }

  /** A `conversation:members` event: the members changed applied; the conversation after, if known. @internal */
  membersChanged(id: string, changed: Member[], removed: UserId[], memberCount?: number): Conversation | undefined {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    // Changed members keep their place and those who joined go last, then owner and admins first:
    // the server's order (role, then joining), except that it places a changed role by join time.
    const gone = new Set(removed);
    const updates = new Map(changed.map((m) => [m.user_id, m]));
    const members = entry.conversation.members
      .filter((m) => !gone.has(m.user_id))
      .map((m) => {
        const update = updates.get(m.user_id);
        updates.delete(m.user_id);
        return update ?? m;
      })
      .concat([...updates.values()])
      .sort((x, y) => ROLE_RANK[x.role] - ROLE_RANK[y.role]);
    const member_count = memberCount ?? members.length;
    entry.conversation = { ...entry.conversation, members, member_count };
    this.changed();
    return entry.conversation;
  }

  /** The first page of a conversation's members, as loaded. @internal */
  setMembers(id: string, members: Member[], memberCount: number): Conversation | undefined {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    entry.conversation = { ...entry.conversation, members, member_count: memberCount };
    this.changed();
    return entry.conversation;
  }

  /** @internal */
  remove(id: string): void {
    if (this.entries.delete(id)) this.changed();
  }

  /** A message delivered by the stream. @internal */
  messageDelivered(message: Message): void {
    const entry = this.entries.get(message.conversation_id);
    if (!entry) return;
    entry.lastMessage = newer(message, entry.lastMessage);
    if (
      message.sender_id !== this.me() &&
      message.deleted_at === null &&
      message.seq > entry.lastReadSeq &&
      message.seq > entry.baseSeq
    ) {
      entry.liveUnread.add(message.seq);
    }
    this.changed();
  }

  /** @internal */
  messageChanged(message: Message): void {
    const entry = this.entries.get(message.conversation_id);
    if (!entry) return;
    if (entry.lastMessage?.id === message.id) entry.lastMessage = message;
    if (message.deleted_at !== null) entry.liveUnread.delete(message.seq);
    this.changed();
  }

  /** The user's read mark moved (here or on another device). @internal */
  read(id: string, seq: number, _mine: true): void {
    const entry = this.entries.get(id);
    if (!entry || seq <= entry.lastReadSeq) return;
    entry.lastReadSeq = seq;
    for (const s of entry.liveUnread) if (s <= seq) entry.liveUnread.delete(s);
    // The server's count covers messages up to baseSeq; read past them, it is zero. Read part
    // way, we can't tell how many remain without asking: keep the count until the next list.
    if (seq >= entry.baseSeq) entry.baseUnread = 0;
    this.changed();
  }

  /** Reloads the list soon (coalescing bursts), with `load` doing the request. @internal */
  refreshSoon(load: () => Promise<unknown>): void {
    if (this.refreshTimer !== undefined) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      load().catch(() => {
        // The next connect reloads it anyway.
      });
    }, 200);
  }

  /** @internal */
  close(): void {
    clearTimeout(this.refreshTimer);
    this.entries.clear();
    this.clearSubscribers();
  }

  /** @internal */
  stats(): { entries: number; subscribers: number } {
    return { entries: this.entries.size, subscribers: this.subscriberCount };
  }

  protected build(): ConversationListSnapshot {
    const items = [...this.entries.values()].map(
      (e): ConversationItem => ({
        ...e.conversation,
        last_message: e.lastMessage,
        last_seq: Math.max(e.conversation.last_seq, e.lastMessage?.seq ?? 0),
        last_read_seq: e.lastReadSeq,
        unread_count: e.baseUnread + e.liveUnread.size,
      }),
    );
    items.sort((a, b) => activity(b).localeCompare(activity(a)));
    return { loaded: this.loaded, items };
  }
}

function activity(item: ConversationItem): string {
  return item.last_message?.created_at ?? item.created_at;
}

function newer(a: Message | null, b: Message | null): Message | null {
  if (!a) return b;
  if (!b) return a;
  return a.seq >= b.seq ? a : b;
}
