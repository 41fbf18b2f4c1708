// The signed-in app: one client for the session, the conversation list beside the open chat
// (one or the other on a phone), and a banner while the connection isn't live. The open
// conversation is in the address (route.ts).

import { connect, type ConfabClient } from "@confab/client";
import { ConfabProvider, useConfab, useConnectionState, useConversations } from "@confab/client/react";
import { createContext } from "preact";
import { useContext, useEffect, useRef, useState, useSyncExternalStore } from "preact/compat";

import { Activity, forgetNames } from "../activity.js";
import { count } from "../format.js";
import { backToList, navigate, useRoute } from "../route.js";
import { tokenSource, type Session } from "../session.js";
import { ConversationList } from "./ConversationList.js";
import { Search } from "./Search.js";
import { ConversationPane } from "./ConversationPane.js";
import { NewChat } from "./NewChat.js";

const ActivityContext = createContext<Activity | null>(null);

/** Names, timeline lines and typing for the whole app (activity.ts), kept current. */
export function useActivity(): Activity {
  const activity = useContext(ActivityContext);
  if (!activity) throw new Error("useActivity: no ChatApp above");
  useSyncExternalStore(activity.subscribe, activity.getSnapshot);
  return activity;
}

export function ChatApp({ session, onSignOut }: { session: Session; onSignOut: () => void }) {
  const [state, setState] = useState<{ client: ConfabClient; activity: Activity } | null>(null);
  useEffect(() => {
    // Unsent messages outlive the tab: the next page of this user sends them.
    const client = connect({ getToken: tokenSource(session), outboxStorage: storage() });
    const activity = new Activity(client);
    setState({ client, activity });
    return () => {
      activity.dispose();
      client.close();
    };
  }, [session]);
  if (!state) return null;
  return (
    <ConfabProvider client={state.client}>
      <ActivityContext.Provider value={state.activity}>
        <Layout onSignOut={onSignOut} />
      </ActivityContext.Provider>
    </ConfabProvider>
  );
}

function Layout({ onSignOut }: { onSignOut: () => void }) {
  const client = useConfab();
  const selected = useRoute();
  const { loaded, items } = useConversations();
  const [creating, setCreating] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);
  const newChatButton = useRef<HTMLButtonElement>(null);
  // Re-render on state changes: who we are is known once the first token is in.
  useConnectionState();
  const me = client.me;

  // A link to a conversation that isn't ours: back to the list, saying so. One that was open and
  // went (we left, or were removed): back to the list.
  const known = selected === null || items.some((i) => i.id === selected);
  const shown = useRef<string | null>(null);
  if (known && selected !== null) shown.current = selected;
  useEffect(() => {
    if (!loaded || known) return;
    if (shown.current !== selected) {
      setNotice("That conversation isn't available: it doesn't exist, or you are no longer in it.");
    }
    navigate(null, { replace: true });
  }, [loaded, known, selected]);
  useEffect(() => {
    if (selected !== null && known) setNotice(null);
  }, [selected, known]);

  // Signing out is leaving the browser to someone else: unsent messages are not kept for later,
  // nor are the names of the people they talk to.
  const signOut = () => {
    const unsent = client.pending();
    if (unsent.length > 0 && !confirm(`${count(unsent.length, { one: "unsent message", other: "unsent messages" })} will be discarded. Sign out?`)) {
      return;
    }
    for (const entry of unsent) client.discard(entry.client_id);
    if (me) forgetNames(me.id);
    onSignOut();
  };
  const open = selected !== null && known ? selected : null;
  return (
    <div class="app" data-open={open ? "chat" : "list"}>
      <Banner onSignOut={onSignOut} />
      <aside class="sidebar" aria-label="Your conversations">
        <header class="bar">
          <div class="me" title={me?.id}>
            <span class="avatar small" aria-hidden="true">
              {initial(me?.name ?? me?.id ?? "?")}
            </span>
            <span class="me-name">{me?.name ?? me?.id ?? ""}</span>
          </div>
          <button type="button" class="primary" ref={newChatButton} onClick={() => setCreating(true)}>
            New chat
          </button>
          <button type="button" class="ghost" onClick={signOut} title="Sign out">
            Sign out
          </button>
        </header>
        {notice && (
          <p class="notice pad" role="status">
            {notice}
          </p>
        )}
        <Search />
        <ConversationList selected={open} />
      </aside>
      <main class="main">
        {open ? (
          <ConversationPane key={open} id={open} onBack={backToList} />
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
            navigate(id);
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
