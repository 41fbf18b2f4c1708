// Drives a running confab with the official socket.io-client, the way a browser app would:
// alice over WebSocket, bob over HTTP long-polling (no upgrade), carol polling then upgrading.
// Usage: node official.mjs URL ALICE_TOKEN BOB_TOKEN CAROL_TOKEN EXPIRED_TOKEN [json|msgpack]
// The last argument picks the client's parser: the default JSON one, or socket.io-msgpack-parser
// (the server learns each connection's parser by itself).
// Prints "ok" and exits 0 when every check passes; throws (exit 1) otherwise.
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import msgpackParser from "socket.io-msgpack-parser";

const [url, aliceToken, bobToken, carolToken, expiredToken, parserName = "json", serverKey] = process.argv.slice(2);
assert.ok(["json", "msgpack"].includes(parserName), `parser ${parserName}: json or msgpack`);
const parser = parserName === "msgpack" ? { parser: msgpackParser } : {};

function connect(token, transports) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { auth: { token }, transports, reconnection: false, forceNew: true, ...parser });
    socket.on("connect", () => resolve(socket));
    socket.on("connect_error", (err) => {
      socket.close();
      reject(err);
    });
  });
}

function next(socket, event) {
  return new Promise((resolve) => socket.once(event, resolve));
}

// Refusals reach the official client's connect_error with message and data.
await assert.rejects(connect(expiredToken, ["websocket"]), (err) => {
  assert.equal(err.message, "unauthorized");
  assert.deepEqual(err.data, { code: "unauthorized", reason: "expired" });
  return true;
});
await assert.rejects(connect("garbage", ["polling"]), (err) => {
  assert.deepEqual(err.data, { code: "unauthorized", reason: "invalid" });
  return true;
});

const alice = await connect(aliceToken, ["websocket"]);
// The server answers in the client's encoding: binary messages for MessagePack, text for JSON.
const frames = [];
alice.io.engine.on("packet", (p) => p.type === "message" && frames.push(typeof p.data));
const bob = await connect(bobToken, ["polling"]);
const carol = await connect(carolToken, ["polling", "websocket"]);
assert.equal(bob.io.engine.transport.name, "polling");

const created = await alice.emitWithAck("conversation:create", {
  kind: "group",
  title: "official client",
  member_ids: ["bob", "carol"],
});
assert.equal(created.ok, true, JSON.stringify(created));
const id = created.data.conversation.id;

// Every transport receives every message, in order.
const inbox = { bob: [], carol: [] };
bob.on("message:new", ({ message }) => inbox.bob.push(message.seq));
carol.on("message:new", ({ message }) => inbox.carol.push(message.seq));
for (let i = 0; i < 20; i++) {
  const reply = await alice.emitWithAck("message:send", {
    conversation_id: id,
    client_id: `official-${i}`,
    body: `message ${i}`,
  });
  assert.equal(reply.ok, true, JSON.stringify(reply));
}
// Bob answers over polling; alice hears it over WebSocket.
const heard = next(alice, "message:new");
const fromBob = await bob.emitWithAck("message:send", { conversation_id: id, client_id: "b", body: "polling works" });
assert.equal(fromBob.data.message.seq, 21);
assert.equal((await heard).message.body, "polling works");

const deadline = Date.now() + 5000;
while ((inbox.bob.length < 20 || inbox.carol.length < 21) && Date.now() < deadline) {
  await new Promise((r) => setTimeout(r, 20));
}
assert.deepEqual(inbox.bob, Array.from({ length: 20 }, (_, i) => i + 1));
assert.deepEqual(inbox.carol, Array.from({ length: 21 }, (_, i) => i + 1));
assert.equal(carol.io.engine.transport.name, "websocket", "carol upgraded from polling");

// Errors come back in the envelope.
const bad = await bob.emitWithAck("message:send", { conversation_id: id, client_id: "x", body: 42 });
assert.deepEqual([bad.ok, bad.error.code, bad.error.field], [false, "invalid_payload", "body"]);

assert.ok(frames.length > 0);
assert.deepEqual([...new Set(frames)], [parserName === "msgpack" ? "object" : "string"]);

// The server's last word before it disconnects reaches a polling client too: a ban's
// `session:ended`, then the disconnect (sent with the close packet, the event was dropped).
const ended = [];
bob.on("session:ended", (e) => ended.push(["session:ended", e.reason]));
const gone = new Promise((resolve) => bob.on("disconnect", (reason) => resolve(reason)));
const banned = await fetch(`${url}/api/server/users/bob/ban`, {
  method: "POST",
  headers: { authorization: `Bearer ${serverKey}`, "content-type": "application/json" },
  body: "{}",
});
assert.equal(banned.status, 200);
assert.equal(await gone, "io server disconnect");
assert.deepEqual(ended, [["session:ended", "banned"]]);

for (const s of [alice, bob, carol]) s.close();
console.log("ok");
