// Signing in: "sign in as …" when the server offers it, else a pasted token, checked with the
// server before the app opens with it.

import { useState } from "preact/hooks";

import { humanError } from "../errors.js";
import { checkToken, devLoginEnabled, devToken, type Session } from "../session.js";

export function SignIn({ onSignIn, error: initialError }: { onSignIn: (session: Session) => void; error?: string }) {
  const dev = devLoginEnabled();
  const [sub, setSub] = useState("");
  const [name, setName] = useState("");
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(initialError ?? null);
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
      setError(humanError(err, "sign-in"));
    } finally {
      setBusy(false);
    }
  }

  async function useToken(e: Event) {
    e.preventDefault();
    const value = token.trim();
    if (!value) return;
    setBusy(true);
    setError(null);
    const problem = await checkToken(value);
    setBusy(false);
    if (problem) setError(problem);
    else onSignIn({ kind: "token", token: value });
  }

  const alert = error && (
    <p class="error" role="alert">
      {error}
    </p>
  );

  return (
    <main class="signin">
      <div class="signin-card">
        <h1>
          <img class="logo" src="/favicon.svg" alt="" /> confab
        </h1>
        {dev ? (
          <form aria-label="Sign in" onSubmit={signInAs}>
            <p class="muted">Local mode: sign in as anyone.</p>
            <label>
              User id
              <input name="sub" value={sub} autoFocus autoComplete="off" required maxLength={128} onInput={(e) => setSub(e.currentTarget.value)} />
            </label>
            <label>
              Display name
              <input name="name" value={name} autoComplete="off" maxLength={200} placeholder={sub} onInput={(e) => setName(e.currentTarget.value)} />
            </label>
            {alert}
            <button type="submit" class="primary" disabled={busy || !sub.trim()}>
              Sign in
            </button>
          </form>
        ) : (
          <form aria-label="Sign in" onSubmit={useToken}>
            <p class="muted">
              Open this page from your app (it passes a token in the address, after <code>#token=</code>), or paste a token.
            </p>
            <label>
              Token
              <textarea
                name="token"
                rows={4}
                value={token}
                aria-invalid={error ? true : undefined}
                onInput={(e) => setToken(e.currentTarget.value)}
              />
            </label>
            {alert}
            <button type="submit" class="primary" disabled={busy || !token.trim()}>
              {busy ? "Checking…" : "Connect"}
            </button>
          </form>
        )}
      </div>
    </main>
  );
}
