// Two confab nodes sharing PostgreSQL and Redis. A node that commits and acks a message, then dies
// before passing it on to the other nodes, leaves it stranded: members elsewhere get no
// `message:new` and see no seq gap. When the survivor reaps the dead node it sends `resync`, and
// the client must catch up by itself, with no further message sent.
//
// Needs PostgreSQL on 127.0.0.1:5432 (user root, trust; `psql` to make a fresh database) and Redis
// on 127.0.0.1:6379: skipped without them, except in CI (`CI=true`), where that fails.

import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { connect as tcpConnect } from "node:net";

import { afterAll, expect, test } from "vitest";

import { client, collect, live, seqs } from "./clients.js";
import { Proxy } from "./proxy.js";
import { sleep, TestServer, until } from "./server.js";

const PG = { host: "127.0.0.1", port: 5432, user: "root" };
const REDIS_PORT = 6379;

function reachable(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = tcpConnect(port, "127.0.0.1");
    socket.setTimeout(2_000);
    socket.once("connect", () => {
      socket.destroy();
      done(true);
    });
    socket.once("error", () => done(false));
    socket.once("timeout", () => {
      socket.destroy();
      done(false);
    });
  });
}

function psql(sql: string): void {
  execFileSync("psql", ["-h", PG.host, "-p", String(PG.port), "-U", PG.user, "-d", "postgres", "-qAtc", sql], {
    stdio: ["ignore", "ignore", "pipe"],
  });
}

function psqlPresent(): boolean {
  try {
    execFileSync("psql", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

const ci = !!process.env.CI && process.env.CI !== "false" && process.env.CI !== "0";
const missing = [
  !(await reachable(PG.port)) && "PostgreSQL on 127.0.0.1:5432",
  !(await reachable(REDIS_PORT)) && "Redis on 127.0.0.1:6379",
  !psqlPresent() && "psql",
].filter(Boolean);
if (missing.length > 0 && ci) throw new Error(`required in CI and missing: ${missing.join(", ")}`);
if (missing.length > 0) console.warn(`skipping the cluster tests: ${missing.join(", ")} missing`);

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) {
    try {
      await cleanup();
    } catch (e) {
      console.warn("cleanup failed:", e);
    }
  }
});

/** A fresh database, dropped after the tests. */
function freshDatabase(): string {
  const name = `confab_js_${Date.now()}_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
  psql(`CREATE DATABASE ${name}`);
  cleanups.push(() => psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  return `postgres://${PG.user}@${PG.host}:${PG.port}/${name}`;
}

async function node(env: Record<string, string>): Promise<TestServer> {
  const server = new TestServer({ env });
  cleanups.push(() => server.dispose());
  return server.start();
}

test.skipIf(missing.length > 0)(
  "a message stranded by a node that died reaches the other nodes' clients once, with no further message",
  async () => {
    const settings = {
      CONFAB_DATABASE_URL: freshDatabase(),
      CONFAB_REDIS_PREFIX: `js${randomUUID().replaceAll("-", "")}`,
      CONFAB_NODE_TIMEOUT_SECS: "3",
    };
    // Node 2 reaches Redis through a proxy the test freezes: a real partition makes its publish
    // vanish, with no hook in the server.
    const redisProxy = await new Proxy(REDIS_PORT).start();
    cleanups.push(() => redisProxy.close());
    const node1 = await node({ ...settings, CONFAB_REDIS_URL: `redis://127.0.0.1:${REDIS_PORT}` });
    const node2 = await node({ ...settings, CONFAB_REDIS_URL: `redis://127.0.0.1:${redisProxy.port}` });

    const bob = await live(client(node2, "bob"));
    const alice = await live(client(node1, "alice"));
    const group = await alice.createGroup("across nodes", ["bob"]);
    await until(() => bob.cursor(group.id) !== undefined, "bob (on node 2) to learn the group");
    const atAlice = collect(alice, group.id);
    const states: string[] = [];
    alice.onState((s) => states.push(s));
    let resyncs = 0;
    alice.on("resync", () => resyncs++);

    await bob.send(group.id, "before");
    await until(() => atAlice.messages.length === 1, "the first message, live across nodes");

    redisProxy.freeze();
    const stranded = await bob.send(group.id, "committed and acked, never published");
    expect(stranded.seq).toBe(2);
    await node2.stop(); // SIGKILL
    const killedAt = Date.now();

    // Nothing else is sent. Node 1 reaps node 2 within about the node timeout and says `resync`.
    await until(() => atAlice.messages.length >= 2, "the stranded message at alice", 15_000);
    const took = Date.now() - killedAt;
    await sleep(500);
    expect(seqs(atAlice.messages)).toEqual([1, 2]);
    expect(atAlice.messages[1]).toEqual(stranded);
    expect(resyncs).toBeGreaterThanOrEqual(1);
    expect(states).toContain("syncing");
    await live(alice);
    expect(alice.conversations.get(group.id)?.last_message?.id).toBe(stranded.id);
    expect(took).toBeLessThan(12_000);
  },
  60_000,
);
