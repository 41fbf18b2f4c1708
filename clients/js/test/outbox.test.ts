// The outbox: retried with the same client_id until stored, never stored twice.

import { afterAll, beforeAll, expect, test } from "vitest";

import { ConfabError } from "../src/index.js";
import { client, collect, live, range, seqs } from "./clients.js";
import { Proxy } from "./proxy.js";
import { lockDatabase, sleep, startServer, until, type TestServer } from "./server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => server.dispose());

test("sends made while the server is down are stored once each, in order, after it restarts", async () => {
  const own = await startServer();
  try {
    const alice = await live(client(own, "alice"));
    const bob = await live(client(own, "bob"));
    const direct = await alice.createDirect("bob");
    await until(() => bob.cursor(direct.id) !== undefined, "bob to learn the chat");
    const atBob = collect(bob, direct.id);
    await alice.send(direct.id, "before");

    await own.stop();
    await until(() => alice.state === "reconnecting", "alice to notice");
    const sends = [alice.send(direct.id, "one"), alice.send(direct.id, "two"), alice.send(direct.id, "three")];
    expect(alice.pending(direct.id).map((e) => e.body)).toEqual(["one", "two", "three"]);
    expect(alice.pending(direct.id).every((e) => e.state === "queued")).toBe(true);
    await sleep(300);

    await own.start();
    const stored = await Promise.all(sends);
    expect(stored.map((m) => m.seq)).toEqual([2, 3, 4]);
    expect(alice.pending(direct.id)).toEqual([]);
    await until(() => atBob.messages.length === 4, "bob to catch up");
    expect(atBob.messages.map((m) => m.body)).toEqual(["before", "one", "two", "three"]);
    const history = await bob.history(direct.id);
    expect(history.messages.map((m) => m.body)).toEqual(["before", "one", "two", "three"]);
  } finally {
    await own.dispose();
  }
});

test("a conversation's sends are stored in the order they were made when the first is answered unavailable", async () => {
  const own = await startServer();
  const proxy = await new Proxy(own.port).start();
  try {
    const alice = await live(client(own, "alice", { via: proxy }));
    const group = await alice.createGroup("in order", []);
    await alice.send(group.id, "before");

    // The database is locked by another program (the server answers `unavailable`), and the
    // answers travel slowly: the first send fails at the server before the client knows it.
    const lock = await lockDatabase(own);
    proxy.holdReplies();
    const first = alice.send(group.id, "one");
    await until(() => proxy.heldBytes > 0, "the server to answer the first send");
    // The database is back, and the user sends the next message before hearing of the first.
    await lock.release();
    const second = alice.send(group.id, "two");
    await sleep(300); // time for a second send, if one was made, to reach the server and be stored
    proxy.deliver();

    await Promise.all([first, second]);
    const history = await alice.history(group.id);
    expect(history.messages.map((m) => m.body)).toEqual(["before", "one", "two"]);
    expect(seqs(history.messages)).toEqual([1, 2, 3]);
  } finally {
    await proxy.close();
    await own.dispose();
  }
});

test("a send whose ack is lost is retried with the same client_id and stored once", async () => {
  const proxy = await new Proxy(server.port).start();
  try {
    const alice = await live(client(server, "alice2", { via: proxy, ackTimeoutMs: 800 }));
    const bob = await live(client(server, "bob2"));
    const direct = await alice.createDirect("bob2");
    await until(() => bob.cursor(direct.id) !== undefined, "bob to learn the chat");
    const atBob = collect(bob, direct.id);
    const atAlice = collect(alice, direct.id);
    const attempts: string[] = [];
    alice.socket.onAnyOutgoing((event, payload: { client_id?: string }) => {
      if (event === "message:send" && payload.client_id) attempts.push(payload.client_id);
    });

    // The request reaches the server, the answer doesn't.
    proxy.blackhole = true;
    const sent = alice.send(direct.id, "only once");
    await until(() => atBob.messages.length === 1, "the message to be stored and reach bob");
    // The ack times out and the client retries on the same (still deaf) connection…
    await until(() => attempts.length >= 2, "a retry after the timeout");
    // …then the connection breaks; the client reconnects and retries again.
    proxy.blackhole = false;
    proxy.cut();
    const message = await sent;

    expect(new Set(attempts).size).toBe(1);
    expect(attempts.length).toBeGreaterThanOrEqual(2);
    expect(message.client_id).toBe(attempts[0]);
    await sleep(200);
    expect(atBob.messages.map((m) => m.body)).toEqual(["only once"]);
    expect(atAlice.messages.map((m) => m.seq)).toEqual([1]);
    const history = await bob.history(direct.id);
    expect(history.messages).toHaveLength(1);
  } finally {
    await proxy.close();
  }
});

test("a forced disconnect mid-burst loses and duplicates nothing", async () => {
  const alice = await live(client(server, "alice3"));
  const bob = await live(client(server, "bob3"));
  const direct = await alice.createDirect("bob3");
  await until(() => bob.cursor(direct.id) !== undefined, "bob to learn the chat");
  const atBob = collect(bob, direct.id);
  const sends = range(1, 30).map((i) => alice.send(direct.id, `m${i}`));
  // Drop the transport while the burst is in flight: some sends were stored but not acked.
  alice.socket.io.engine.close();
  const stored = await Promise.all(sends);
  expect(stored.map((m) => m.body)).toEqual(range(1, 30).map((i) => `m${i}`));
  await until(() => atBob.messages.length === 30, "all 30 at bob");
  expect(seqs(atBob.messages)).toEqual(range(1, 30));
  expect(new Set(atBob.messages.map((m) => m.client_id)).size).toBe(30);
});

test("a refused send fails without retrying, and can be discarded", async () => {
  const alice = await live(client(server, "alice4"));
  const group = await alice.createGroup("limits", []);
  const error = await alice.send(group.id, "x".repeat(5001)).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ConfabError);
  expect((error as ConfabError).code).toBe("too_large");
  const [entry] = alice.pending(group.id);
  expect(entry?.state).toBe("failed");
  expect(entry?.attempts).toBe(1);
  alice.discard(entry?.client_id ?? "");
  expect(alice.pending(group.id)).toEqual([]);
  // A conversation that isn't ours: not_found, not retried either.
  const missing = await alice.send("0190f000-0000-7000-8000-000000000000", "hi").catch((e: unknown) => e);
  expect((missing as ConfabError).code).toBe("not_found");
});

test("rate-limited sends wait as told and are all stored, in order", async () => {
  const own = await startServer({ env: { CONFAB_RATE_SEND: "5/2" } });
  try {
    const alice = await live(client(own, "alice"));
    const group = await alice.createGroup("slow down", []);
    let limited = 0;
    const sends = range(1, 8).map((i) => alice.send(group.id, `r${i}`));
    const unsubscribe = alice.onOutbox(group.id, () => {
      if (alice.pending(group.id).some((e) => e.error?.code === "rate_limited")) limited++;
    });
    const stored = await Promise.all(sends);
    unsubscribe();
    expect(limited).toBeGreaterThan(0);
    expect(stored.map((m) => m.body)).toEqual(range(1, 8).map((i) => `r${i}`));
    expect(stored.map((m) => m.seq)).toEqual(range(1, 8));
  } finally {
    await own.dispose();
  }
});
