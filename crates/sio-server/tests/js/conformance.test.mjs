// Conformance of confab-sio with the official socket.io-client. Started by tests/conformance.rs, which runs
// the server (ping interval 1 s, ping timeout 1 s, maxPayload 100000) and sets SIO_URL, once per parser:
// SIO_PARSER=json (the default parser) and SIO_PARSER=msgpack (socket.io-msgpack-parser).
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import msgpackParser from "socket.io-msgpack-parser";

const URL = process.env.SIO_URL;
if (!URL) {
  throw new Error("SIO_URL is not set: run this through `cargo test -p confab-sio --test conformance`");
}

const PARSER_NAME = process.env.SIO_PARSER ?? "json";
if (!["json", "msgpack"].includes(PARSER_NAME)) throw new Error(`SIO_PARSER=${PARSER_NAME}: json or msgpack`);
const PARSER = PARSER_NAME === "msgpack" ? { parser: msgpackParser } : {};

const opened = [];

/** A client that doesn't reconnect unless asked, labelled `name` in the server's records. */
function connect(name, options = {}) {
  const socket = io(URL, { forceNew: true, reconnection: false, timeout: 5000, auth: { token: "ok", name }, ...PARSER, ...options });
  opened.push(socket);
  return socket;
}

function once(emitter, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${event}" within ${ms} ms`)), ms);
    emitter.once(event, (...args) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

function connected(socket, ms = 5000) {
  if (socket.connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not connected within ${ms} ms`)), ms);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once("connect_error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

const ack = (socket, event, ...args) => socket.timeout(5000).emitWithAck(event, ...args);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const bytes = (data) => [...new Uint8Array(data instanceof ArrayBuffer ? data : data.buffer ? data : data)];

/** What the server's handler recorded (disconnect reasons, events, connects by label). */
async function records() {
  const observer = connect("observer", { transports: ["websocket"] });
  await connected(observer);
  const result = await ack(observer, "records");
  observer.disconnect();
  return result;
}

async function eventually(check, what, ms = 5000) {
  const until = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

after(() => {
  for (const socket of opened) socket.disconnect();
});

describe(`parser (${PARSER_NAME})`, () => {
  for (const transports of [["websocket"], ["polling"]]) {
    test(`the client's packets go out in its parser's encoding (${transports})`, async () => {
      const s = connect("parser", { transports });
      // Engine.IO messages as they arrived, before the parser decoded them.
      const received = [];
      s.io.engine.on("packet", (packet) => {
        if (packet.type === "message") received.push(packet);
      });
      await connected(s);
      assert.deepEqual(await ack(s, "echo", { n: 1 }), { n: 1 });
      // What the server sent came in the client's encoding: binary for MessagePack, text for JSON.
      const kinds = new Set(received.map((p) => typeof p.data));
      assert.ok(received.length >= 2, JSON.stringify(received));
      assert.deepEqual([...kinds], [PARSER_NAME === "msgpack" ? "object" : "string"]);
      s.disconnect();
    });
  }
});

describe("transports", () => {
  test("websocket-only connect", async () => {
    const s = connect("ws-only", { transports: ["websocket"] });
    await connected(s);
    assert.equal(s.io.engine.transport.name, "websocket");
    assert.equal(await ack(s, "transport"), "websocket");
    assert.ok(typeof s.id === "string" && s.id.length > 0);
    s.disconnect();
  });

  test("polling-only connect", async () => {
    const s = connect("polling-only", { transports: ["polling"] });
    await connected(s);
    assert.equal(s.io.engine.transport.name, "polling");
    assert.equal(await ack(s, "transport"), "polling");
    const echoed = once(s, "echo");
    s.emit("echo", { hello: "polling" });
    assert.deepEqual((await echoed)[0], { hello: "polling" });
    s.disconnect();
  });

  test("polling upgrades to websocket, keeping event order across the switch", async () => {
    const s = connect("upgrade");
    await connected(s);
    // Emitted while the upgrade is under way: some go by polling, the rest by WebSocket.
    for (let i = 0; i < 200; i++) s.emit("seq", i);
    if (s.io.engine.transport.name !== "websocket") await once(s.io.engine, "upgrade");
    assert.equal(await ack(s, "transport"), "websocket");
    assert.deepEqual(await ack(s, "seq:check"), { count: 200, ordered: true });
    const echoed = once(s, "echo");
    s.emit("echo", "after upgrade");
    assert.deepEqual(await echoed, ["after upgrade"]);
    s.disconnect();
  });
});

describe("connect", () => {
  test("the auth payload reaches the handler", async () => {
    const auth = { token: "ok", name: "auth", nested: { n: 42, list: [1, "x", null] } };
    const s = connect("auth", { auth, transports: ["websocket"] });
    await connected(s);
    assert.deepEqual(await ack(s, "auth:get"), auth);
    s.disconnect();
  });

  for (const transports of [["websocket"], ["polling"]]) {
    test(`connect_error carries message and data (${transports})`, async () => {
      const s = connect("expired", { transports, auth: { token: "expired", name: "expired" } });
      const [err] = await once(s, "connect_error");
      assert.equal(err.message, "unauthorized");
      assert.deepEqual(err.data, { code: "unauthorized", reason: "expired" });
      assert.equal(s.connected, false);
      s.disconnect();
    });
  }

  test("connect_error without a token says missing", async () => {
    const s = connect("missing", { auth: {}, transports: ["websocket"] });
    const [err] = await once(s, "connect_error");
    assert.equal(err.message, "unauthorized");
    assert.deepEqual(err.data, { code: "unauthorized", reason: "missing" });
    s.disconnect();
  });

  test("a second namespace is refused", async () => {
    const s = io(`${URL}/other`, { forceNew: true, reconnection: false, auth: { token: "ok" }, ...PARSER });
    opened.push(s);
    const [err] = await once(s, "connect_error");
    assert.equal(err.message, "Invalid namespace");
    s.disconnect();
  });

  for (const transports of [["websocket"], ["polling"]]) {
    test(`a second namespace is refused once and the connection closed (${transports})`, async () => {
      const main = connect(`nsp-main-${transports}`, { transports, reconnection: true, reconnectionDelay: 50 });
      await connected(main);
      const other = main.io.socket("/other", { auth: { token: "ok" } });
      let refusals = 0;
      other.on("connect_error", () => refusals++);
      other.connect();
      const [reason] = await once(main, "disconnect");
      assert.equal(reason, "transport close");
      assert.equal(refusals, 1);
      // The manager reconnects `/` and does not ask for the refused namespace again.
      await connected(main);
      await sleep(300);
      assert.equal(refusals, 1);
      assert.ok(main.connected);
      main.disconnect();
    });
  }
});

describe("events", () => {
  test("emit with ack, client → server", async () => {
    const s = connect("acks", { transports: ["websocket"] });
    await connected(s);
    assert.deepEqual(await ack(s, "echo", { x: [1, 2, { y: "é" }] }), { x: [1, 2, { y: "é" }] });
    s.disconnect();
  });

  for (const transports of [["websocket"], ["polling"]]) {
    test(`emit with ack, server → client (${transports})`, async () => {
      const s = connect("server-acks", { transports });
      s.on("question", (q, callback) => callback({ answer: q.x * 2 }));
      await connected(s);
      assert.deepEqual(await ack(s, "ask", { x: 21 }), { answer: 42 });
      s.disconnect();
    });
  }

  for (const transports of [["websocket"], ["polling"]]) {
    test(`binary events and acks round-trip (${transports})`, async () => {
      const s = connect("binary", { transports });
      await connected(s);
      const payload = {
        file: Buffer.from([0, 1, 2, 254, 255]),
        more: [Buffer.from("abc"), Uint8Array.from([5, 6]), new Uint8Array([7]).buffer],
        name: "x",
        when: new Date(Date.UTC(2026, 11, 6, 12, 30)),
      };
      const echoed = once(s, "echo");
      const reply = await ack(s, "echo", payload);
      for (const got of [reply, (await echoed)[0]]) {
        assert.equal(got.name, "x");
        assert.deepEqual(bytes(got.file), [0, 1, 2, 254, 255]);
        assert.deepEqual(bytes(got.more[0]), [97, 98, 99]);
        assert.deepEqual(bytes(got.more[1]), [5, 6]);
        assert.deepEqual(bytes(got.more[2]), [7]);
        // A Date reaches the server as its ISO text, whichever the parser (JSON.stringify's form).
        assert.equal(got.when, "2026-12-06T12:30:00.000Z");
      }
      s.disconnect();
    });
  }

  for (const transports of [["websocket"], ["polling"]]) {
    test(`1000 events reach the handler in order (${transports})`, async () => {
      const s = connect("order", { transports });
      await connected(s);
      for (let i = 0; i < 1000; i++) s.emit("seq", i);
      assert.deepEqual(await ack(s, "seq:check"), { count: 1000, ordered: true });
      s.disconnect();
    });
  }

  for (const [label, transports] of [["big-ws", ["websocket"]], ["big-polling", ["polling"]]]) {
    test(`an oversized message is refused (${transports})`, async () => {
      const s = connect(label, { transports });
      await connected(s);
      const closed = once(s, "disconnect", 8000);
      s.emit("big", "x".repeat(200_000));
      const [reason] = await closed;
      assert.ok(["transport close", "transport error"].includes(reason), reason);
      s.disconnect();
    });
  }
});

describe("disconnects", () => {
  test("server disconnect", async () => {
    const s = connect("kicked", { transports: ["websocket"] });
    await connected(s);
    const closed = once(s, "disconnect");
    s.emit("kick");
    assert.deepEqual(await closed, ["io server disconnect", undefined]);
  });

  test("client disconnect reaches the handler", async () => {
    const s = connect("client-disconnect", { transports: ["websocket"] });
    await connected(s);
    s.disconnect();
    await eventually(
      async () => (await records()).disconnects["client-disconnect"]?.[0] === "client namespace disconnect",
      "the handler's disconnect",
    );
  });

  test("a client that stops answering pings is closed on ping timeout", async () => {
    const s = connect("no-pong", { transports: ["websocket"] });
    await connected(s);
    const engine = s.io.engine;
    const send = engine._sendPacket.bind(engine);
    engine._sendPacket = (type, ...rest) => {
      if (type !== "pong") send(type, ...rest);
    };
    const [reason] = await once(s, "disconnect", 8000);
    assert.ok(["transport close", "ping timeout"].includes(reason), reason);
    await eventually(
      async () => (await records()).disconnects["no-pong"]?.[0] === "ping timeout",
      "the ping timeout on the server",
    );
  });

  test("the client reconnects after its transport closes", async () => {
    const s = connect("reconnect", { transports: ["websocket"], reconnection: true, reconnectionDelay: 100 });
    await connected(s);
    const first = s.id;
    const reconnected = once(s.io, "reconnect", 8000);
    s.io.engine.close();
    await reconnected;
    await connected(s);
    assert.notEqual(s.id, first);
    assert.equal(await ack(s, "transport"), "websocket");
    s.disconnect();
  });
});
