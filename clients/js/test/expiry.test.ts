// A token that can't be renewed must not turn into a reconnection storm: the client runs the
// session it has, never refreshes with a token that doesn't end later, stops once the session is
// over, and says so once (the state `ended`).
//
// Two minutes of the client's time are played in a few seconds: its timers (its own and
// socket.io's) run on a fake clock that also follows real time, so the session plays out for
// real against a real server, and then the clock is moved on a second at a time, with real I/O
// in between. Connection attempts are counted where the server sees them, at a TCP proxy.

import { setTimeout as realSleep } from "node:timers/promises";

import { afterAll, beforeAll, expect, test, vi } from "vitest";

import type { ConfabClient } from "../src/index.js";
import { client } from "./clients.js";
import { Proxy } from "./proxy.js";
import { startServer, until, type TestServer } from "./server.js";

let server: TestServer;
beforeAll(async () => {
  // Warned 2 s before the end: a 3 s token lives through its whole story in 3 s.
  server = await startServer({ env: { CONFAB_SESSION_WARNING_SECS: "2" } });
});
afterAll(async () => server.dispose());

/** Watches `c`: its states, the refreshes it sends, and the server's `session:expired`. */
function watch(c: ConfabClient) {
  const seen = { states: [] as string[], refreshes: 0, expired: 0 };
  c.onState((s) => {
    seen.states.push(s);
  });
  c.socket.onAnyOutgoing((event) => {
    if (event === "auth:refresh") seen.refreshes++;
  });
  c.socket.on("session:expired" as never, () => {
    seen.expired++;
  });
  return seen;
}

/** Moves the fake clock on by `ms`, a second at a time, letting real I/O happen in between. */
async function playFor(ms: number): Promise<void> {
  for (let t = 0; t < ms; t += 1_000) {
    await vi.advanceTimersByTimeAsync(1_000);
    await realSleep(15);
  }
}

/** Runs `scenario` with the client's timers on the fake clock; restores real timers after. */
async function withClientClock(scenario: () => Promise<void>): Promise<void> {
  vi.useFakeTimers({
    shouldAdvanceTime: true,
    toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval"],
  });
  try {
    await scenario();
  } finally {
    vi.useRealTimers();
  }
}

test("a token that can't be renewed: one session, no refresh, then `ended` once, and at most a handful of attempts in 2 minutes", async () => {
  const proxy = await new Proxy(server.port).start();
  try {
    await withClientClock(async () => {
      // The web app in token mode: the token it was handed is all it has.
      const fixed = await server.token("frozen", { ttlSecs: 3 });
      let tokenCalls = 0;
      const c = client(server, "frozen", {
        via: proxy,
        getToken: () => {
          tokenCalls++;
          return fixed;
        },
        // The defaults, not the test harness's quick ones: the bound holds as shipped.
        reconnectionDelayMs: 500,
        reconnectionDelayMaxMs: 5_000,
      });
      const seen = watch(c);
      try {
        await until(() => seen.expired === 1, "the session to end", 8_000);
        await playFor(120_000);
        expect(proxy.connections, "connection attempts in 2 minutes").toBeLessThanOrEqual(3);
        expect(seen.refreshes, "auth:refresh with a token that ends no later").toBe(0);
        expect(seen.states.filter((s) => s === "ended"), `states: ${seen.states.join(" → ")}`).toHaveLength(1);
        expect(c.state).toBe("ended");
        // It asked for a fresh token a few times (a host app's cache may renew late), not in a loop.
        expect(tokenCalls).toBeLessThanOrEqual(12);
      } finally {
        c.close();
      }
    });
  } finally {
    await proxy.close();
  }
});

test("a token already expired at the first connection: refused once, then `ended`, not retried in a loop", async () => {
  const proxy = await new Proxy(server.port).start();
  try {
    await withClientClock(async () => {
      const stale = await server.token("late", { ttlSecs: -30 });
      const c = client(server, "late", {
        via: proxy,
        getToken: () => stale,
        reconnectionDelayMs: 500,
        reconnectionDelayMaxMs: 5_000,
      });
      const seen = watch(c);
      const reasons: string[] = [];
      c.on("auth:error", (e) => reasons.push(e.reason ?? "?"));
      try {
        await until(() => proxy.connections >= 1 && reasons.length >= 1, "the first refusal", 8_000);
        await playFor(120_000);
        expect(proxy.connections, "connection attempts in 2 minutes").toBeLessThanOrEqual(2);
        expect(seen.states.filter((s) => s === "ended"), `states: ${seen.states.join(" → ")}`).toHaveLength(1);
        expect(c.state).toBe("ended");
        expect(reasons[0]).toBe("expired");
      } finally {
        c.close();
      }
    });
  } finally {
    await proxy.close();
  }
});
