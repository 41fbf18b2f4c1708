// The gap-free stream: order, duplicates, gaps, and own messages.

import { afterAll, beforeAll, expect, test } from "vitest";

import { client, collect, live, range, seqs } from "./clients.js";
import { startServer, until, type TestServer } from "./server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => server.dispose());

test("messages from others and our own arrive once each, in seq order", async () => {
  const alice = await live(client(server, "alice"));
  const bob = await live(client(server, "bob"));
  const group = await alice.createGroup("order", ["bob"]);
  await until(() => bob.cursor(group.id) !== undefined, "bob to learn the group");
  const atAlice = collect(alice, group.id);
  const atBob = collect(bob, group.id);
  // Pipelined sends from both sides at once.
  const sends = [];
  for (let i = 0; i < 20; i++) {
    sends.push(alice.send(group.id, `a${i}`));
    sends.push(bob.send(group.id, `b${i}`));
  }
  const stored = await Promise.all(sends);
  expect(new Set(stored.map((m) => m.seq)).size).toBe(40);
  await until(() => atAlice.messages.length === 40 && atBob.messages.length === 40, "40 messages each");
  expect(seqs(atAlice.messages)).toEqual(range(1, 40));
  expect(seqs(atBob.messages)).toEqual(range(1, 40));
  // Each side's own messages are stored in the order it sent them.
  const aliceBodies = atBob.messages.filter((m) => m.sender_id === "alice").map((m) => m.body);
  expect(aliceBodies).toEqual(range(0, 19).map((i) => `a${i}`));
});

test("a gap in message:new is filled by sync before anything later is delivered", async () => {
  const alice = await live(client(server, "alice2"));
  const bob = await live(client(server, "bob2"));
  const direct = await bob.createDirect("alice2");
  await until(() => alice.cursor(direct.id) !== undefined, "alice to learn the chat");
  const atAlice = collect(alice, direct.id);
  let syncs = 0;
  alice.socket.onAnyOutgoing((event) => {
    if (event === "sync") syncs++;
  });
  // Alice's own message, sent past the client (as if its ack were lost): her socket gets no
  // message:new for it, so Bob's next message shows up with seq 2 while her cursor is at 0.
  alice.socket.emit("message:send", { conversation_id: direct.id, client_id: "raw-1", body: "sent past the client" });
  await until(async () => (await bob.history(direct.id)).messages.length === 1, "the raw send to be stored");
  await bob.send(direct.id, "after the gap");
  await until(() => atAlice.messages.length === 2, "both messages at alice");
  expect(seqs(atAlice.messages)).toEqual([1, 2]);
  expect(atAlice.messages[0]?.body).toBe("sent past the client");
  expect(syncs).toBeGreaterThanOrEqual(1);
  expect(alice.cursor(direct.id)).toBe(2);
});

test("edits and deletes are delivered as updates, on both sides", async () => {
  const alice = await live(client(server, "alice3"));
  const bob = await live(client(server, "bob3"));
  const direct = await alice.createDirect("bob3");
  await until(() => bob.cursor(direct.id) !== undefined, "bob to learn the chat");
  const atAlice = collect(alice, direct.id);
  const atBob = collect(bob, direct.id);
  const sent = await alice.send(direct.id, "typo");
  await until(() => atBob.messages.length === 1, "the message at bob");
  await alice.edit(direct.id, sent.id, "fixed");
  await alice.delete(direct.id, sent.id);
  await until(() => atBob.updates.length === 2, "two updates at bob");
  expect(atBob.updates.map((m) => m.body)).toEqual(["fixed", null]);
  expect(atAlice.updates.map((m) => m.body)).toEqual(["fixed", null]);
  expect(atAlice.messages).toHaveLength(1);
  const item = alice.conversations.get(direct.id);
  expect(item?.last_message?.deleted_at).not.toBeNull();
});
