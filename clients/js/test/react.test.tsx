// The React binding, rendered for real (react-dom into a happy-dom document) against a real
// server. Only `window` and `document` come from happy-dom: the client keeps Node's networking,
// where a browser-like environment would make every request cross-origin.

import { Window } from "happy-dom";
import { act, useEffect } from "react";
import { createRoot } from "react-dom/client";
import { afterAll, beforeAll, expect, test } from "vitest";

import { ConfabProvider, useConnectionState, useConversation, useConversations, usePresence } from "../src/react.js";
import { client, live } from "./clients.js";
import { startServer, until, type TestServer } from "./server.js";

const dom = new Window({ url: "http://localhost/" });
Object.assign(globalThis, { window: dom, document: dom.document });
// Tell React this is a test environment, so act() is expected.
(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => server.dispose());

function Chat({ id, onSend }: { id: string; onSend: (send: (body: string) => void) => void }) {
  const state = useConnectionState();
  const { items } = useConversations();
  const { messages, status, typing, view } = useConversation(id);
  const presence = usePresence(["alice"]);
  useEffect(() => {
    onSend((body) => void view.send(body));
  }, [view, onSend]);
  return (
    <div>
      <p id="state">{state}</p>
      <p id="status">{status}</p>
      <p id="count">{items.length}</p>
      <p id="alice">{presence.get("alice")?.online ? "online" : "offline"}</p>
      <p id="typing">{typing.join(",")}</p>
      <ul>
        {messages.map((m) => (
          <li key={m.id}>{m.body}</li>
        ))}
      </ul>
    </div>
  );
}

test("hooks render live data and release everything on unmount", async () => {
  const alice = await live(client(server, "alice"));
  const bob = await live(client(server, "bob"));
  const direct = await alice.createDirect("bob");
  await alice.send(direct.id, "from history");
  await until(() => bob.cursor(direct.id) !== undefined, "bob to learn the chat");
  const baseline = bob.stats();

  const container = document.createElement("div");
  document.body.append(container);
  const root = createRoot(container);
  let send: ((body: string) => void) | undefined;
  await act(async () => {
    root.render(
      <ConfabProvider client={bob}>
        <Chat
          id={direct.id}
          onSend={(s) => {
            send = s;
          }}
        />
      </ConfabProvider>,
    );
  });
  const text = (sel: string) => container.querySelector(sel)?.textContent;
  const bodies = () => [...container.querySelectorAll("li")].map((li) => li.textContent);

  await act(() => until(() => text("#status") === "ready", "the view to load"));
  expect(bodies()).toEqual(["from history"]);
  expect(text("#state")).toBe("live");
  expect(text("#count")).toBe("1");
  await act(() => until(() => text("#alice") === "online", "alice online"));

  await act(async () => {
    alice.typing(direct.id);
    await until(() => text("#typing") === "alice", "alice typing");
  });
  await act(async () => {
    await alice.send(direct.id, "live one");
    await until(() => bodies().length === 2, "the live message");
  });
  expect(bodies()).toEqual(["from history", "live one"]);
  expect(text("#typing")).toBe("");
  await act(async () => {
    send?.("bob's reply");
    await until(() => bodies().length === 3, "bob's own message");
  });
  expect(bodies()).toEqual(["from history", "live one", "bob's reply"]);

  await act(async () => root.unmount());
  expect(bob.stats()).toEqual(baseline);
});
