// The benchmark peer: confab's core protocol, built the way the Socket.IO and node-postgres guides show.
// Socket.IO 4.8 + @socket.io/redis-adapter (redis pub/sub clients) + pg Pool + jsonwebtoken.
// Each message is saved in PostgreSQL, acknowledged, then broadcast with socket.to(room).emit().
import { createServer } from "node:http";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import jwt from "jsonwebtoken";

import * as db from "./db.mjs";
import * as v from "./validate.mjs";
import { RequestError } from "./validate.mjs";

const config = {
  port: Number(process.env.PORT ?? 3101),
  host: process.env.HOST ?? "127.0.0.1",
  databaseUrl: process.env.DATABASE_URL ?? "postgres://root@127.0.0.1:5432/confab_peer",
  redisUrl: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
  redisKey: process.env.REDIS_KEY ?? "socket.io",
  jwtSecret: process.env.JWT_SECRET,
  pgPoolSize: Number(process.env.PG_POOL_SIZE ?? 20),
  // Off by default, as in the guides: events from one socket are handled concurrently, so two sends
  // emitted back to back without waiting for the first ack may be stored in either order.
  orderedSends: ["1", "true", "yes"].includes((process.env.PEER_ORDERED_SENDS ?? "").toLowerCase()),
};

if (!config.jwtSecret) {
  console.error("JWT_SECRET is required");
  process.exit(2);
}
if (!Number.isInteger(config.port) || config.port < 0 || config.port > 65535) {
  console.error("PORT must be a port number");
  process.exit(2);
}
if (!Number.isInteger(config.pgPoolSize) || config.pgPoolSize < 1) {
  console.error("PG_POOL_SIZE must be a positive integer");
  process.exit(2);
}

// --- authentication -------------------------------------------------------------------------------

const NAME_MAX = 200;

function authError(reason) {
  const err = new Error("unauthorized");
  err.data = { code: "unauthorized", reason };
  return err;
}

/** Verify the handshake token; returns { userId, name } or throws an authError. */
function verifyToken(token) {
  if (typeof token !== "string" || token.length === 0) throw authError("missing");
  let claims;
  try {
    claims = jwt.verify(token, config.jwtSecret, { algorithms: ["HS256"], clockTolerance: 60 });
  } catch (err) {
    throw authError(err.name === "TokenExpiredError" ? "expired" : "invalid");
  }
  if (claims === null || typeof claims !== "object") throw authError("invalid");
  if (!v.isUserId(claims.sub) || typeof claims.exp !== "number") throw authError("invalid");
  let name = null;
  if (claims.name !== undefined && claims.name !== null) {
    if (typeof claims.name !== "string") throw authError("invalid");
    name = [...claims.name].slice(0, NAME_MAX).join("");
  }
  return { userId: claims.sub, name };
}

// --- errors --------------------------------------------------------------------------------------

const UNAVAILABLE_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "57P01", "57P02", "57P03"]);

function isDatabaseDown(err) {
  return (
    UNAVAILABLE_CODES.has(err?.code) ||
    (typeof err?.code === "string" && err.code.startsWith("08")) ||
    /Connection terminated|connection timeout/i.test(err?.message ?? "")
  );
}

function errorEnvelope(err, event) {
  if (err instanceof RequestError) {
    const error = { code: err.code, message: err.message };
    if (err.field) error.field = err.field;
    return { ok: false, error };
  }
  if (isDatabaseDown(err)) {
    console.error(`${event}: database unavailable:`, err.message);
    return { ok: false, error: { code: "unavailable", message: "the database is unavailable; retry" } };
  }
  console.error(`${event}: internal error:`, err);
  return { ok: false, error: { code: "internal", message: "internal error" } };
}

// --- server --------------------------------------------------------------------------------------

let pool;
try {
  pool = await db.createPool(config.databaseUrl, config.pgPoolSize);
} catch (err) {
  console.error(`cannot set up the database at ${config.databaseUrl}: ${err.message || err.code || err}`);
  process.exit(1);
}

const pubClient = createClient({ url: config.redisUrl });
const subClient = pubClient.duplicate();
pubClient.on("error", (err) => console.error("redis pub:", err.message));
subClient.on("error", (err) => console.error("redis sub:", err.message));
await Promise.all([pubClient.connect(), subClient.connect()]);

const httpServer = createServer();
const io = new Server(httpServer, {
  adapter: createAdapter(pubClient, subClient, { key: config.redisKey }),
});

const userRoom = (id) => `user:${id}`;
const convRoom = (id) => `conv:${id}`;

// Handshake: verify the JWT, record the user and load their conversations before the socket connects,
// so that no event can arrive before the socket is in its rooms.
io.use(async (socket, next) => {
  let user;
  try {
    user = verifyToken(socket.handshake.auth?.token);
  } catch (err) {
    return next(err);
  }
  try {
    socket.data.userId = user.userId;
    socket.data.conversationIds = await db.connectUser(pool, user.userId, user.name);
    next();
  } catch (err) {
    console.error("handshake: database error:", err.message);
    const e = new Error("unavailable");
    e.data = { code: "unavailable" };
    next(e);
  }
});

const handlers = {
  async "conversation:create"(socket, p) {
    const me = socket.data.userId;
    let conversation;
    let created = true;
    if (p.kind === "group") {
      const title = v.title(p);
      const memberIds = v.memberIds(p, me);
      conversation = await db.createGroup(pool, me, title, memberIds);
    } else if (p.kind === "direct") {
      const other = v.userId(p.user_id, "user_id");
      if (other === me) throw new RequestError("invalid_payload", "user_id: must not be yourself", "user_id");
      ({ conversation, created } = await db.createDirect(pool, me, other));
    } else {
      throw new RequestError("invalid_payload", 'kind: must be "direct" or "group"', "kind");
    }
    if (created) {
      const rooms = conversation.members.map((m) => userRoom(m.user_id));
      io.in(rooms).socketsJoin(convRoom(conversation.id));
      return {
        data: { conversation },
        after: () => socket.to(rooms).emit("conversation:new", { conversation }),
      };
    }
    return { data: { conversation } };
  },

  async "conversation:list"(socket) {
    return { data: { conversations: await db.listConversations(pool, socket.data.userId) } };
  },

  async "message:send"(socket, p) {
    const conversationId = v.conversationId(p);
    const clientId = v.clientId(p);
    const body = v.body(p);
    const result = await db.sendMessage(pool, conversationId, socket.data.userId, clientId, body);
    if (!result) throw new RequestError("not_found", "conversation not found");
    const { message, created } = result;
    return {
      data: { message },
      after: created ? () => socket.to(convRoom(conversationId)).emit("message:new", { message }) : null,
    };
  },

  async "message:history"(socket, p) {
    const conversationId = v.conversationId(p);
    const query = v.historyQuery(p);
    const page = await db.history(pool, conversationId, socket.data.userId, query);
    if (!page) throw new RequestError("not_found", "conversation not found");
    return { data: page };
  },
};

io.on("connection", (socket) => {
  const { userId, conversationIds } = socket.data;
  delete socket.data.conversationIds;
  socket.join([userRoom(userId), ...conversationIds.map(convRoom)]);

  let sendChain = Promise.resolve();

  for (const [event, handler] of Object.entries(handlers)) {
    socket.on(event, (payload, ack) => {
      if (typeof payload === "function" && ack === undefined) [payload, ack] = [undefined, payload];
      const reply = typeof ack === "function" ? ack : () => {};
      const run = async () => {
        try {
          const { data, after } = await handler(socket, v.payloadObject(payload));
          reply({ ok: true, data });
          if (after) after();
        } catch (err) {
          reply(errorEnvelope(err, event));
        }
      };
      if (config.orderedSends && event === "message:send") sendChain = sendChain.then(run);
      else run();
    });
  }

  socket.onAny((event, ...args) => {
    if (Object.hasOwn(handlers, event)) return;
    const ack = args[args.length - 1];
    if (typeof ack === "function") {
      ack({ ok: false, error: { code: "invalid_payload", message: `unknown event: ${event}` } });
    }
  });
});

httpServer.listen(config.port, config.host, () => {
  const { address, port } = httpServer.address();
  const host = address.includes(":") ? `[${address}]` : address;
  console.log(`listening on http://${host}:${port}`);
});

let shuttingDown = false;
async function shutdown(signal) {
  if (shuttingDown) return;
  shuttingDown = true;
  const force = setTimeout(() => {
    console.error("shutdown timed out; exiting");
    process.exit(1);
  }, 10_000);
  force.unref();
  try {
    await io.close();
    await Promise.allSettled([pubClient.close(), subClient.close()]);
    await pool.end();
  } catch (err) {
    console.error(`shutdown after ${signal}:`, err);
    process.exit(1);
  }
  process.exit(0);
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
