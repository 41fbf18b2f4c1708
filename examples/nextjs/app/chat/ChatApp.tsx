"use client";

// The chat, in the browser: one confab client for the page, and components on the hooks of
// @confab/client/react: the conversation list with unread counts, a conversation with its
// history, who is online and who is typing, and sends through the client's outbox.

import { connect, type ConfabClient, type Conversation, type OutboxEntry } from "@confab/client";
import {
  ConfabProvider,
  useConfab,
  useConnectionState,
  useConversation,
  useConversations,
  usePresence,
} from "@confab/client/react";
import { useEffect, useRef, useState } from "react";

import type { DemoUser } from "@/lib/users";

/** Asks this app's backend for a fresh confab token (the route reads the Auth.js session). */
async function fetchConfabToken(): Promise<string> {
  const response = await fetch("/api/confab-token", { cache: "no-store" });
  if (!response.ok) throw new Error(`confab token: HTTP ${response.status}`);
  const { token } = (await response.json()) as { token: string };
  return token;
}

export function ChatApp({ url, me, people }: { url: string; me: string; people: DemoUser[] }) {
  // Created in an effect, so only in the browser, and closed on unmount. (StrictMode runs this
  // twice in development: the first client is closed at once.)
  const [client, setClient] = useState<ConfabClient | null>(null);
  useEffect(() => {
    const c = connect({ url, getToken: fetchConfabToken, outboxStorage: window.localStorage });
    setClient(c);
    return () => c.close();
  }, [url]);
  if (!client) return <p role="status">Connecting…</p>;
  return (
    <ConfabProvider client={client}>
      <Chat me={me} people={people} />
    </ConfabProvider>
  );
}

function Chat({ me, people }: { me: string; people: DemoUser[] }) {
  const client = useConfab();
  const state = useConnectionState();
  const { loaded, items } = useConversations();
  const [open, setOpen] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  async function startChat(userId: string) {
    setError(null);
    try {
      const conversation = await client.createDirect(userId); // the existing one, if any
      setOpen(conversation.id);
    } catch (e) {
      setError(`Could not start the chat: ${(e as Error).message}`);
    }
  }

  const current = items.find((c) => c.id === open);
  return (
    <div className="layout">
      <aside>
        {state !== "live" && (
          <p role="status" className="state">
            {state === "unauthorized" ? "Please sign in again." : state === "syncing" ? "Catching up…" : "Connecting…"}
          </p>
        )}
        <nav aria-label="Conversations">
          <h2>Conversations</h2>
          {loaded && items.length === 0 && <p>No conversations yet.</p>}
          <ul>
            {items.map((conversation) => (
              <li key={conversation.id}>
                <button
                  aria-current={conversation.id === open ? "true" : undefined}
                  onClick={() => setOpen(conversation.id)}
                >
                  {titleOf(conversation, me)}
                  {conversation.unread_count > 0 && (
                    <span className="unread" aria-label={`${conversation.unread_count} unread`}>
                      {conversation.unread_count}
                    </span>
                  )}
                </button>
              </li>
            ))}
          </ul>
        </nav>
        <section aria-label="New chat">
          <h2>New chat</h2>
          <ul>
            {people.map((p) => (
              <li key={p.id}>
                <button onClick={() => void startChat(p.id)}>Chat with {p.name}</button>
              </li>
            ))}
          </ul>
          {error && <p role="alert">{error}</p>}
        </section>
      </aside>
      {current ? <Thread key={current.id} conversation={current} me={me} /> : <p className="empty">Pick a conversation.</p>}
    </div>
  );
}

function titleOf(conversation: Conversation, me: string): string {
  if (conversation.title) return conversation.title;
  const others = conversation.members.filter((m) => m.user_id !== me);
  return others.map((m) => m.name ?? m.user_id).join(", ") || "Just you";
}

function Thread({ conversation, me }: { conversation: Conversation; me: string }) {
  const { status, error, messages, pending, typing, hasMore, loadingOlder, hasNewer, view } = useConversation(conversation.id);
  const others = conversation.members.filter((m) => m.user_id !== me);
  const presence = usePresence(others.map((m) => m.user_id));
  const names = new Map(conversation.members.map((m) => [m.user_id, m.name ?? m.user_id]));
  const nameOf = (id: string) => (id === me ? "You" : (names.get(id) ?? id));
  const [text, setText] = useState("");
  const end = useRef<HTMLDivElement>(null);

  // What is on screen is read; the badge in the list goes away.
  useEffect(() => {
    if (status === "ready") view.markRead().catch(() => {});
  }, [status, messages, view]);
  useEffect(() => {
    end.current?.scrollIntoView({ block: "end" });
  }, [messages.length, pending.length]);

  return (
    <section className="thread" aria-label={`Conversation with ${titleOf(conversation, me)}`}>
      <header>
        <h2>{titleOf(conversation, me)}</h2>
        <ul className="presence">
          {others.map((m) => {
            const online = presence.get(m.user_id)?.online === true;
            return (
              <li key={m.user_id} className={online ? "online" : "offline"}>
                {m.name ?? m.user_id}: {online ? "online" : "offline"}
              </li>
            );
          })}
        </ul>
      </header>
      {status === "error" && <p role="alert">This conversation can't be shown: {error?.message}</p>}
      {hasMore && (
        <button disabled={loadingOlder} onClick={() => void view.loadOlder()}>
          {loadingOlder ? "Loading…" : "Load older messages"}
        </button>
      )}
      <ol role="log" aria-label="Messages" aria-live="polite">
        {messages.map((m) => (
          // Plain text: React escapes it. Never render message bodies as HTML.
          <li key={m.id} className={m.sender_id === me ? "mine" : undefined}>
            <b>{m.sender_id === null ? "Notice" : nameOf(m.sender_id)}</b> {m.body ?? <i>deleted</i>}
          </li>
        ))}
        {pending.map((p) => (
          <Pending key={p.client_id} entry={p} retry={() => void view.retry(p.client_id).catch(() => {})} discard={() => view.discard(p.client_id)} />
        ))}
      </ol>
      {/* The view holds a window of messages: paged far back, it leaves the newest out until asked. */}
      {hasNewer && <button onClick={() => void view.loadNewer()}>Newer messages</button>}
      <div ref={end} />
      <p className="typing" aria-live="polite">
        {typing.length > 0 && `${typing.map(nameOf).join(", ")} ${typing.length === 1 ? "is" : "are"} typing…`}
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const body = text.trim();
          if (!body) return;
          // Resolves once stored; the outbox retries across reconnects until then. A refusal
          // leaves the entry `failed`, shown with Retry and Discard.
          view.send(body).catch(() => {});
          setText("");
        }}
      >
        <input
          aria-label="Message"
          placeholder="Write a message"
          value={text}
          onChange={(e) => {
            setText(e.target.value);
            view.typing();
          }}
        />
        <button type="submit">Send</button>
      </form>
    </section>
  );
}

function Pending({ entry, retry, discard }: { entry: OutboxEntry; retry: () => void; discard: () => void }) {
  return (
    <li className="pending">
      <b>You</b> {entry.body}{" "}
      {entry.state === "failed" ? (
        <>
          <span role="alert">Not sent: {entry.error?.message ?? "refused"}</span> <button onClick={retry}>Retry</button>{" "}
          <button onClick={discard}>Discard</button>
        </>
      ) : (
        <i>sending…</i>
      )}
    </li>
  );
}
