"use client";
// For React Server Components (Next.js App Router): a Server Component that imports this entry
// (directly or through a module of the app) gets references to code that runs in the browser,
// instead of running createContext and the hooks on the server, where they don't exist.

// @confab/client/react: hooks over the client's stores. A separate entry point, so apps
// without React don't pull it in (react is an optional peer dependency).

import { createContext, createElement, useContext, useEffect, useMemo, useState, useSyncExternalStore } from "react";
import type { ReactNode } from "react";

import type { ConfabClient, ConnectionState } from "./client.js";
import type { ConversationItem } from "./stores/conversations.js";
import type { ConversationView, ConversationViewSnapshot, ViewOptions } from "./stores/view.js";
import type { Presence, UserId } from "./types.js";

const ClientContext = createContext<ConfabClient | null>(null);

/**
 * Makes a client available to the hooks below. A client is for one user: when the signed-in
 * user changes, give a new client (key the component that makes it by the user id), never the
 * previous user's, which refuses the new user's token (state `unauthorized`).
 */
export function ConfabProvider(props: { client: ConfabClient; children?: ReactNode }) {
  return createElement(ClientContext.Provider, { value: props.client }, props.children);
}

/** The client from the nearest `ConfabProvider`. */
export function useConfab(): ConfabClient {
  const client = useContext(ClientContext);
  if (!client) throw new Error("useConfab: no <ConfabProvider client={…}> above this component");
  return client;
}

/**
 * The connection state: show a banner while it isn't `live`. `ended` (the session ran out and no
 * fresh token came) and `unauthorized` are where the client stops: ask the user to sign in again.
 */
export function useConnectionState(): ConnectionState {
  const client = useConfab();
  return useSyncExternalStore(
    (onChange) => client.onState(onChange),
    () => client.state,
    () => client.state,
  );
}

/** The user's conversations, most recent activity first, with unread counts. */
export function useConversations(): { loaded: boolean; items: ConversationItem[] } {
  const client = useConfab();
  const store = client.conversations;
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
}

/**
 * One conversation: its messages (live and paged history), pending sends, typing and read
 * marks, and the actions on it. The view is created per conversation id and disposed on unmount.
 */
export function useConversation(
  conversationId: string,
  options?: ViewOptions,
): ConversationViewSnapshot & { view: ConversationView } {
  const client = useConfab();
  // The view lives from mount to unmount (and is replaced when the id changes). Taken in an
  // effect rather than during render: render may run twice or be thrown away (StrictMode,
  // concurrent rendering), and a view created there could never be disposed.
  const [view, setView] = useState<ConversationView | null>(null);
  const pageSize = options?.pageSize;
  const typingTimeoutMs = options?.typingTimeoutMs;
  useEffect(() => {
    const release = takeView(client, conversationId, { pageSize, typingTimeoutMs }, setView);
    return () => {
      release();
      setView(null);
    };
  }, [client, conversationId, pageSize, typingTimeoutMs]);
  const current = view?.conversationId === conversationId ? view : null;
  const snapshot = useSyncExternalStore(
    current ? current.subscribe : noopSubscribe,
    current ? current.getSnapshot : loadingSnapshot,
    current ? current.getSnapshot : loadingSnapshot,
  );
  // While the view is being created, actions go to a placeholder that does nothing.
  return useMemo(() => ({ ...snapshot, view: current ?? placeholder(client, conversationId) }), [snapshot, current, client, conversationId]);
}

/** Presence of these users, kept current. */
export function usePresence(userIds: UserId[]): ReadonlyMap<UserId, Presence> {
  const client = useConfab();
  const key = [...new Set(userIds)].sort().join("\u0000");
  useEffect(() => {
    if (key === "") return;
    return client.presence.watch(key.split("\u0000"));
  }, [client, key]);
  const store = client.presence;
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
}

/**
 * Views in use, per client, conversation and options. Components showing the same conversation
 * share one, and a view given back is disposed a microtask later unless taken again meanwhile:
 * StrictMode tears every effect down and sets it up again at once (as Next.js does in
 * development), which must not make a second view and fetch the history twice.
 */
const views = new WeakMap<ConfabClient, Map<string, { view: ConversationView; users: number }>>();

function takeView(
  client: ConfabClient,
  conversationId: string,
  options: ViewOptions,
  use: (view: ConversationView) => void,
): () => void {
  let ofClient = views.get(client);
  if (!ofClient) {
    ofClient = new Map();
    views.set(client, ofClient);
  }
  const key = [conversationId, options.pageSize, options.typingTimeoutMs].join("\u0000");
  let entry = ofClient.get(key);
  if (!entry) {
    entry = { view: client.view(conversationId, options), users: 0 };
    ofClient.set(key, entry);
  }
  const taken = entry;
  taken.users++;
  use(taken.view);
  return () => {
    if (--taken.users > 0) return;
    queueMicrotask(() => {
      if (taken.users > 0 || ofClient.get(key) !== taken) return;
      ofClient.delete(key);
      taken.view.dispose();
    });
  };
}

const noopSubscribe = () => () => {};

const LOADING: ConversationViewSnapshot = Object.freeze({
  status: "loading",
  error: undefined,
  messages: [],
  pending: [],
  hasMore: false,
  loadingOlder: false,
  typing: [],
  readBy: new Map(),
}) as ConversationViewSnapshot;

const loadingSnapshot = () => LOADING;

/** Actions before the view exists: sends still go through the client's outbox. */
function placeholder(client: ConfabClient, conversationId: string): ConversationView {
  return {
    conversationId,
    send: (body: string) => client.send(conversationId, body),
    retry: (clientId: string) => client.retry(clientId),
    discard: (clientId: string) => client.discard(clientId),
    edit: (messageId: string, body: string) => client.edit(conversationId, messageId, body),
    delete: (messageId: string) => client.delete(conversationId, messageId),
    loadOlder: async () => {},
    markRead: async () => {},
    typing: () => client.typing(conversationId),
    stopTyping: () => client.stopTyping(conversationId),
  } as unknown as ConversationView;
}
