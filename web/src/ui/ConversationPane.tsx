// One open conversation: header, the timeline (messages, a line for each day, who joined or
// left; older messages load on scrolling up), what is still on its way, who is typing, who has
// seen what, and the composer.

import type { Attachment, Conversation, Message, OutboxEntry } from "@confab/client";
import { useConfab, useConversation, useConversations, usePresence } from "@confab/client/react";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

import type { TimelineLine } from "../activity.js";
import { humanError } from "../errors.js";
import { focusDone, usePendingFocus } from "../focus.js";
import { clock, conversationTitle, count, dayKey, dayLabel, lastSeen, listNames, otherMember, plural } from "../format.js";
import { MessageAttachments, UploadChips, useUploads } from "./Attachments.js";
import { initial, useActivity } from "./ChatApp.js";
import { PresenceDot } from "./ConversationList.js";
import { Members } from "./Members.js";

/** How close to the top (px) scrolling starts loading older messages. */
const LOAD_OLDER_AT = 120;

export function ConversationPane({ id, onBack }: { id: string; onBack: () => void }) {
  const client = useConfab();
  const activity = useActivity();
  const me = client.me?.id;
  const { items } = useConversations();
  const conversation = items.find((i) => i.id === id);
  const chat = useConversation(id);
  const { view } = chat;

  if (!conversation) return null;
  return (
    <section class="pane" aria-label={conversationTitle(conversation, me, activity.name)}>
      <Header conversation={conversation} me={me} onBack={onBack} />
      {chat.status === "error" ? (
        <p class="error pad" role="alert">
          {humanError(chat.error)}
        </p>
      ) : (
        <Messages
          conversation={conversation}
          me={me}
          messages={chat.messages}
          lines={activity.linesOf(id)}
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
      <TypingLine typing={activity.typingIn(id)} />
      <Composer
        onSend={(body, attachments) => void view.send(body, { attachments }).catch(() => {})}
        onTyping={() => view.typing()}
        onStopTyping={() => view.stopTyping()}
      />
    </section>
  );
}

function Header({ conversation, me, onBack }: { conversation: Conversation; me: string | undefined; onBack: () => void }) {
  const activity = useActivity();
  const [showMembers, setShowMembers] = useState(false);
  const other = otherMember(conversation, me);
  const presence = usePresence(other ? [other] : []);
  const state = other ? presence.get(other) : undefined;
  const title = conversationTitle(conversation, me, activity.name);
  let subtitle = null;
  if (conversation.kind === "group" && conversation.member_count > conversation.members.length) {
    // A large group: its object holds only the first members, and naming 100 says little anyway.
    subtitle = count(conversation.member_count, { one: "member", other: "members" });
  } else if (conversation.kind === "group") {
    subtitle = listNames(conversation.members.map((m) => (m.user_id === me ? "you" : activity.name(m.user_id))));
  } else if (state?.online) {
    subtitle = "online";
  } else if (state) {
    subtitle = state.last_seen_at ? <time dateTime={state.last_seen_at}>{lastSeen(state.last_seen_at)}</time> : lastSeen(null);
  }
  return (
    <header class="bar pane-header">
      <button type="button" class="ghost back" onClick={onBack} aria-label="Back to conversations">
        ‹
      </button>
      <span class={`avatar${conversation.kind === "group" ? " group" : ""}`}>
        <span aria-hidden="true">{initial(title)}</span>
        {other !== undefined && state !== undefined && <PresenceDot online={state.online} />}
      </span>
      <div class="pane-title">
        <h2>{title}</h2>
        {/* Unknown presence (e.g. while we are offline ourselves) says nothing. */}
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
  lines: readonly TimelineLine[];
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

type Entry = { kind: "message"; message: Message; index: number } | { kind: "line"; line: TimelineLine };

/**
 * Messages in seq order, each membership line after the message that was last when it happened.
 * Lines from before the oldest loaded message wait until older messages are loaded (or there are
 * none), so that they don't float above history they followed.
 */
function merge(messages: Message[], lines: readonly TimelineLine[], hasMore: boolean): Entry[] {
  const out: Entry[] = [];
  const sorted = [...lines].sort((a, b) => a.afterSeq - b.afterSeq);
  const first = messages[0]?.seq ?? Infinity;
  let l = 0;
  const place = (line: TimelineLine) => {
    if (!hasMore || line.afterSeq >= first - 1) out.push({ kind: "line", line });
  };
  messages.forEach((message, index) => {
    while (l < sorted.length && (sorted[l] as TimelineLine).afterSeq < message.seq) place(sorted[l++] as TimelineLine);
    out.push({ kind: "message", message, index });
  });
  while (l < sorted.length) place(sorted[l++] as TimelineLine);
  return out;
}

function Messages(props: MessagesProps) {
  const { messages, lines, pending, me, conversation, hasMore, loading, loadOlder, markRead } = props;
  const activity = useActivity();
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
  }, [messages, lines, pending, hasMore, loading, loadOlder]);

  // A search result to show: older pages load until it is there, then it is scrolled to.
  const focusSeq = usePendingFocus(conversation.id);
  useEffect(() => {
    if (focusSeq === null) return;
    const el = scroller.current?.querySelector<HTMLElement>(`li[data-seq="${focusSeq}"]`);
    if (el) {
      focusDone();
      atBottom.current = false;
      el.scrollIntoView({ block: "center" });
      el.classList.add("focused");
      setTimeout(() => el.classList.remove("focused"), 2_000);
    } else if (hasMore && !loading) {
      loadOlder();
    } else if (!hasMore && !loading && messages.length > 0) {
      // Not there (deleted since, say): nothing to show.
      focusDone();
    }
  }, [focusSeq, messages, hasMore, loading, loadOlder]);

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
    ? [...props.readBy].filter(([user, seq]) => user !== me && seq >= lastOwn.seq).map(([user]) => activity.name(user))
    : [];

  const now = new Date();
  let day: string | undefined;
  const rows = [];
  for (const entry of merge(messages, lines, hasMore)) {
    const at = entry.kind === "message" ? entry.message.created_at : entry.line.at;
    const key = dayKey(at);
    if (key !== day) {
      day = key;
      rows.push(
        <li key={`day-${key}`} class="day">
          <h3>
            <time dateTime={key}>{dayLabel(at, now)}</time>
          </h3>
        </li>,
      );
    }
    if (entry.kind === "line") {
      rows.push(
        <li key={entry.line.key} class="system">
          <span>{entry.line.text}</span> <time dateTime={entry.line.at}>{clock(entry.line.at)}</time>
        </li>,
      );
      continue;
    }
    const m = entry.message;
    const previous = messages[entry.index - 1];
    rows.push(
      <MessageItem
        key={m.id}
        message={m}
        mine={m.sender_id === me}
        showSender={conversation.kind === "group" && m.sender_id !== null && m.sender_id !== me && (previous?.sender_id !== m.sender_id || dayKey(previous.created_at) !== key)}
        senderName={m.sender_id === null ? "Notice" : m.sender_id === me ? "You" : activity.name(m.sender_id)}
        seenBy={m === lastOwn && seenBy.length > 0 ? (conversation.kind === "direct" ? "Seen" : `Seen by ${listNames(seenBy)}`) : null}
        onEdit={props.onEdit}
        onDelete={props.onDelete}
      />,
    );
  }

  return (
    <div class="messages" ref={scroller} onScroll={onScroll} role="log" aria-live="polite" aria-label="Messages" tabIndex={0}>
      {hasMore && <p class="muted center older">{loading ? "Loading older messages…" : "Scroll up for older messages"}</p>}
      {!hasMore && !loading && (
        <p class="muted center older">{messages.length === 0 ? "No messages yet. Say hello!" : "This is the beginning of the conversation."}</p>
      )}
      <ol class="message-list">
        {rows}
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
  const editButton = useRef<HTMLButtonElement>(null);
  const editBox = useRef<HTMLTextAreaElement>(null);
  const wasEditing = useRef(false);
  const deleted = message.deleted_at !== null || message.body === null;
  const actionable = mine && !deleted;

  // Editing: focus in the text box, at its end. Done: focus back on the Edit button, not lost
  // to the top of the page.
  useEffect(() => {
    const box = editBox.current;
    if (editing && box) {
      box.focus();
      box.setSelectionRange(box.value.length, box.value.length);
    } else if (wasEditing.current && !editing) {
      editButton.current?.focus();
    }
    wasEditing.current = editing;
  }, [editing]);

  async function save(e: Event) {
    e.preventDefault();
    const body = draft.trim();
    if (!body || body === message.body) return setEditing(false);
    try {
      await props.onEdit(message.id, body);
      setEditing(false);
      setError(null);
    } catch (err) {
      setError(humanError(err, "edit"));
    }
  }

  async function remove() {
    if (!confirm("Delete this message for everyone?")) return;
    try {
      await props.onDelete(message.id);
    } catch (err) {
      setError(humanError(err, "delete"));
    }
  }

  return (
    <li
      class={`message${mine ? " mine" : ""}${deleted ? " deleted" : ""}`}
      data-seq={message.seq}
      // Focusable (not in the Tab order) so that a tap shows its actions on a touch screen.
      tabIndex={actionable ? -1 : undefined}
    >
      {props.showSender ? <span class="sender">{props.senderName}</span> : <span class="sr-only">{props.senderName}: </span>}
      <div class="bubble">
        {editing ? (
          <form class="edit" onSubmit={save}>
            <textarea
              value={draft}
              ref={editBox}
              rows={3}
              maxLength={5000}
              aria-label="Edit message"
              onInput={(e) => setDraft(e.currentTarget.value)}
              onKeyDown={(e) => {
                if (e.key === "Escape") {
                  e.preventDefault();
                  setEditing(false);
                }
                // Enter while an IME composes (Japanese, Chinese, …) picks the IME's candidate.
                if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) void save(e);
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
          <>
            {!deleted && <MessageAttachments attachments={message.attachments} />}
            {(deleted || message.body) && <p class="body">{deleted ? "This message was deleted." : message.body}</p>}
          </>
        )}
        <span class="meta">
          {message.edited_at !== null && !deleted && <span class="edited">edited · </span>}
          <time dateTime={message.created_at}>{clock(message.created_at)}</time>
        </span>
      </div>
      {actionable && !editing && (
        <span class="actions">
          <button
            type="button"
            class="link"
            ref={editButton}
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
      {error && (
        <span class="error small" role="alert">
          {error}
        </span>
      )}
      {props.seenBy && <span class="seen">{props.seenBy}</span>}
    </li>
  );
}

function PendingItem({ entry, onRetry, onDiscard }: { entry: OutboxEntry; onRetry: (id: string) => void; onDiscard: (id: string) => void }) {
  const status =
    entry.state === "failed"
      ? `Not sent: ${humanError(entry.error, "send")}`
      : entry.state === "sending"
        ? "Sending…"
        : entry.error?.code === "rate_limited"
          ? "Slowing down…"
          : "Waiting for the connection…";
  return (
    <li class={`message mine pending ${entry.state}`} data-client-id={entry.client_id}>
      <span class="sr-only">You: </span>
      <div class="bubble">
        {entry.body && <p class="body">{entry.body}</p>}
        {entry.attachment_ids.length > 0 && (
          <p class="muted small">{entry.attachment_ids.length === 1 ? "1 file" : `${entry.attachment_ids.length} files`}</p>
        )}
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

function TypingLine({ typing }: { typing: readonly string[] }) {
  const activity = useActivity();
  const names = typing.map(activity.name);
  return (
    <p class="typing" aria-live="polite">
      {names.length === 0 ? "" : `${listNames(names)} ${plural(names.length, { one: "is", other: "are" })} typing…`}
    </p>
  );
}

function Composer({
  onSend,
  onTyping,
  onStopTyping,
}: {
  onSend: (body: string, attachments: Attachment[]) => void;
  onTyping: () => void;
  onStopTyping: () => void;
}) {
  const [text, setText] = useState("");
  const input = useRef<HTMLTextAreaElement>(null);
  const picker = useRef<HTMLInputElement>(null);
  const files = useUploads();
  // Text, or files (all uploaded): a photo needs no caption.
  const canSend = !files.busy && (text.trim() !== "" || files.ready.length > 0);

  function send(e?: Event) {
    e?.preventDefault();
    if (!canSend) return;
    onSend(text.trim() ? text : "", files.ready);
    setText("");
    files.clear();
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
    <>
      <UploadChips uploads={files.uploads} onRemove={files.remove} />
      <form
        class="composer"
        onSubmit={send}
        onDragOver={(e) => e.preventDefault()}
        onDrop={(e) => {
          if (!e.dataTransfer?.files.length) return;
          e.preventDefault();
          files.add(Array.from(e.dataTransfer.files));
        }}
      >
        <input
          ref={picker}
          type="file"
          multiple
          hidden
          accept="image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain"
          onChange={(e) => {
            files.add(Array.from(e.currentTarget.files ?? []));
            e.currentTarget.value = "";
          }}
        />
        <button type="button" class="ghost attach" aria-label="Attach files" title="Attach files" onClick={() => picker.current?.click()}>
          +
        </button>
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
          onPaste={(e) => {
            const pasted = Array.from(e.clipboardData?.files ?? []);
            if (pasted.length === 0) return;
            e.preventDefault();
            files.add(pasted);
          }}
          onKeyDown={(e) => {
            if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) send(e);
          }}
        />
        <button type="submit" class="primary" disabled={!canSend}>
          Send
        </button>
      </form>
    </>
  );
}
