// Who is signed in, and where their tokens come from.
//
// - Dev sign-in (local mode, or CONFAB_DEV_LOGIN=true): the server mints tokens for any user id
//   at POST /api/dev/token; we ask it again on every reconnect and session refresh.
// - Otherwise a token handed over by the host app in the URL fragment (`#token=…`, never sent to
//   any server) or pasted. It can't be renewed from here: when it ends, the user signs in again.
//
// Kept in sessionStorage: per tab (two tabs can be two users), and survives a reload.

import { ConfabError, type ErrorBody } from "@confab/client";

export type Session = { kind: "dev"; sub: string; name: string } | { kind: "token"; token: string };

const KEY = "confab.session";

/** Whether the server offers "sign in as …" (it says so in a meta tag it fills in). */
export function devLoginEnabled(): boolean {
  return document.querySelector('meta[name="confab-dev-login"]')?.getAttribute("content") === "on";
}

/** The session this tab keeps (a reload keeps it), if any. */
export function loadSession(): Session | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    if (!raw) return null;
    const value = JSON.parse(raw) as Partial<Session> & Record<string, unknown>;
    if (value.kind === "dev" && typeof value.sub === "string" && typeof value.name === "string") {
      return { kind: "dev", sub: value.sub, name: value.name };
    }
    if (value.kind === "token" && typeof value.token === "string") return { kind: "token", token: value.token };
  } catch {
    // Corrupt or unavailable storage: sign in again.
  }
  return null;
}

export function saveSession(session: Session): void {
  try {
    sessionStorage.setItem(KEY, JSON.stringify(session));
  } catch {
    // Private mode without storage: the session lasts until reload.
  }
}

export function clearSession(): void {
  try {
    sessionStorage.removeItem(KEY);
  } catch {
    // nothing stored
  }
}

/** The `getToken` for a session. */
export function tokenSource(session: Session): () => Promise<string> {
  if (session.kind === "token") return async () => session.token;
  return () => devToken(session.sub, session.name);
}

export async function devToken(sub: string, name: string): Promise<string> {
  const response = await fetch("/api/dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ sub, name }),
  });
  const body = (await response.json().catch(() => null)) as
    | { ok: true; data: { token: string } }
    | { ok: false; error: ErrorBody }
    | null;
  if (!body) throw new ConfabError({ code: "unavailable", message: `sign-in failed (${response.status})` });
  if (!body.ok) throw new ConfabError(body.error);
  return body.data.token;
}

/**
 * A token handed over in the address (`#token=…`), taken out of it (and so out of history and
 * bookmarks). Read at start and on `hashchange`: a link opened in a tab already on the page
 * changes only the fragment, and the browser doesn't load the page again.
 */
export function takeTokenFromFragment(): string | null {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const token = params.get("token");
  if (!token) return null;
  history.replaceState(history.state, "", location.pathname + location.search);
  return token;
}

/**
 * Asks the server whether it accepts a token, before the app opens with it: a token that won't
 * work is refused where it was given, in words, rather than in an app that can't connect.
 * Resolves with null when it is accepted, else with what to tell the user.
 */
export async function checkToken(token: string): Promise<string | null> {
  // A JWT is three base64url parts separated by dots; anything else is a paste gone wrong.
  if (!/^[\w-]+\.[\w-]+\.[\w-]*$/.test(token)) {
    return "That doesn't look like a token. A token is a long line of letters and digits in three parts separated by dots: paste all of it.";
  }
  let response: Response;
  try {
    // The cheapest authenticated request; the HTTP API judges tokens as the socket does.
    response = await fetch("/api/conversations", { headers: { authorization: `Bearer ${token}` } });
  } catch {
    return "The server can't be reached. Check your connection and try again.";
  }
  if (response.ok) return null;
  const body = (await response.json().catch(() => null)) as { error?: { code?: string; reason?: string } } | null;
  if (response.status === 401 || body?.error?.code === "unauthorized") {
    if (body?.error?.reason === "expired") return "This token has expired. Get a new one from your app and try again.";
    return "This token wasn't accepted: it was made for another server, or it is damaged. Get a new one from your app.";
  }
  if (response.status === 429) return "Too many attempts. Wait a moment and try again.";
  return "The server couldn't check this token right now. Try again in a moment.";
}
