// The web chat app: sign in, then the chat. Everything renders as text (Preact escapes every
// string it puts in the page; nothing here sets innerHTML), so a message can't inject markup.

import "./app.css";

import { render } from "preact";
import { useEffect, useState } from "preact/hooks";

import { ChatApp } from "./ui/ChatApp.js";
import { SignIn } from "./ui/SignIn.js";
import { checkToken, clearSession, loadSession, saveSession, takeTokenFromFragment, type Session } from "./session.js";

type Phase =
  | { kind: "checking" }
  | { kind: "signed-out"; error?: string }
  /** `n` counts sign-ins in this tab: a new one remounts the app with a new client. */
  | { kind: "in"; session: Session; n: number };

let signIns = 0;

function Root() {
  const [phase, setPhase] = useState<Phase>(() =>
    new URLSearchParams(location.hash.slice(1)).has("token") ? { kind: "checking" } : signedInOrOut(),
  );

  const enter = (session: Session) => {
    saveSession(session);
    setPhase({ kind: "in", session, n: ++signIns });
  };

  // A token in the address, at start or later (a link opened in this tab only fires hashchange):
  // checked before the app opens with it.
  useEffect(() => {
    let latest = 0;
    const fromFragment = () => {
      const token = takeTokenFromFragment();
      if (!token) return;
      const mine = ++latest;
      setPhase({ kind: "checking" });
      void checkToken(token).then((problem) => {
        if (mine !== latest) return;
        if (problem) {
          clearSession();
          setPhase({ kind: "signed-out", error: problem });
        } else {
          enter({ kind: "token", token });
        }
      });
    };
    fromFragment();
    addEventListener("hashchange", fromFragment);
    return () => removeEventListener("hashchange", fromFragment);
  }, []);

  if (phase.kind === "checking") {
    return (
      <p class="checking" role="status">
        Signing in…
      </p>
    );
  }
  if (phase.kind === "signed-out") return <SignIn error={phase.error} onSignIn={enter} />;
  return (
    <ChatApp
      key={phase.n}
      session={phase.session}
      onSignOut={() => {
        clearSession();
        setPhase({ kind: "signed-out" });
      }}
    />
  );
}

function signedInOrOut(): Phase {
  const stored = loadSession();
  return stored ? { kind: "in", session: stored, n: ++signIns } : { kind: "signed-out" };
}

const root = document.getElementById("app");
if (root) render(<Root />, root);
