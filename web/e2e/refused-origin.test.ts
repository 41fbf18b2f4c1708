// A page on an origin confab doesn't allow (not in CONFAB_CORS_ORIGINS): socket.io alone says
// only "xhr poll error". @confab/client passes the server's reason on as `refused`, naming the
// setting, and the server logs the refused origin at info.

import { createServer, type Server } from "node:http";
import { resolve } from "node:path";

import * as esbuild from "esbuild";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, expect, test } from "vitest";

import { freePort, TestServer, until } from "../../clients/js/test/server.js";
import { launch } from "./browser.js";

let server: TestServer;
let pages: Server;
let pagesUrl: string;
let browser: Browser;
let bundle: string;

beforeAll(async () => {
  const port = await freePort();
  pagesUrl = `http://127.0.0.1:${port}`;
  pages = createServer((_, response) => {
    response.writeHead(200, { "content-type": "text/html" });
    response.end(`<!doctype html><title>app</title><script type="module">${bundle}</script>`);
  });
  await new Promise<void>((done) => pages.listen(port, "127.0.0.1", done));
  // confab allows another origin, not this page's.
  server = await new TestServer({ env: { CONFAB_CORS_ORIGINS: "http://app.example", CONFAB_LOG: "info" } }).start();
  browser = await launch();
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
  await browser?.close();
  await server?.dispose();
  await new Promise((done) => pages?.close(done));
});

test("a refused origin is named, with the setting to change, in the page and in the server's log", async () => {
  const page = await browser.newPage();
  await page.goto(pagesUrl);
  await page.waitForFunction(() => "confab" in window);
  const token = await server.token("alice");
  const refusals = await page.evaluate(
    async ({ url, token }) => {
      const w = window as unknown as { confab: typeof import("../../clients/js/src/index.js") };
      const client = w.confab.connect({ url, getToken: () => token, reconnectionDelayMs: 100 });
      const seen: { code: string; message: string }[] = [];
      client.on("refused", (e) => seen.push({ code: e.code, message: e.message }));
      await new Promise((done) => setTimeout(done, 1500));
      client.close();
      return seen;
    },
    { url: server.url, token },
  );
  // Once, however often the client retried.
  expect(refusals).toHaveLength(1);
  expect(refusals[0]?.code).toBe("forbidden");
  expect(refusals[0]?.message).toContain("CONFAB_CORS_ORIGINS");
  await until(() => server.logs().includes(pagesUrl), "the refusal in the server log", 2000);
  expect(server.logs()).toMatch(/refused a browser request from an origin not in CONFAB_CORS_ORIGINS.*origin=http:\/\/127\.0\.0\.1/);
  await page.close();
});
