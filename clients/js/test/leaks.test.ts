// Unsubscribing leaves nothing behind: socket listeners and internal maps return to baseline.

import { afterAll, beforeAll, expect, test } from "vitest";

import { client, live } from "./clients.js";
import { startServer, until, type TestServer } from "./server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => server.dispose());

test("subscriptions, views and watches leave no trace once released", async () => {
  const alice = await live(client(server, "alice"));
  const bob = await live(client(server, "bob"));
  const groups = await Promise.all([1, 2, 3].map((i) => alice.createGroup(`g${i}`, ["bob"])));
  await until(() => groups.every((g) => bob.cursor(g.id) !== undefined), "bob to learn the groups");
  const baseline = bob.stats();
  expect(baseline.socketListeners).toBeGreaterThan(0);

  const releases: (() => void)[] = [];
  let seen = 0;
  for (const g of groups) {
    for (let i = 0; i < 10; i++) {
      releases.push(bob.subscribe(g.id, { message: () => seen++, typing: () => {}, receipt: () => {} }));
    }
    releases.push(bob.onOutbox(g.id, () => {}));
    const view = bob.view(g.id);
    releases.push(view.subscribe(() => {}));
    releases.push(() => view.dispose());
  }
  releases.push(bob.onMessage(() => {}));
  releases.push(bob.onState(() => {}));
  releases.push(bob.on("presence", () => {}));
  releases.push(bob.on("conversation:new", () => {}));
  releases.push(bob.presence.watch(["alice", "carol"]));
  releases.push(bob.conversations.subscribe(() => {}));

  // Use it all: messages, typing (with its idle timer), read marks, presence.
  for (const g of groups) {
    await alice.send(g.id, "hello");
    bob.typing(g.id);
    alice.typing(g.id);
  }
  await until(() => seen === 30, "30 deliveries");
  for (const g of groups) await bob.markRead(g.id, 1);
  await until(() => bob.presence.get("alice")?.online === true, "alice's presence");
  expect(bob.stats().conversationSubscriptions).toBe(3);

  for (const release of releases) release();
  for (const g of groups) bob.stopTyping(g.id);
  const after = bob.stats();
  expect(after).toEqual(baseline);
});

test("close() removes every listener from the socket", async () => {
  const alice = await live(client(server, "carol"));
  alice.subscribe("x", { message: () => {} });
  alice.view("x");
  alice.close();
  const stats = alice.stats();
  expect(stats.socketListeners).toBe(0);
  expect(stats.managerListeners).toBe(0);
  expect(Object.values(stats).every((n) => n === 0)).toBe(true);
  expect(alice.state).toBe("closed");
});
