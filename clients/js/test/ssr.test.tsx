// Server rendering: Node without a DOM, as in a Next.js server. The React entry imports and
// renders there, and a client created with `autoConnect: false` makes no connection (no token
// fetched, no socket at the server) until `connect()`, after which it works as usual.

import { renderToString } from "react-dom/server";
import { afterAll, beforeAll, expect, test } from "vitest";

import { connect } from "../src/index.js";
import { ConfabProvider, useConnectionState, useConversation, useConversations, usePresence } from "../src/react.js";
import { live } from "./clients.js";
import { sleep, startServer, until, type TestServer } from "./server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => server.dispose());

/** The server's count of open sockets, from its metrics. */
async function sockets(): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("confab_sockets "));
  if (!line) throw new Error("no confab_sockets in /metrics");
  return Number(line.split(" ")[1]);
}

function Page({ id }: { id: string }) {
  const state = useConnectionState();
  const { items } = useConversations();
  const { status, messages } = useConversation(id);
  const presence = usePresence(["bob"]);
  return (
    <p>
      {state} {items.length} {status} {messages.length} {presence.size}
    </p>
  );
}

test("the React entry renders on the server, and a client made with autoConnect: false connects only when told", async () => {
  expect(typeof window).toBe("undefined");
  let tokens = 0;
  const client = connect({
    url: server.url,
    getToken: () => {
      tokens++;
      return server.token("alice");
    },
    autoConnect: false,
  });
  try {
    const html = renderToString(
      <ConfabProvider client={client}>
        <Page id="c1" />
      </ConfabProvider>,
    );
    expect(html).toBe("<p>connecting<!-- --> <!-- -->0<!-- --> <!-- -->loading<!-- --> <!-- -->0<!-- --> <!-- -->0</p>");

    // Time enough for a connection attempt (and a reconnection) to show.
    await sleep(700);
    expect(tokens).toBe(0);
    expect(client.socket.active).toBe(false);
    expect(await sockets()).toBe(0);

    client.connect();
    client.connect(); // a second call changes nothing
    await live(client);
    expect(tokens).toBe(1);
    await until(async () => (await sockets()) === 1, "the server to count one socket");
  } finally {
    client.close();
  }
  // Closed: connect() does nothing.
  client.connect();
  expect(client.socket.active).toBe(false);
});
