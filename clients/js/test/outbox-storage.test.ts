// The outbox kept across page loads (`outboxStorage`): what a closed page left unsent is sent by
// the user's next client, once, and never by another user's.

import { afterAll, beforeAll, expect, test } from "vitest";

import type { ConfabClient, OutboxStorage } from "../src/index.js";
import { client, collect, live } from "./clients.js";
import { Proxy } from "./proxy.js";
import { sleep, startServer, until, type TestServer } from "./server.js";

/** Node has no `localStorage`; this keeps the same interface in memory (the browser test uses the real one). */
class MemoryStorage implements OutboxStorage {
  readonly map = new Map<string, string>();
  get length(): number {
    return this.map.size;
  }
  key(index: number): string | null {
    return [...this.map.keys()][index] ?? null;
  }
  getItem(key: string): string | null {
    return this.map.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.map.set(key, value);
  }
  removeItem(key: string): void {
    this.map.delete(key);
  }
  /** Every stored entry's body, whoever stored it. */
  bodies(): string[] {
    return [...this.map]
      .filter(([k]) => k.startsWith("confab.outbox.v1."))
      .flatMap(([, v]) => (JSON.parse(v) as { body: string }[]).map((e) => e.body));
  }
}

/** The keys holding outbox entries (discards are remembered under another prefix). */
function outboxKeys(storage: MemoryStorage): string[] {
  return [...storage.map.keys()].filter((k) => k.startsWith("confab.outbox.v1."));
}

let server: TestServer;
let proxy: Proxy;
beforeAll(async () => {
  server = await startServer();
  proxy = await new Proxy(server.port).start();
});
afterAll(async () => {
  await proxy.close();
  await server.dispose();
});

/** A direct chat between `user` (through the proxy, with `storage`) and `peer`. */
async function offlineChat(user: string, peer: string, storage: MemoryStorage) {
  proxy.up();
  const other = await live(client(server, peer));
  const tab = await live(client(server, user, { via: proxy, outboxStorage: storage }));
  const direct = await tab.createDirect(peer);
  await until(() => other.cursor(direct.id) !== undefined, `${peer} to learn the chat`);
  proxy.down();
  await until(() => tab.state === "reconnecting", `${user} to go offline`);
  return { tab, other, direct };
}

/** Queues a send whose promise is not awaited (it rejects when its client is closed). */
function sendOffline(tab: ConfabClient, conversationId: string, body: string): Promise<unknown> {
  return tab.send(conversationId, body).catch((e: unknown) => e);
}

test("a message written offline is sent by the user's next client after the page was closed", async () => {
  const storage = new MemoryStorage();
  const { tab, other, direct } = await offlineChat("ps-alice", "ps-bob", storage);
  const atBob = collect(other, direct.id);
  void sendOffline(tab, direct.id, "one");
  void sendOffline(tab, direct.id, "two");
  await until(() => storage.bodies().length === 2, "the entries to be stored");
  tab.close();
  expect(storage.bodies()).toEqual(["one", "two"]);

  const next = await live(client(server, "ps-alice", { outboxStorage: storage }));
  await until(() => atBob.messages.length === 2, "bob to receive both");
  expect(atBob.messages.map((m) => m.body)).toEqual(["one", "two"]);
  await until(() => storage.length === 0, "the stored entries to be removed once acknowledged");
  expect(next.pending()).toEqual([]);
  await sleep(200);
  expect((await other.history(direct.id)).messages.map((m) => m.body)).toEqual(["one", "two"]);
});

test("another user's client on the same storage neither sends nor removes them", async () => {
  const storage = new MemoryStorage();
  const { tab, other, direct } = await offlineChat("ps-carol.x.y", "ps-dan", storage);
  void sendOffline(tab, direct.id, "carol's");
  await until(() => storage.length === 1, "the entry to be stored");
  tab.close();

  const someoneElse = await live(client(server, "ps-dan", { outboxStorage: storage }));
  // Nor one whose id carol's starts with, up to a `.`.
  const prefixOfHers = await live(client(server, "ps-carol.x", { outboxStorage: storage }));
  await sleep(200);
  expect(someoneElse.pending()).toEqual([]);
  expect(prefixOfHers.pending()).toEqual([]);
  expect(storage.bodies()).toEqual(["carol's"]);
  expect((await other.history(direct.id)).messages).toEqual([]);
});

test("two open tabs that both hold an entry store it once", async () => {
  const storage = new MemoryStorage();
  const { tab, other, direct } = await offlineChat("ps-erin", "ps-finn", storage);
  const first = tab.send(direct.id, "from both tabs");
  await until(() => storage.length === 1, "the entry to be stored");

  // A second tab opens while the first is still offline: it adopts the entry and sends it.
  const second = await live(client(server, "ps-erin", { outboxStorage: storage }));
  await until(() => second.pending().length === 0, "the second tab to send it");
  // The first comes back and sends its copy, with the same client_id.
  proxy.up();
  const message = await first;
  expect(tab.pending()).toEqual([]);
  const history = await other.history(direct.id);
  expect(history.messages.map((m) => m.id)).toEqual([message.id]);
  await until(() => storage.length === 0, "nothing left stored");
});

test("a failed entry stays failed, with its error, for the next client to retry or discard", async () => {
  const storage = new MemoryStorage();
  const first = await live(client(server, "ps-gus", { outboxStorage: storage }));
  // Not a member of it: an answer retrying can't change.
  const refused = await first.send("00000000-0000-0000-0000-000000000000", "nowhere").catch((e: unknown) => e);
  expect(refused).toMatchObject({ code: "not_found" });
  first.close();

  // Something else's key under the same prefix, malformed: skipped, and cleaned up.
  storage.setItem("confab.outbox.v1.ps-gus.junk", "not json");
  const next = await live(client(server, "ps-gus", { outboxStorage: storage }));
  const [entry, ...rest] = next.pending();
  expect(rest).toEqual([]);
  expect(entry).toMatchObject({ body: "nowhere", state: "failed", attempts: 1 });
  expect(entry?.error?.code).toBe("not_found");
  expect(storage.getItem("confab.outbox.v1.ps-gus.junk")).toBeNull();
  next.discard(entry?.client_id ?? "");
  await until(() => outboxKeys(storage).length === 0, "the discarded entry to be removed");
});

test("without Web Locks, a message discarded in one tab is not sent by another that adopted it", async () => {
  const storage = new MemoryStorage();
  const { tab, other, direct } = await offlineChat("ps-jo", "ps-kim", storage);
  void sendOffline(tab, direct.id, "thought better of it");
  await until(() => storage.bodies().length === 1, "the entry to be stored");
  // A second tab, also offline: with no way to tell the first is open, it adopts the entry.
  const second = client(server, "ps-jo", { via: proxy, outboxStorage: storage });
  await until(() => second.pending().length === 1, "the second tab to adopt it");

  tab.discard(tab.pending()[0]?.client_id ?? "");
  proxy.up();
  await live(second);
  await live(tab);
  await sleep(300);
  expect(second.pending()).toEqual([]);
  expect((await other.history(direct.id)).messages).toEqual([]);
  expect(outboxKeys(storage)).toEqual([]);
});

test("storage that refuses writes leaves the outbox working in memory", async () => {
  const storage = new MemoryStorage();
  storage.setItem = () => {
    throw new Error("QuotaExceededError");
  };
  const { tab, other, direct } = await offlineChat("ps-hana", "ps-ivo", storage);
  const sent = tab.send(direct.id, "kept in memory");
  await sleep(100);
  expect(tab.pending().map((e) => e.body)).toEqual(["kept in memory"]);
  expect(storage.length).toBe(0);
  proxy.up();
  const message = await sent;
  expect((await other.history(direct.id)).messages.map((m) => m.id)).toEqual([message.id]);
});
