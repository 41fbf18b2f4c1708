// One open conversation: header, messages (older ones load on scrolling up), what is still on
// its way, who is typing, who has seen what, and the composer.

import type { Conversation, Message, OutboxEntry } from "@confab/client";
import { useConfab, useConversation, useConversations, usePresence } from "@confab/client/react";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

import { clock, conversationTitle, lastSeen, listNames, memberName, otherMember } from "../format.js";
import { initial } from "./ChatApp.js";
import { Members } from "./Members.js";

/** How close to the top (px) scrolling starts loading older messages. */
const LOAD_OLDER_AT = 120;

export function ConversationPane({ id, onBack, onGone }: { id: string; onBack: () => void; onGone: () => void }) {
  const client = useConfab();
  const me = client.me?.id;
  const { items, loaded } = useConversations();
  const conversation = items.find((i) => i.id === id);
  const chat = useConversation(id);
  const { view } = chat;

  // Removed from the conversation (or left it elsewhere): close it.
  useEffect(() => {
    if (loaded && !conversation) onGone();
  }, [loaded, conversation, onGone]);

  if (!conversation) return null;
  return (
    <section class="pane" aria-label={conversationTitle(conversation, me)}>
      <Header conversation={conversation} me={me} onBack={onBack} />
      {chat.status === "error" ? (
        <p class="error pad">{chat.error?.message ?? "This conversation can't be shown."}</p>
      ) : (
        <Messages
          conversation={conversation}
          me={me}
          messages={chat.messages}
          pending={chat.pending}
          readBy={chat.readBy}
          hasMore={chat.hasMore}
          loading={chat.status === "loading" || chat.loadingOlder}
          loadOlder={() => void view.loadOlder()}
          markRead={() => void view.markRead().catch(() => {})}
          onRetry={(clientId) => void view.retry(clientId).catch(() => {})}
          onDiscard={(clientId) => view.discard(clientId)}
          onEdit={(messageId, body) => view.edit(messageId, body)}
          onDelete={(messageId) => view.delete(messageId)}
        />
      )}
      <TypingLine conversation={conversation} typing={chat.typing} />
      <Composer
        onSend={(body) => void view.send(body).catch(() => {})}
        onTyping={() => view.typing()}
        onStopTyping={() => view.stopTyping()}
      />
    </section>
  );
}

function Header({ conversation, me, onBack }: { conversation: Conversation; me: string | undefined; onBack: () => void }) {
  const [showMembers, setShowMembers] = useState(false);
  const other = otherMember(conversation, me);
  const presence = usePresence(other ? [other] : []);
  const state = other ? presence.get(other) : undefined;
  const title = conversationTitle(conversation, me);
  const subtitle =
    conversation.kind === "group"
      ? listNames(conversation.members.map((m) => (m.user_id === me ? "you" : (m.name ?? m.user_id))))
      : !state
        ? "" // unknown, e.g. while we are offline ourselves
        : state.online
          ? "online"
          : lastSeen(state.last_seen_at);
  return (
    <header class="bar pane-header">
      <button type="button" class="ghost back" onClick={onBack} aria-label="Back to conversations">
        ‹
      </button>
      <span class={`avatar${conversation.kind === "group" ? " group" : ""}`}>
        {initial(title)}
        {other !== undefined && <span class={`dot${state?.online ? " online" : ""}`} />}
      </span>
      <div class="pane-title">
        <h2>{title}</h2>
        <p class="muted presence-line">{subtitle}</p>
      </div>
      {conversation.kind === "group" && (
        <button type="button" class="ghost members-button" onClick={() => setShowMembers(true)}>
          Members
        </button>
      )}
      {showMembers && <Members conversation={conversation} onClose={() => setShowMembers(false)} />}
    </header>
  );
}

interface MessagesProps {
  conversation: Conversation;
  me: string | undefined;
  messages: Message[];
  pending: OutboxEntry[];
  readBy: ReadonlyMap<string, number>;
  hasMore: boolean;
  loading: boolean;
  loadOlder: () => void;
  markRead: () => void;
  onRetry: (clientId: string) => void;
  onDiscard: (clientId: string) => void;
  onEdit: (messageId: string, body: string) => Promise<unknown>;
  onDelete: (messageId: string) => Promise<unknown>;
}

function Messages(props: MessagesProps) {
  const { messages, pending, me, conversation, hasMore, loading, loadOlder, markRead } = props;
  const scroller = useRef<HTMLDivElement>(null);
  // Follow new messages only while the user is at the bottom; don't yank them down otherwise.
  const atBottom = useRef(true);
  // To keep the view still when older messages are put above it.
  const before = useRef<{ first: number | undefined; height: number; top: number }>({ first: undefined, height: 0, top: 0 });

  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const first = messages[0]?.seq;
    const prev = before.current;
    if (prev.first !== undefined && first !== undefined && first < prev.first) {
      el.scrollTop = prev.top + (el.scrollHeight - prev.height);
    } else if (atBottom.current) {
      el.scrollTop = el.scrollHeight;
    }
    before.current = { first, height: el.scrollHeight, top: el.scrollTop };
    // Not enough to scroll yet: fetch more so scrolling up can begin.
    if (hasMore && !loading && el.scrollHeight <= el.clientHeight + LOAD_OLDER_AT) loadOlder();
  }, [messages, pending, hasMore, loading, loadOlder]);

  // Seen while the page is visible and the user is at the bottom: mark read.
  useEffect(() => {
    const mark = () => {
      if (document.visibilityState === "visible" && atBottom.current) markRead();
    };
    mark();
    document.addEventListener("visibilitychange", mark);
    return () => document.removeEventListener("visibilitychange", mark);
  }, [messages, markRead]);

  function onScroll() {
    const el = scroller.current;
    if (!el) return;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    before.current = { ...before.current, height: el.scrollHeight, top: el.scrollTop };
    if (el.scrollTop < LOAD_OLDER_AT && hasMore && !loading) loadOlder();
    if (atBottom.current) markRead();
  }

  const lastOwn = [...messages].reverse().find((m) => m.sender_id === me && m.deleted_at === null);
  const seenBy = lastOwn
    ? [...props.readBy].filter(([user, seq]) => user !== me && seq >= lastOwn.seq).map(([user]) => memberName(conversation, user))
    : [];

  return (
    <div class="messages" ref={scroller} onScroll={onScroll} data-testid="messages">
      {hasMore && <p class="muted center older">{loading ? "Loading older messages…" : "Scroll up for older messages"}</p>}
      {!hasMore && !loading && <p class="muted center older">{messages.length === 0 ? "No messages yet. Say hello!" : "This is the beginning of the conversation."}</p>}
      <ol class="message-list">
        {messages.map((m, i) => (
          <MessageItem
            key={m.id}
            message={m}
            mine={m.sender_id === me}
            showSender={conversation.kind === "group" && m.sender_id !== me && messages[i - 1]?.sender_id !== m.sender_id}
            senderName={memberName(conversation, m.sender_id)}
            seenBy={m === lastOwn && seenBy.length > 0 ? (conversation.kind === "direct" ? "Seen" : `Seen by ${listNames(seenBy)}`) : null}
            onEdit={props.onEdit}
            onDelete={props.onDelete}
          />
        ))}
        {pending.map((entry) => (
          <PendingItem key={entry.client_id} entry={entry} onRetry={props.onRetry} onDiscard={props.onDiscard} />
        ))}
      </ol>
    </div>
  );
}

function MessageItem(props: {
  message: Message;
  mine: boolean;
  showSender: boolean;
  senderName: string;
  seenBy: string | null;
  onEdit: (messageId: string, body: string) => Promise<unknown>;
  onDelete: (messageId: string) => Promise<unknown>;
}) {
  const { message, mine } = props;
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState("");
  const [error, setError] = useState<string | null>(null);
  const deleted = message.deleted_at !== null || message.body === null;

  async function save(e: Event) {
    e.preventDefault();
    const body = draft.trim();
    if (!body || body === message.body) return setEditing(false);
    try {
      await props.onEdit(message.id, body);
      setEditing(false);
      setError(null);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  }

  async function remove() {
    if (!confirm("Delete this message for everyone?")) return;
    try {
      await props.onDelete(message.id);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  }

  return (
    <li class={`message${mine ? " mine" : ""}${deleted ? " deleted" : ""}`} data-seq={message.seq}>
      {props.showSender && <span class="sender">{props.senderName}</span>}
      <div class="bubble">
        {editing ? (
          <form class="edit" onSubmit={save}>
            <textarea
              value={draft}
              rows={3}
              maxLength={5000}
              autoFocus
              aria-label="Edit message"
              onInput={(e) => setDraft(e.currentTarget.value)}
              onKeyDown={(e) => {
                if (e.key === "Escape") setEditing(false);
                if (e.key === "Enter" && !e.shiftKey) void save(e);
              }}
            />
            <div class="edit-actions">
              <button type="button" class="ghost" onClick={() => setEditing(false)}>
                Cancel
              </button>
              <button type="submit" class="primary">
                Save
              </button>
            </div>
          </form>
        ) : (
          <p class="body">{deleted ? "This message was deleted." : message.body}</p>
        )}
        <span class="meta">
          {message.edited_at !== null && !deleted && <span class="edited">edited · </span>}
          {clock(message.created_at)}
        </span>
      </div>
      {mine && !deleted && !editing && (
        <span class="actions">
          <button
            type="button"
            class="link"
            onClick={() => {
              setDraft(message.body ?? "");
              setEditing(true);
            }}
          >
            Edit
          </button>
          <button type="button" class="link" onClick={() => void remove()}>
            Delete
          </button>
        </span>
      )}
      {error && <span class="error small">{error}</span>}
      {props.seenBy && <span class="seen">{props.seenBy}</span>}
    </li>
  );
}

function PendingItem({ entry, onRetry, onDiscard }: { entry: OutboxEntry; onRetry: (id: string) => void; onDiscard: (id: string) => void }) {
  const status =
    entry.state === "failed"
      ? `Not sent: ${entry.error?.message ?? "refused"}`
      : entry.state === "sending"
        ? "Sending…"
        : entry.error?.code === "rate_limited"
          ? "Slowing down…"
          : "Waiting for the connection…";
  return (
    <li class={`message mine pending ${entry.state}`} data-client-id={entry.client_id}>
      <div class="bubble">
        <p class="body">{entry.body}</p>
        <span class="meta">{status}</span>
      </div>
      {entry.state === "failed" && (
        <span class="actions visible">
          <button type="button" class="link" onClick={() => onRetry(entry.client_id)}>
            Retry
          </button>
          <button type="button" class="link" onClick={() => onDiscard(entry.client_id)}>
            Discard
          </button>
        </span>
      )}
    </li>
  );
}

function TypingLine({ conversation, typing }: { conversation: Conversation; typing: string[] }) {
  const names = typing.map((u) => memberName(conversation, u));
  return (
    <p class="typing" aria-live="polite">
      {names.length === 0 ? "" : `${listNames(names)} ${names.length === 1 ? "is" : "are"} typing…`}
    </p>
  );
}

function Composer({ onSend, onTyping, onStopTyping }: { onSend: (body: string) => void; onTyping: () => void; onStopTyping: () => void }) {
  const [text, setText] = useState("");
  const input = useRef<HTMLTextAreaElement>(null);

  function send(e?: Event) {
    e?.preventDefault();
    if (!text.trim()) return;
    onSend(text);
    setText("");
    input.current?.focus();
  }

  // Grow with the text, up to a limit (CSS caps it).
  useLayoutEffect(() => {
    const el = input.current;
    if (!el) return;
    el.style.height = "auto";
    el.style.height = `${el.scrollHeight}px`;
  }, [text]);

  return (
    <form class="composer" onSubmit={send}>
      <textarea
        ref={input}
        name="message"
        rows={1}
        maxLength={5000}
        placeholder="Write a message"
        aria-label="Message"
        value={text}
        onInput={(e) => {
          setText(e.currentTarget.value);
          if (e.currentTarget.value) onTyping();
          else onStopTyping();
        }}
        onBlur={onStopTyping}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey && !e.isComposing) send(e);
        }}
      />
      <button type="submit" class="primary" disabled={!text.trim()}>
        Send
      </button>
    </form>
  );
}
