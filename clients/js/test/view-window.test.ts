// A conversation view open for a long session holds a bounded window of messages, not every
// message it has seen: new ones push the oldest out, paging older past the bound leaves the live
// end, and paging newer comes back. Against a real server, with many messages.

import { afterAll, beforeAll, expect, test } from "vitest";

import { client, live, range, seqs } from "./clients.js";
import { startServer, until, type TestServer } from "./server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => server.dispose());

test("a view holds at most maxMessages however many arrive, and pages out and back in", async () => {
  const alice = await live(client(server, "w-alice"));
  const bob = await live(client(server, "w-bob"));
  const group = await bob.createGroup("busy", ["w-alice"]);
  await until(() => alice.cursor(group.id) !== undefined, "alice to learn the group");
  const view = alice.view(group.id, { pageSize: 25, maxMessages: 100 });
  await until(() => view.getSnapshot().status === "ready", "the view to load");

  // A long session: far more messages than the window holds.
  const total = 1_000;
  for (let i = 1; i <= total; i += 50) {
    await Promise.all(range(i, i + 49).map((n) => bob.send(group.id, `m${n}`)));
  }
  await until(() => view.getSnapshot().messages.at(-1)?.seq === total, "the last message in the view");
  let snap = view.getSnapshot();
  expect(snap.messages).toHaveLength(100);
  expect(seqs(snap.messages)).toEqual(range(total - 99, total));
  expect(snap.hasMore).toBe(true);
  expect(snap.hasNewer).toBe(false);
  expect(view.stats().messages).toBe(100);

  // Paging older past the bound: the newest go, and the window leaves the live end.
  await view.loadOlder();
  snap = view.getSnapshot();
  expect(seqs(snap.messages)).toEqual(range(total - 124, total - 25));
  expect(snap.hasNewer).toBe(true);
  // A message arriving meanwhile isn't added (the window isn't at the live end)…
  await bob.send(group.id, "while away");
  await until(() => alice.cursor(group.id) === total + 1, "alice's stream to deliver it");
  expect(view.getSnapshot().messages.at(-1)?.seq).toBe(total - 25);
  expect(view.stats().messages).toBe(100);

  // …and paging newer brings the window back to it, that message included.
  await view.loadNewer();
  snap = view.getSnapshot();
  expect(snap.hasNewer).toBe(false);
  expect(seqs(snap.messages)).toEqual(range(total - 98, total + 1));
  expect(snap.messages.at(-1)?.body).toBe("while away");

  // Back at the live end, new messages join it again.
  await bob.send(group.id, "live again");
  await until(() => view.getSnapshot().messages.at(-1)?.body === "live again", "the next live message");
  expect(view.getSnapshot().messages).toHaveLength(100);
  view.dispose();
});

test("a change that isn't about messages doesn't copy the messages into the next snapshot", async () => {
  const alice = await live(client(server, "w-carol"));
  const bob = await live(client(server, "w-dan"));
  const direct = await alice.createDirect("w-dan");
  await until(() => bob.cursor(direct.id) !== undefined, "bob to learn the chat");
  await Promise.all(range(1, 30).map((n) => alice.send(direct.id, `m${n}`)));
  const view = bob.view(direct.id);
  await until(() => view.getSnapshot().messages.length === 30, "the view to load");
  const before = view.getSnapshot();

  alice.typing(direct.id);
  await until(() => view.getSnapshot().typing.includes("w-carol"), "alice's typing to show");
  const after = view.getSnapshot();
  expect(after).not.toBe(before);
  expect(after.messages).toBe(before.messages);
  expect(after.pending).toBe(before.pending);

  await alice.send(direct.id, "one more");
  await until(() => view.getSnapshot().messages.length === 31, "the new message");
  expect(view.getSnapshot().messages).not.toBe(before.messages);
  expect(view.getSnapshot().typing).toEqual([]);
  view.dispose();
});
