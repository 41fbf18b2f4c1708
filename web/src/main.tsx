// The web chat app: sign in, then the chat. Everything renders as text (Preact escapes every
// string it puts in the page; nothing here sets innerHTML), so a message can't inject markup.

import "./app.css";

import { render } from "preact";
import { useState } from "preact/hooks";

import { ChatApp } from "./ui/ChatApp.js";
import { SignIn } from "./ui/SignIn.js";
import { clearSession, loadSession, saveSession, type Session } from "./session.js";

function Root() {
  const [session, setSession] = useState<Session | null>(() => loadSession());
  if (!session) {
    return (
      <SignIn
        onSignIn={(s) => {
          saveSession(s);
          setSession(s);
        }}
      />
    );
  }
  return (
    <ChatApp
      session={session}
      onSignOut={() => {
        clearSession();
        setSession(null);
      }}
    />
  );
}

const root = document.getElementById("app");
if (root) render(<Root />, root);
