// Exactly once, in order, across a dropped connection while others keep sending.

import { afterAll, beforeAll, expect, test } from "vitest";

import { client, collect, live, range, seqs } from "./clients.js";
import { Proxy } from "./proxy.js";
import { sleep, startServer, until, type TestServer } from "./server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => server.dispose());

/**
 * `alice` (through `proxy`, so her connection can be cut) and `bob` (direct), in a direct chat
 * both know; `atAlice` collects what reaches her.
 */
async function directChat(proxy: Proxy, aliceId: string, bobId: string) {
  const alice = await live(client(server, aliceId, { via: proxy }));
  const bob = await live(client(server, bobId));
  const direct = await bob.createDirect(aliceId);
  await until(() => alice.cursor(direct.id) !== undefined, "alice to learn the chat");
  return { alice, bob, direct, atAlice: collect(alice, direct.id) };
}

test("messages sent while a client is away arrive once each and in order when it is back", async () => {
  const proxy = await new Proxy(server.port).start();
  try {
    const { alice, bob, direct, atAlice } = await directChat(proxy, "alice", "bob");
    const states: string[] = [];
    alice.onState((s) => states.push(s));

    for (const i of range(1, 5)) await bob.send(direct.id, `m${i}`);
    await until(() => atAlice.messages.length === 5, "the first five");

    // Alice drops off and stays away while Bob goes on.
    proxy.down();
    await until(() => alice.state === "reconnecting", "alice to notice");
    for (const i of range(6, 15)) await bob.send(direct.id, `m${i}`);
    // Meanwhile Bob also starts a group with her: she must find it when back.
    const group = await bob.createGroup("while you were out", ["alice"]);
    await bob.send(group.id, "welcome");

    // She comes back while Bob keeps sending: live messages race the catch-up sync.
    proxy.up();
    const more = (async () => {
      for (const i of range(16, 40)) {
        await bob.send(direct.id, `m${i}`);
        await sleep(5);
      }
    })();
    await more;
    await until(() => atAlice.messages.length >= 40, "all 40 at alice");
    await sleep(200);
    expect(seqs(atAlice.messages)).toEqual(range(1, 40));
    expect(atAlice.messages.map((m) => m.body)).toEqual(range(1, 40).map((i) => `m${i}`));
    expect(states).toContain("live");
    await until(() => alice.conversations.get(group.id), "the new group in alice's list");
    expect(alice.conversations.get(group.id)?.last_message?.body).toBe("welcome");
    expect(alice.conversations.get(group.id)?.unread_count).toBe(1);
  } finally {
    await proxy.close();
  }
});

test("edits and deletes made while a client is away reach it, more than one sync answer holds", async () => {
  const proxy = await new Proxy(server.port).start();
  try {
    const { alice, bob, direct, atAlice } = await directChat(proxy, "alice-edits", "bob-edits");
    const sent = await Promise.all(range(1, 130).map((i) => bob.send(direct.id, `m${i}`)));
    await until(() => atAlice.messages.length === 130, "all 130 at alice");

    proxy.down();
    await until(() => alice.state === "reconnecting", "alice to notice");
    // 120 edits and 5 deletes while she is away: a sync answer holds 100 changes.
    const byBody = new Map(sent.map((m) => [m.body, m]));
    await Promise.all(range(1, 120).map((i) => bob.edit(direct.id, byBody.get(`m${i}`)!.id, `e${i}`)));
    await Promise.all(range(121, 125).map((i) => bob.delete(direct.id, byBody.get(`m${i}`)!.id)));
    proxy.up();

    await until(() => atAlice.updates.length >= 125, "125 updates at alice");
    const last = new Map(atAlice.updates.map((m) => [m.seq, m]));
    const expected = sent.map((m) => {
      const i = Number(m.body!.slice(1));
      return i <= 120 ? `e${i}` : i <= 125 ? null : `m${i}`;
    });
    expect(sent.map((m) => (last.get(m.seq) ?? m).body)).toEqual(expected);
    expect(atAlice.messages).toHaveLength(130);
  } finally {
    await proxy.close();
  }
});

test("repeated drops during a burst still deliver exactly once, in order", async () => {
  const proxy = await new Proxy(server.port).start();
  try {
    const { alice, bob, direct, atAlice } = await directChat(proxy, "alice2", "bob2");
    const sending = Promise.all(range(1, 60).map((i) => bob.send(direct.id, `x${i}`)));
    for (let i = 0; i < 4; i++) {
      await sleep(30);
      proxy.cut();
    }
    await sending;
    await until(() => atAlice.messages.length >= 60, "all 60 at alice", 15_000);
    await sleep(200);
    expect(seqs(atAlice.messages)).toEqual(range(1, 60));
  } finally {
    await proxy.close();
  }
});
