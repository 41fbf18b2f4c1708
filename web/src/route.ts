// The open conversation lives in the address (`/?c=<id>`), so a conversation can be linked to,
// survives a reload, and the browser's (or the phone's) Back button goes back to the list. A
// query, not a path: the server serves the app at `/` only, and the fragment carries `#token=`.

import { useEffect, useState } from "preact/hooks";

const PARAM = "c";

/** The conversation the address names, if any. */
export function routedConversation(): string | null {
  return new URLSearchParams(location.search).get(PARAM);
}

function urlFor(id: string | null): string {
  const params = new URLSearchParams(location.search);
  if (id === null) params.delete(PARAM);
  else params.set(PARAM, id);
  const query = params.toString();
  return `${location.pathname}${query ? `?${query}` : ""}`;
}

/** Links to a conversation (for `<a href>`: opening one in a new tab works). */
export function hrefFor(id: string): string {
  return urlFor(id);
}

type Listener = () => void;
const listeners = new Set<Listener>();

/**
 * Opens a conversation (or the list, with `null`). A new history entry, so Back returns to
 * where the user was, unless `replace` (for corrections the user didn't ask for: a conversation
 * that went away, a link to one that isn't theirs).
 */
export function navigate(id: string | null, options: { replace?: boolean } = {}): void {
  if (id === routedConversation()) return;
  // Whether this entry came straight from the list, for `backToList`.
  const state = { confab: true, fromList: options.replace ? cameFromList() : routedConversation() === null };
  if (options.replace) history.replaceState(state, "", urlFor(id));
  else history.pushState(state, "", urlFor(id));
  for (const l of listeners) l();
}

/**
 * Back to the list, as the app's own back arrow: the browser's Back when the entry before is
 * the list (so the history stays as if Back was pressed), else a new list entry (after a deep
 * link there is no list to go back to).
 */
export function backToList(): void {
  if (cameFromList()) history.back();
  else navigate(null);
}

function cameFromList(): boolean {
  const state = history.state as { confab?: boolean; fromList?: boolean } | null;
  return state?.confab === true && state.fromList === true;
}

/** The routed conversation, following Back and Forward. */
export function useRoute(): string | null {
  const [id, setId] = useState(routedConversation);
  useEffect(() => {
    const update = () => setId(routedConversation());
    listeners.add(update);
    addEventListener("popstate", update);
    update();
    return () => {
      listeners.delete(update);
      removeEventListener("popstate", update);
    };
  }, []);
  return id;
}
