// A client is for one user. When `getToken` starts returning another user's token (a sign-out and
// sign-in without a reload), the client refuses it: nothing of the first user's (unsent messages,
// read marks) goes out under the second one's name, on a reconnection or a session refresh.

import { afterAll, beforeAll, expect, test } from "vitest";

import type { ConfabClient } from "../src/index.js";
import { client, live } from "./clients.js";
import { Proxy } from "./proxy.js";
import { sleep, startServer, until, type TestServer } from "./server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startServer({ env: { CONFAB_SESSION_WARNING_SECS: "2" } });
});
afterAll(async () => server.dispose());

/** Every event `c` sends from now on. */
function outgoing(c: ConfabClient): string[] {
  const events: string[] = [];
  c.socket.onAnyOutgoing((event) => events.push(event));
  return events;
}

test("a token for another user at reconnection is refused: the first user's unsent message is not sent as the second", async () => {
  const proxy = await new Proxy(server.port).start();
  try {
    let user = "ann";
    const ann = await live(client(server, "ann", { via: proxy, getToken: () => server.token(user) }));
    const ben = await live(client(server, "ben"));
    const direct = await ben.createDirect("ann");
    await until(() => ann.conversations.get(direct.id), "ann to learn the chat");

    // Offline, Ann writes to Ben; before the connection is back, the page signs in as Ben.
    proxy.down();
    await until(() => ann.state === "reconnecting", "ann to notice");
    void ann.send(direct.id, "ann's words").catch(() => {});
    const reasons: string[] = [];
    ann.on("auth:error", (e) => reasons.push(`${e.code}/${e.reason}`));
    user = "ben";
    const sent = outgoing(ann);
    proxy.up();

    // Settled either way: refused, or (the bug) connected as Ben.
    await until(() => ann.state === "unauthorized" || ann.state === "live", `ann's client to settle (is ${ann.state})`, 8_000);
    await sleep(500);
    // Nothing was stored under Ben's name (or anyone's), and Ann's message is still hers to send.
    const { messages } = await ben.history(direct.id);
    expect(messages.map((m) => `${m.sender_id}: ${m.body}`)).toEqual([]);
    expect(sent).toEqual([]);
    expect(ann.state).toBe("unauthorized");
    expect(reasons).toContain("unauthorized/user_changed");
    expect(ann.me?.id).toBe("ann");
    expect(ann.socket.connected).toBe(false);
    expect(ann.pending(direct.id).map((e) => e.body)).toEqual(["ann's words"]);
  } finally {
    await proxy.close();
  }
});

test("a token for another user at a session refresh is refused, and not used to reconnect either", async () => {
  let calls = 0;
  // Ann's first token is short: the refresh asks for a token, and gets Ben's.
  const ann = client(server, "ann2", {
    getToken: () => (++calls === 1 ? server.token("ann2", { ttlSecs: 3 }) : server.token("ben2")),
  });
  const sent = outgoing(ann);
  const reasons: string[] = [];
  ann.on("auth:error", (e) => reasons.push(`${e.code}/${e.reason}`));
  await live(ann);
  await ann.createGroup("ann's group", ["ben2"]);
  await until(() => ann.state === "unauthorized", `ann's client to refuse ben's token (is ${ann.state})`, 8_000);
  await sleep(3_500); // past the end of Ann's session: no reconnection as Ben either
  expect(reasons).toContain("unauthorized/user_changed");
  expect(sent.filter((e) => e === "auth:refresh")).toEqual([]);
  expect(ann.state).toBe("unauthorized");
  expect(ann.socket.connected).toBe(false);
});
