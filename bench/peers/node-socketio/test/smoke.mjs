// Smoke test for the node peer: two peer processes (sharing PostgreSQL and Redis) in a throwaway database,
// driven with socket.io-client 4.8. Needs PostgreSQL at 127.0.0.1:5432 (user root, trust) and Redis at
// 127.0.0.1:6379; override with SMOKE_PG_URL (any database on the server) and SMOKE_REDIS_URL.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import jwt from "jsonwebtoken";
import pg from "pg";
import { io as ioClient } from "socket.io-client";

const SERVER = fileURLToPath(new URL("../server.mjs", import.meta.url));
const SECRET = "smoke-secret";
const RUN = `${process.pid}_${randomBytes(4).toString("hex")}`;
const PG_BASE = process.env.SMOKE_PG_URL ?? "postgres://root@127.0.0.1:5432/postgres";
const REDIS_URL = process.env.SMOKE_REDIS_URL ?? "redis://127.0.0.1:6379";
const DB_NAME = `confab_peer_smoke_${RUN}`;
const DATABASE_URL = Object.assign(new URL(PG_BASE), { pathname: `/${DB_NAME}` }).toString();

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const TS_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function startPeer() {
  const port = await freePort();
  const child = spawn(process.execPath, [SERVER], {
    env: {
      ...process.env,
      PORT: String(port),
      HOST: "127.0.0.1",
      DATABASE_URL,
      REDIS_URL,
      REDIS_KEY: `confab-peer-smoke-${RUN}`,
      JWT_SECRET: SECRET,
      PG_POOL_SIZE: "5",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const started = Date.now();
  await new Promise((resolve, reject) => {
    let stdout = "";
    const timer = setTimeout(() => reject(new Error(`peer did not start in 20 s:\n${stderr}`)), 20_000);
    child.stdout.on("data", (d) => {
      stdout += d;
      if (stdout.includes(`listening on http://127.0.0.1:${port}`)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`peer exited with ${code} before listening:\n${stderr}`));
    });
  });
  return { child, port, url: `http://127.0.0.1:${port}`, startupMs: Date.now() - started, stderr: () => stderr };
}

function stopPeer(peer) {
  return new Promise((resolve) => {
    if (peer.child.exitCode !== null) return resolve(peer.child.exitCode);
    peer.child.once("exit", (code, signal) => resolve(code ?? signal));
    peer.child.kill("SIGTERM");
  });
}

function token(sub, extra = {}, options = {}) {
  return jwt.sign({ sub, ...extra }, options.secret ?? SECRET, {
    algorithm: options.algorithm ?? "HS256",
    expiresIn: options.expiresIn ?? "1h",
  });
}

const sockets = [];

function connect(peer, auth, opts = {}) {
  const socket = ioClient(peer.url, { auth, reconnection: false, forceNew: true, ...opts });
  sockets.push(socket);
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => reject(err));
  });
}

async function connectError(peer, auth) {
  try {
    await connect(peer, auth);
  } catch (err) {
    return err;
  }
  assert.fail("connected although the token should have been refused");
}

const call = (socket, event, ...payload) => socket.timeout(5000).emitWithAck(event, ...payload);

async function ok(socket, event, ...payload) {
  const res = await call(socket, event, ...payload);
  assert.equal(res.ok, true, `${event} failed: ${JSON.stringify(res)}`);
  return res.data;
}

async function fails(socket, event, payload, code) {
  const res = await call(socket, event, payload);
  assert.equal(res.ok, false, `${event} should fail with ${code}: ${JSON.stringify(res)}`);
  assert.equal(res.error.code, code, JSON.stringify(res));
  assert.equal(typeof res.error.message, "string");
  return res.error;
}

/** Collects every event of one name on a socket. */
function recorder(socket, event) {
  const seen = [];
  socket.on(event, (payload) => seen.push(payload));
  return {
    seen,
    async next(pred = () => true, ms = 3000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const i = seen.findIndex(pred);
        if (i >= 0) return seen.splice(i, 1)[0];
        if (Date.now() > deadline) assert.fail(`no ${event} within ${ms} ms`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function assertMessage(m) {
  assert.match(m.id, UUID_RE);
  assert.match(m.conversation_id, UUID_RE);
  assert.equal(typeof m.seq, "number");
  assert.equal(typeof m.sender_id, "string");
  assert.equal(typeof m.client_id, "string");
  assert.match(m.created_at, TS_RE);
  assert.equal(m.edited_at, null);
  assert.equal(m.deleted_at, null);
  assert.deepEqual(Object.keys(m).sort(), [
    "body", "client_id", "conversation_id", "created_at", "deleted_at", "edited_at", "id", "sender_id", "seq",
  ]);
}

describe("node-socketio peer", () => {
  let a; // peer process A
  let b; // peer process B: same database and Redis, to check the Redis adapter
  let alice, alice2, bob, carol;
  let rec;
  let group;

  before(async () => {
    a = await startPeer();
    b = await startPeer();
    console.log(`# peer startup: ${a.startupMs} ms (creating database ${DB_NAME}), ${b.startupMs} ms (existing)`);
  });

  after(async () => {
    for (const s of sockets) s.disconnect();
    const codes = await Promise.all([a, b].filter(Boolean).map(stopPeer));
    const admin = new pg.Client({ connectionString: PG_BASE });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(DB_NAME)} WITH (FORCE)`);
    await admin.end();
    assert.deepEqual(codes, [0, 0], "peers should exit 0 on SIGTERM");
  });

  test("refuses bad tokens with connect_error data", async () => {
    const cases = [
      [{}, "missing"],
      [{ token: "" }, "missing"],
      [{ token: "not-a-jwt" }, "invalid"],
      [{ token: token("alice", {}, { secret: "wrong" }) }, "invalid"],
      [{ token: token("alice", {}, { algorithm: "HS384" }) }, "invalid"],
      [{ token: jwt.sign({ sub: "alice", exp: Math.floor(Date.now() / 1000) + 60 }, "", { algorithm: "none" }) }, "invalid"],
      [{ token: jwt.sign({ sub: "alice" }, SECRET) }, "invalid"], // no exp
      [{ token: jwt.sign({ exp: Math.floor(Date.now() / 1000) + 60 }, SECRET) }, "invalid"], // no sub
      [{ token: jwt.sign({ sub: "alice", exp: Math.floor(Date.now() / 1000) - 120 }, SECRET) }, "expired"],
    ];
    for (const [auth, reason] of cases) {
      const err = await connectError(a, auth);
      assert.equal(err.message, "unauthorized");
      assert.deepEqual(err.data, { code: "unauthorized", reason }, JSON.stringify(auth));
    }
  });

  test("connects users on both peers", async () => {
    alice = await connect(a, { token: token("alice", { name: "Alice" }) });
    alice2 = await connect(b, { token: token("alice", { name: "Alice" }) }, { transports: ["websocket"] });
    bob = await connect(a, { token: token("bob", { name: "Bob" }) });
    carol = await connect(b, { token: token("carol") }, { transports: ["websocket"] });
    rec = {};
    for (const [who, s] of Object.entries({ alice, alice2, bob, carol })) {
      rec[who] = { convNew: recorder(s, "conversation:new"), msgNew: recorder(s, "message:new") };
    }
  });

  test("creates a group and tells the members", async () => {
    const { conversation } = await ok(alice, "conversation:create", {
      kind: "group",
      title: "  Team  ",
      member_ids: ["bob", "carol", "bob", "alice"],
    });
    group = conversation;
    assert.match(group.id, UUID_RE);
    assert.equal(group.kind, "group");
    assert.equal(group.title, "Team");
    assert.match(group.created_at, TS_RE);
    assert.equal(group.last_seq, 0);
    assert.equal(group.last_message, null);
    assert.deepEqual(group.members, [
      { user_id: "alice", name: "Alice", role: "owner" },
      { user_id: "bob", name: "Bob", role: "member" },
      { user_id: "carol", name: null, role: "member" },
    ]);
    for (const who of ["bob", "carol", "alice2"]) {
      const { conversation: c } = await rec[who].convNew.next((e) => e.conversation.id === group.id);
      assert.deepEqual(c, group);
    }
    await sleep(200);
    assert.equal(rec.alice.convNew.seen.length, 0, "the creating socket gets the ack, not conversation:new");
  });

  test("sends a message: ack, then message:new to the other sockets of all members", async () => {
    const { message } = await ok(alice, "message:send", {
      conversation_id: group.id,
      client_id: "c-1",
      body: "hello",
      extra_field: "ignored",
    });
    assertMessage(message);
    assert.equal(message.conversation_id, group.id);
    assert.equal(message.seq, 1);
    assert.equal(message.sender_id, "alice");
    assert.equal(message.client_id, "c-1");
    assert.equal(message.body, "hello");
    for (const who of ["bob", "carol", "alice2"]) {
      const got = await rec[who].msgNew.next((e) => e.message.id === message.id);
      assert.deepEqual(got, { message });
    }
    await sleep(200);
    assert.equal(rec.alice.msgNew.seen.length, 0, "the sending socket gets no message:new");
  });

  test("an idempotent retry returns the stored message and broadcasts nothing", async () => {
    const first = await call(alice, "message:history", { conversation_id: group.id });
    const { message } = await ok(alice, "message:send", { conversation_id: group.id, client_id: "c-1", body: "hello" });
    assert.deepEqual(message, first.data.messages[0]);
    // Also from another socket of the same user, with a different body: still the stored one.
    const again = await ok(alice2, "message:send", { conversation_id: group.id, client_id: "c-1", body: "changed" });
    assert.deepEqual(again.message, message);
    await sleep(300);
    assert.equal(rec.bob.msgNew.seen.length, 0);
    assert.equal(rec.carol.msgNew.seen.length, 0);
    // The rolled-back retry left no gap: the next message is seq 2.
    const { message: m2 } = await ok(bob, "message:send", { conversation_id: group.id, client_id: "c-1", body: "hi" });
    assert.equal(m2.seq, 2);
    assert.equal(m2.sender_id, "bob");
    assert.equal((await rec.carol.msgNew.next()).message.id, m2.id);
    assert.equal((await rec.alice.msgNew.next()).message.id, m2.id);
    assert.equal((await rec.alice2.msgNew.next()).message.id, m2.id);
  });

  test("history pages by seq", async () => {
    for (let i = 3; i <= 6; i++) {
      await ok(carol, "message:send", { conversation_id: group.id, client_id: `c-${i}`, body: `m${i}` });
    }
    const seqs = (d) => d.messages.map((m) => m.seq);
    let d = await ok(bob, "message:history", { conversation_id: group.id });
    assert.deepEqual(seqs(d), [1, 2, 3, 4, 5, 6]);
    assert.equal(d.has_more, false);
    d.messages.forEach(assertMessage);
    d = await ok(bob, "message:history", { conversation_id: group.id, limit: 2 });
    assert.deepEqual([seqs(d), d.has_more], [[5, 6], true]);
    d = await ok(bob, "message:history", { conversation_id: group.id, before_seq: 5, limit: 2 });
    assert.deepEqual([seqs(d), d.has_more], [[3, 4], true]);
    d = await ok(bob, "message:history", { conversation_id: group.id, before_seq: 3, limit: 2 });
    assert.deepEqual([seqs(d), d.has_more], [[1, 2], false]);
    d = await ok(bob, "message:history", { conversation_id: group.id, after_seq: 4 });
    assert.deepEqual([seqs(d), d.has_more], [[5, 6], false]);
    d = await ok(bob, "message:history", { conversation_id: group.id, after_seq: 1, limit: 2 });
    assert.deepEqual([seqs(d), d.has_more], [[2, 3], true]);
    d = await ok(bob, "message:history", { conversation_id: group.id, after_seq: 1, before_seq: 5, limit: 2 });
    assert.deepEqual([seqs(d), d.has_more], [[2, 3], true]);
    d = await ok(bob, "message:history", { conversation_id: group.id, after_seq: 1, before_seq: 5, limit: 3 });
    assert.deepEqual([seqs(d), d.has_more], [[2, 3, 4], false]);
    d = await ok(bob, "message:history", { conversation_id: group.id, after_seq: 6 });
    assert.deepEqual([seqs(d), d.has_more], [[], false]);
  });

  test("direct conversations: one per pair", async () => {
    const { conversation: d1 } = await ok(alice, "conversation:create", { kind: "direct", user_id: "bob" });
    assert.equal(d1.kind, "direct");
    assert.equal(d1.title, null);
    assert.deepEqual(d1.members.map((m) => m.user_id).sort(), ["alice", "bob"]);
    assert.equal((await rec.bob.convNew.next((e) => e.conversation.id === d1.id)).conversation.kind, "direct");
    const { conversation: d2 } = await ok(bob, "conversation:create", { kind: "direct", user_id: "alice" });
    assert.equal(d2.id, d1.id);
    await fails(alice, "conversation:create", { kind: "direct", user_id: "alice" }, "invalid_payload");
    await sleep(200);
    assert.equal(rec.alice.convNew.seen.length, 0);
    const { message } = await ok(bob, "message:send", { conversation_id: d1.id, client_id: "d-1", body: "psst" });
    assert.equal((await rec.alice.msgNew.next((e) => e.message.id === message.id)).message.seq, 1);
    assert.equal((await rec.alice2.msgNew.next((e) => e.message.id === message.id)).message.seq, 1);
    await sleep(200);
    assert.equal(rec.carol.msgNew.seen.length, 0, "non-members get nothing");
  });

  test("lists conversations, most recent activity first", async () => {
    const { conversations } = await ok(alice, "conversation:list", {});
    assert.equal(conversations.length, 2);
    const [direct, team] = conversations;
    assert.equal(direct.kind, "direct");
    assert.equal(direct.last_seq, 1);
    assert.equal(direct.last_message.body, "psst");
    assert.equal(team.id, group.id);
    assert.equal(team.last_seq, 6);
    assert.equal(team.last_message.seq, 6);
    assertMessage(team.last_message);
    const { conversations: carols } = await ok(carol, "conversation:list");
    assert.deepEqual(carols.map((c) => c.id), [group.id]);
  });

  test("a user added while offline joins the rooms on connect", async () => {
    const { conversation } = await ok(alice, "conversation:create", { kind: "group", title: "Later", member_ids: ["dave"] });
    const dave = await connect(b, { token: token("dave", { name: "Dave" }) });
    const daveNew = recorder(dave, "message:new");
    const { message } = await ok(alice, "message:send", { conversation_id: conversation.id, client_id: "x", body: "hi dave" });
    assert.equal((await daveNew.next()).message.id, message.id);
    await fails(dave, "message:send", { conversation_id: group.id, client_id: "x", body: "let me in" }, "not_found");
    await fails(dave, "message:history", { conversation_id: group.id }, "not_found");
  });

  test("rejects bad payloads with the protocol's codes", async () => {
    const cid = group.id;
    const cases = [
      ["message:send", { conversation_id: cid, client_id: "e", body: "x".repeat(5001) }, "too_large", "body"],
      ["message:send", { conversation_id: cid, client_id: "e", body: "   " }, "invalid_payload", "body"],
      ["message:send", { conversation_id: cid, client_id: "e", body: 5 }, "invalid_payload", "body"],
      ["message:send", { conversation_id: cid, client_id: "", body: "x" }, "invalid_payload", "client_id"],
      ["message:send", { conversation_id: cid, client_id: "e".repeat(65), body: "x" }, "invalid_payload", "client_id"],
      ["message:send", { conversation_id: "nope", client_id: "e", body: "x" }, "invalid_payload", "conversation_id"],
      ["message:send", { client_id: "e", body: "x" }, "invalid_payload", "conversation_id"],
      ["message:send", { conversation_id: "00000000-0000-4000-8000-000000000000", client_id: "e", body: "x" }, "not_found"],
      ["message:send", "not an object", "invalid_payload"],
      ["message:send", [1, 2], "invalid_payload"],
      ["message:history", { conversation_id: cid, limit: 0 }, "invalid_payload", "limit"],
      ["message:history", { conversation_id: cid, before_seq: -1 }, "invalid_payload", "before_seq"],
      ["conversation:create", { kind: "group", title: "" }, "invalid_payload", "title"],
      ["conversation:create", { kind: "group", title: "t".repeat(201) }, "too_large", "title"],
      ["conversation:create", { kind: "group", title: "t", member_ids: Array.from({ length: 1000 }, (_, i) => `u${i}`) }, "too_large", "member_ids"],
      ["conversation:create", { kind: "group", title: "t", member_ids: "bob" }, "invalid_payload", "member_ids"],
      ["conversation:create", { kind: "channel" }, "invalid_payload", "kind"],
      ["no:such:event", {}, "invalid_payload"],
    ];
    for (const [event, payload, code, field] of cases) {
      const error = await fails(bob, event, payload, code);
      if (field) assert.equal(error.field, field, `${event} ${JSON.stringify(payload).slice(0, 80)}`);
    }
    // A body of 5000 code points outside the BMP (10000 UTF-16 units) is within the limit.
    const { message } = await ok(bob, "message:send", { conversation_id: cid, client_id: "emoji", body: "😀".repeat(5000) });
    assert.equal(message.seq, 7);
    assert.equal(bob.connected, true, "bad payloads never disconnect");
  });
});
