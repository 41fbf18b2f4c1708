// Signing in: "sign in as …" when the server offers it, else a pasted token.

import { useState } from "preact/hooks";

import { devLoginEnabled, devToken, type Session } from "../session.js";

export function SignIn({ onSignIn }: { onSignIn: (session: Session) => void }) {
  const dev = devLoginEnabled();
  const [sub, setSub] = useState("");
  const [name, setName] = useState("");
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function signInAs(e: Event) {
    e.preventDefault();
    const id = sub.trim();
    if (!id) return;
    setBusy(true);
    setError(null);
    try {
      // Check that the server accepts this id before entering the app.
      await devToken(id, name.trim() || id);
      onSignIn({ kind: "dev", sub: id, name: name.trim() || id });
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  function useToken(e: Event) {
    e.preventDefault();
    const value = token.trim();
    if (value) onSignIn({ kind: "token", token: value });
  }

  return (
    <div class="signin">
      <div class="signin-card">
        <h1>
          <img class="logo" src="/favicon.svg" alt="" /> confab
        </h1>
        {dev ? (
          <form onSubmit={signInAs}>
            <p class="muted">Local mode: sign in as anyone.</p>
            <label>
              User id
              <input name="sub" value={sub} autoFocus autoComplete="off" required maxLength={128} onInput={(e) => setSub(e.currentTarget.value)} />
            </label>
            <label>
              Display name
              <input name="name" value={name} autoComplete="off" maxLength={200} placeholder={sub} onInput={(e) => setName(e.currentTarget.value)} />
            </label>
            <button type="submit" class="primary" disabled={busy || !sub.trim()}>
              Sign in
            </button>
          </form>
        ) : (
          <form onSubmit={useToken}>
            <p class="muted">
              Open this page from your app (it passes a token in the address, after <code>#token=</code>), or paste a token.
            </p>
            <label>
              Token
              <textarea name="token" rows={4} value={token} onInput={(e) => setToken(e.currentTarget.value)} />
            </label>
            <button type="submit" class="primary" disabled={!token.trim()}>
              Connect
            </button>
          </form>
        )}
        {error && <p class="error">{error}</p>}
      </div>
    </div>
  );
}
