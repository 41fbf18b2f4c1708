// @confab/client's outbox across tabs, in Chromium: tabs of one user share localStorage and
// coordinate with Web Locks. A tab still open keeps its own unsent messages (a message it
// discards never comes back through another tab), and what a tab left when it closed is sent by
// a tab still open. The pages run the client library from source (bundled with esbuild), served
// from a local origin that confab allows (CONFAB_CORS_ORIGINS); the server is real.

import { createServer, type Server } from "node:http";
import { resolve } from "node:path";

import * as esbuild from "esbuild";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, expect, test } from "vitest";

import { connect, type ConfabClient } from "../../clients/js/src/index.js";
import { freePort, TestServer, until } from "../../clients/js/test/server.js";
import { launch } from "./browser.js";

let server: TestServer;
let pages: Server;
let pagesUrl: string;
let browser: Browser;
let bundle: string;
const open: ConfabClient[] = [];

beforeAll(async () => {
  // The app's pages, on an origin of their own (as an app beside confab).
  const port = await freePort();
  pagesUrl = `http://127.0.0.1:${port}`;
  pages = createServer((_, response) => {
    response.writeHead(200, { "content-type": "text/html" });
    response.end(`<!doctype html><title>tab</title><script type="module">${bundle}</script>`);
  });
  await new Promise<void>((done) => pages.listen(port, "127.0.0.1", done));
  server = await new TestServer({ env: { CONFAB_CORS_ORIGINS: pagesUrl } }).start();
  browser = await launch();
  // The library, as a page would load it: `window.confab` is the package's entry point.
  const built = await esbuild.build({
    stdin: {
      contents: `import * as confab from "./index.ts"; (window as any).confab = confab;`,
      resolveDir: resolve(import.meta.dirname, "../../clients/js/src"),
      loader: "ts",
    },
    bundle: true,
    format: "esm",
    target: "es2020",
    write: false,
    logLevel: "warning",
  });
  bundle = built.outputFiles[0]?.text ?? "";
});

afterAll(async () => {
  for (const c of open.splice(0)) c.close();
  await browser?.close();
  await server?.dispose();
  await new Promise((done) => pages?.close(done));
});

/** A browser profile: its tabs share localStorage and Web Locks. */
function profile(): Promise<BrowserContext> {
  return browser.newContext();
}

/**
 * A tab with a client for `user` (outbox in localStorage). `online: false` points it at a port
 * where nothing listens: it never connects, as a tab offline.
 */
async function tab(context: BrowserContext, user: string, online: boolean): Promise<Page> {
  const page = await context.newPage();
  await page.goto(pagesUrl);
  await page.waitForFunction(() => "confab" in window);
  const token = await server.token(user);
  await page.evaluate(
    ({ url, token }) => {
      const w = window as unknown as { confab: typeof import("../../clients/js/src/index.js"); client: ConfabClient };
      w.client = w.confab.connect({
        url,
        getToken: () => token,
        outboxStorage: localStorage,
        reconnectionDelayMs: 100,
        reconnectionDelayMaxMs: 300,
        socketOptions: { transports: ["websocket"] },
      });
    },
    { url: online ? server.url : "http://127.0.0.1:9", token },
  );
  return page;
}

/** What the tab's client has in its outbox: bodies, oldest first. */
function pending(page: Page): Promise<string[]> {
  return page.evaluate(() => (window as unknown as { client: ConfabClient }).client.pending().map((e) => e.body));
}

/** Every entry body stored in the profile's localStorage, whichever tab stored it. */
function stored(page: Page): Promise<string[]> {
  return page.evaluate(() =>
    Object.keys(localStorage)
      .filter((k) => k.startsWith("confab.outbox.v1."))
      .flatMap((k) => (JSON.parse(localStorage.getItem(k) ?? "[]") as { body: string }[]).map((e) => e.body)),
  );
}

/** A direct chat of `user` and `peer`, and the peer's client (in Node) to read it. */
async function chat(user: string, peer: string) {
  const other = connect({ url: server.url, getToken: () => server.token(peer), socketOptions: { transports: ["websocket"] } });
  open.push(other);
  await until(() => other.state === "live", `${peer} to be live`);
  const direct = await other.createDirect(user);
  return { other, direct };
}

test("a tab still open keeps its unsent messages: one it discards is never sent by another tab", async () => {
  const { other, direct } = await chat("t-alice", "t-bob");
  const context = await profile();
  try {
    // The first tab is offline; the user writes a message there.
    const first = await tab(context, "t-alice", false);
    await first.evaluate((id) => {
      void (window as unknown as { client: ConfabClient }).client.send(id, "second thoughts").catch(() => {});
    }, direct.id);
    await until(async () => (await stored(first)).length === 1, "the message to be stored");

    // A second tab opens, online. The first is still open: its message stays its own.
    const second = await tab(context, "t-alice", true);
    await until(() => second.evaluate(() => (window as unknown as { client: ConfabClient }).client.state === "live"), "the second tab to be live");
    // Time for an adoption, if one were made, to send it (a live tab sends at once).
    await second.waitForTimeout(500);
    expect(await pending(second)).toEqual([]);
    expect(await pending(first)).toEqual(["second thoughts"]);

    // The user discards it in the tab that shows it.
    await first.evaluate(() => {
      const client = (window as unknown as { client: ConfabClient }).client;
      for (const e of client.pending()) client.discard(e.client_id);
    });
    expect(await stored(first)).toEqual([]);

    // The first tab closes; a third opens. Nobody has it to send.
    await first.close();
    const third = await tab(context, "t-alice", true);
    await until(() => third.evaluate(() => (window as unknown as { client: ConfabClient }).client.state === "live"), "the third tab to be live");
    await third.waitForTimeout(500);
    expect(await pending(third)).toEqual([]);
    expect(await pending(second)).toEqual([]);
    expect((await other.history(direct.id)).messages).toEqual([]);
  } finally {
    await context.close();
  }
});

test("what a tab left unsent when it closed is sent by a tab of the user still open", async () => {
  const { other, direct } = await chat("t-carol", "t-dan");
  const context = await profile();
  try {
    const second = await tab(context, "t-carol", true);
    await until(() => second.evaluate(() => (window as unknown as { client: ConfabClient }).client.state === "live"), "the open tab to be live");

    // Another tab, offline, writes a message, and is closed before it could send it.
    const first = await tab(context, "t-carol", false);
    await first.evaluate((id) => {
      void (window as unknown as { client: ConfabClient }).client.send(id, "left behind").catch(() => {});
    }, direct.id);
    await until(async () => (await stored(first)).length === 1, "the message to be stored");
    await first.close();

    // The tab still open takes it over (it learnt of the key, and gets its lock now) and sends it.
    await until(async () => (await other.history(direct.id)).messages.length === 1, "the message to be sent");
    expect((await other.history(direct.id)).messages.map((m) => m.body)).toEqual(["left behind"]);
    await until(async () => (await stored(second)).length === 0, "nothing left stored");
  } finally {
    await context.close();
  }
});
