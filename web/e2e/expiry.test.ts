// The web app in token mode with a token that can't be renewed (the host app linked to
// `/#token=…` and is not asked again): the page runs the session it has, then says once that it
// ended. No reconnection storm, no banner flipping between "Connection lost" and "Back online".
//
// Compressed: the server warns 2 s before the end and the token lives 3 s, the shape of a token
// with 65 s left against the default 60 s warning. Two minutes of the page's time then pass in a
// few seconds on Playwright's clock (the page's timers and Date), a second at a time with real
// network in between; the Engine.IO handshakes the page opens are counted as the server sees them.

import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, expect, test } from "vitest";

import { sleep, startServer, until, type TestServer } from "../../clients/js/test/server.js";
import { launch, screenshotPath } from "./browser.js";

let server: TestServer;
let browser: Browser;

beforeAll(async () => {
  server = await startServer({ env: { CONFAB_SESSION_WARNING_SECS: "2" } });
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
  await server?.dispose();
});

/** Records every banner text the page shows, in order (consecutive repeats once). */
async function recordBanners(page: Page): Promise<void> {
  await page.addInitScript(() => {
    const seen: string[] = [];
    (window as unknown as { banners: string[] }).banners = seen;
    const look = () => {
      const text = document.querySelector("[data-state]")?.textContent?.trim() ?? "";
      if (seen[seen.length - 1] !== text) seen.push(text);
    };
    new MutationObserver(look).observe(document, { subtree: true, childList: true, characterData: true });
  });
}

/** Counts connection attempts: Engine.IO handshakes (a request or WebSocket without a `sid`). */
function countHandshakes(page: Page): { count: number } {
  const counter = { count: 0 };
  const isHandshake = (url: string) => url.includes("/socket.io/") && !new URL(url).searchParams.has("sid");
  page.on("request", (r) => {
    if (isHandshake(r.url())) counter.count++;
  });
  page.on("websocket", (ws) => {
    if (isHandshake(ws.url())) counter.count++;
  });
  return counter;
}

test("a token that can't be renewed: one session, `session ended` shown once, at most a handful of attempts in 2 minutes", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await recordBanners(page);
  const handshakes = countHandshakes(page);
  // The page's clock runs in step with real time until we move it on.
  await page.clock.install();

  const token = await server.token("fern", { name: "Fern", ttlSecs: 3 });
  await page.goto(`${server.url}/#token=${token}`);
  await page.getByRole("complementary").getByText("Fern", { exact: true }).waitFor();
  // The session runs out (3 s of real time: the server's clock is real).
  await sleep(3_500);
  for (let t = 0; t < 120_000; t += 1_000) {
    await page.clock.runFor(1_000);
    await sleep(15);
  }
  const banners = await page.evaluate(() => (window as unknown as { banners: string[] }).banners);
  await page.screenshot({ path: screenshotPath("12-session-ended") });
  expect(handshakes.count, `connection attempts in 2 minutes; banners: ${banners.join(" | ")}`).toBeLessThanOrEqual(3);
  const ended = banners.filter((b) => b.includes("session has ended"));
  expect(ended, banners.join(" | ")).toHaveLength(1);
  expect(banners[banners.length - 1]).toContain("session has ended");
  expect(banners.filter((b) => b.includes("Back online")), banners.join(" | ")).toEqual([]);
  expect(errors).toEqual([]);
  // Signing in again from the banner works.
  await page.getByRole("button", { name: "Sign in again" }).click();
  await until(async () => (await page.getByLabel("Token").count()) === 1, "the sign-in page");
  await context.close();
});
