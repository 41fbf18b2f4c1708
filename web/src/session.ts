// Who is signed in, and where their tokens come from.
//
// - Dev sign-in (local mode, or CONFAB_DEV_LOGIN=true): the server mints tokens for any user id
//   at POST /api/dev/token; we ask it again on every reconnect and session refresh.
// - Otherwise a token handed over by the host app in the URL fragment (`#token=…`, never sent to
//   any server) or pasted. It can't be renewed from here: when it ends, the user signs in again.
//
// Kept in sessionStorage: per tab (two tabs can be two users), and survives a reload.

export type Session = { kind: "dev"; sub: string; name: string } | { kind: "token"; token: string };

const KEY = "confab.session";

/** Whether the server offers "sign in as …" (it says so in a meta tag it fills in). */
export function devLoginEnabled(): boolean {
  return document.querySelector('meta[name="confab-dev-login"]')?.getAttribute("content") === "on";
}

export function loadSession(): Session | null {
  const fromUrl = tokenFromFragment();
  if (fromUrl) {
    const session: Session = { kind: "token", token: fromUrl };
    saveSession(session);
    return session;
  }
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
    | { ok: false; error: { message: string } }
    | null;
  if (!body) throw new Error(`sign-in failed (${response.status})`);
  if (!body.ok) throw new Error(body.error.message);
  return body.data.token;
}

/** Reads `#token=…` and removes it from the address bar (and so from history and bookmarks). */
function tokenFromFragment(): string | null {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const token = params.get("token");
  if (!token) return null;
  history.replaceState(null, "", location.pathname + location.search);
  return token;
}
