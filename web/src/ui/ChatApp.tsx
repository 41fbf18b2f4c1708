// The signed-in app: one client for the session, the conversation list beside the open chat
// (one or the other on a phone), and a banner while the connection isn't live.

import { connect, type ConfabClient } from "@confab/client";
import { ConfabProvider, useConfab, useConnectionState } from "@confab/client/react";
import { useEffect, useState } from "preact/hooks";

import { tokenSource, type Session } from "../session.js";
import { ConversationList } from "./ConversationList.js";
import { ConversationPane } from "./ConversationPane.js";
import { NewChat } from "./NewChat.js";

export function ChatApp({ session, onSignOut }: { session: Session; onSignOut: () => void }) {
  const [client, setClient] = useState<ConfabClient | null>(null);
  useEffect(() => {
    // Unsent messages outlive the tab: the next page of this user sends them.
    const c = connect({ getToken: tokenSource(session), outboxStorage: storage() });
    setClient(c);
    return () => c.close();
  }, [session]);
  if (!client) return null;
  return (
    <ConfabProvider client={client}>
      <Layout onSignOut={onSignOut} />
    </ConfabProvider>
  );
}

function Layout({ onSignOut }: { onSignOut: () => void }) {
  const client = useConfab();
  const [selected, setSelected] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);
  // Re-render on state changes: who we are is known once the first token is in.
  useConnectionState();
  const me = client.me;
  // Signing out is leaving the browser to someone else: unsent messages are not kept for later.
  const signOut = () => {
    const unsent = client.pending();
    if (unsent.length > 0 && !confirm(`${unsent.length} unsent message(s) will be discarded. Sign out?`)) return;
    for (const entry of unsent) client.discard(entry.client_id);
    onSignOut();
  };
  return (
    <div class="app" data-open={selected ? "chat" : "list"}>
      <Banner onSignOut={onSignOut} />
      <aside class="sidebar">
        <header class="bar">
          <div class="me" title={me?.id}>
            <span class="avatar small">{initial(me?.name ?? me?.id ?? "?")}</span>
            <span class="me-name">{me?.name ?? me?.id ?? ""}</span>
          </div>
          <button type="button" class="primary" onClick={() => setCreating(true)}>
            New chat
          </button>
          <button type="button" class="ghost" onClick={signOut} title="Sign out">
            Sign out
          </button>
        </header>
        <ConversationList selected={selected} onSelect={setSelected} />
      </aside>
      <main class="main">
        {selected ? (
          <ConversationPane key={selected} id={selected} onBack={() => setSelected(null)} onGone={() => setSelected(null)} />
        ) : (
          <div class="empty-pane">
            <p>Pick a conversation, or start a new one.</p>
          </div>
        )}
      </main>
      {creating && (
        <NewChat
          onClose={() => setCreating(false)}
          onCreated={(id) => {
            setCreating(false);
            setSelected(id);
          }}
        />
      )}
    </div>
  );
}

function Banner({ onSignOut }: { onSignOut: () => void }) {
  const state = useConnectionState();
  const [seenLive, setSeenLive] = useState(false);
  // Whether the connection dropped since it was last live: `syncing` without a drop is the
  // server's `resync` (events may have been missed), caught up on the same connection.
  const [dropped, setDropped] = useState(false);
  useEffect(() => {
    if (state === "live") {
      setSeenLive(true);
      setDropped(false);
    } else if (state === "reconnecting") {
      setDropped(true);
    }
  }, [state]);
  if (state === "live" || state === "closed") return null;
  // Where the client stops (it makes no more attempts): said once, until the user signs in again.
  if (state === "ended" || state === "unauthorized") {
    return (
      <div class="banner error" role="alert" data-state={state}>
        {state === "ended" ? "Your session has ended." : "Your session was refused."}{" "}
        <button type="button" onClick={onSignOut}>
          Sign in again
        </button>
      </div>
    );
  }
  const text =
    state === "reconnecting"
      ? "Connection lost. Reconnecting…"
      : state === "syncing" && seenLive
        ? dropped
          ? "Back online. Catching up…"
          : "Catching up…"
        : "Connecting…";
  return (
    <div class="banner" role="status" data-state={state}>
      {text}
    </div>
  );
}

export function initial(name: string): string {
  return (Array.from(name.trim())[0] ?? "?").toUpperCase();
}

/** `localStorage`, unless the browser refuses it (some private modes throw on access). */
function storage(): Storage | undefined {
  try {
    return window.localStorage;
  } catch {
    return undefined;
  }
}
