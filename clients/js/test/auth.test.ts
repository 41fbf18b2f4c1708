// Tokens: fetched per connection, refreshed before the session ends, retried when expired,
// and given up on when invalid. (Tokens that can't be renewed: expiry.test.ts; another user's:
// switch.test.ts.)

import { afterAll, beforeAll, expect, test } from "vitest";

import { client, live } from "./clients.js";
import { sleep, startServer, token, until, type TestServer } from "./server.js";

let server: TestServer;
beforeAll(async () => {
  // Warn 2 s before a token's end, so a 3 s token is refreshed within a second.
  server = await startServer({ env: { CONFAB_SESSION_WARNING_SECS: "2" } });
});
afterAll(async () => server.dispose());

test("session:expiring fetches a fresh token and refreshes the session in place", async () => {
  let calls = 0;
  const alice = client(server, "alice", {
    getToken: () => server.token("alice", { ttlSecs: ++calls === 1 ? 3 : 3600 }),
  });
  // Watched from the start: the warning may come before the client is live (the token's exp
  // is in whole seconds, so it can end barely more than 2 s after connecting).
  const refreshes: unknown[] = [];
  alice.socket.onAnyOutgoing((event) => {
    if (event === "auth:refresh") refreshes.push(event);
  });
  let disconnects = 0;
  alice.socket.on("disconnect", () => disconnects++);
  await live(alice);
  const id = alice.socket.id;
  await until(() => refreshes.length === 1, "an auth:refresh", 5_000);
  // Past the first token's end: still the same socket.
  await sleep(3_000);
  expect(calls).toBe(2);
  expect(disconnects).toBe(0);
  expect(alice.socket.id).toBe(id);
  expect(alice.state).toBe("live");
  await alice.createGroup("still here", []);
});

test("a refused refresh is tried again on the same connection", async () => {
  let calls = 0;
  const alice = client(server, "alice2", {
    // The second token is signed with another key: auth:refresh refuses it. The session is not
    // broken off for that (a reconnection would need a token as good); the refresh is retried.
    getToken: () => {
      calls++;
      if (calls === 1) return server.token("alice2", { ttlSecs: 3 });
      if (calls === 2) return token("alice2", { secret: "not-the-server-secret-at-all!!" });
      return server.token("alice2");
    },
  });
  const errors: string[] = [];
  alice.on("auth:error", (e) => errors.push(`${e.code}/${e.reason}`));
  let connects = 0;
  alice.socket.on("connect", () => connects++);
  let refreshed = 0;
  alice.socket.onAnyOutgoing((event) => {
    if (event === "auth:refresh") refreshed++;
  });
  await until(() => calls === 3 && refreshed === 2, "a second refresh", 8_000);
  // Past the first token's end: the same connection, renewed.
  await sleep(3_000);
  expect(errors).toEqual(["unauthorized/invalid"]);
  expect(connects).toBe(1);
  expect(alice.state).toBe("live");
  await alice.createGroup("refreshed", []);
});

test("an expired token at connect is replaced and retried; an invalid one stops the client", async () => {
  let calls = 0;
  const alice = client(server, "alice3", {
    getToken: () => server.token("alice3", { ttlSecs: ++calls === 1 ? -120 : 3600 }),
  });
  await live(alice);
  expect(calls).toBe(2);

  let garbageCalls = 0;
  const mallory = client(server, "mallory", {
    getToken: () => {
      garbageCalls++;
      return token("mallory", { secret: "not-the-server-secret-at-all!!" });
    },
  });
  await until(() => mallory.state === "unauthorized", "mallory to be refused", 5_000);
  await sleep(500);
  expect(garbageCalls).toBe(1);
  expect(mallory.state).toBe("unauthorized");
});

test("a session that ends without a refresh reconnects with a new token", async () => {
  let calls = 0;
  const alice = client(server, "alice4", {
    // The token fetch for the refresh hangs past the token's end: the server ends the session
    // at exp, and the client comes back with the next token.
    getToken: async () => {
      calls++;
      if (calls === 2) {
        await sleep(3_000);
        throw new Error("token service too slow");
      }
      return server.token("alice4", { ttlSecs: calls === 1 ? 3 : 3600 });
    },
  });
  let expired = 0;
  alice.socket.on("session:expired", () => expired++);
  let connects = 0;
  alice.socket.on("connect", () => connects++);
  await until(() => connects === 2 && alice.state === "live", "a new session", 8_000);
  expect(expired).toBe(1);
  expect(calls).toBe(3);
  await alice.createGroup("back", []);
});
