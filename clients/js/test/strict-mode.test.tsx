// React StrictMode, as Next.js runs every page in development: effects are set up, torn down and
// set up again at once. A conversation must still be one view with one history fetch, and
// everything must be released on unmount. Rendered with react-dom into a happy-dom document,
// against a real server.

import { Window } from "happy-dom";
import { act, StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { afterAll, beforeAll, expect, test } from "vitest";

import { ConfabProvider, useConversation } from "../src/react.js";
import { client, live } from "./clients.js";
import { sleep, startServer, until, type TestServer } from "./server.js";

const dom = new Window({ url: "http://localhost/" });
Object.assign(globalThis, { window: dom, document: dom.document });
(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => server.dispose());

function Thread({ id }: { id: string }) {
  const { status, messages } = useConversation(id);
  return (
    <ul data-status={status}>
      {messages.map((m) => (
        <li key={m.id}>{m.body}</li>
      ))}
    </ul>
  );
}

test("in StrictMode a conversation makes one view and fetches its history once", async () => {
  const alice = await live(client(server, "alice"));
  const bob = await live(client(server, "bob"));
  const direct = await alice.createDirect("bob");
  await alice.send(direct.id, "from history");
  await until(() => bob.cursor(direct.id) !== undefined, "bob to learn the chat");
  const baseline = bob.stats();

  // Count what the hooks ask of bob's client.
  let views = 0;
  let histories = 0;
  const view = bob.view.bind(bob);
  const history = bob.history.bind(bob);
  bob.view = (...args) => {
    views++;
    return view(...args);
  };
  bob.history = (...args) => {
    histories++;
    return history(...args);
  };

  const container = document.createElement("div");
  document.body.append(container);
  const root = createRoot(container);
  await act(async () => {
    root.render(
      <StrictMode>
        <ConfabProvider client={bob}>
          <Thread id={direct.id} />
        </ConfabProvider>
      </StrictMode>,
    );
  });
  await act(() => until(() => container.querySelector("ul")?.getAttribute("data-status") === "ready", "the view"));
  await act(() => sleep(200));
  expect([...container.querySelectorAll("li")].map((li) => li.textContent)).toEqual(["from history"]);
  expect({ views, histories }).toEqual({ views: 1, histories: 1 });

  // Still live: a new message shows.
  await act(async () => {
    await alice.send(direct.id, "live one");
    await until(() => container.querySelectorAll("li").length === 2, "the live message");
  });

  await act(async () => root.unmount());
  await sleep(50);
  expect(bob.stats()).toEqual(baseline);
});
