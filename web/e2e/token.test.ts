// With a secret configured there is no "sign in as": the app takes a token from the page URL
// (`#token=…`, as a host app would link to it) or from the paste box.

import type { Browser } from "playwright-core";
import { afterAll, beforeAll, expect, test } from "vitest";

import { startServer, type TestServer } from "../../clients/js/test/server.js";
import { launch, screenshotPath } from "./browser.js";

let server: TestServer;
let browser: Browser;

beforeAll(async () => {
  server = await startServer();
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
  await server?.dispose();
});

test("a token in the URL fragment signs in, and leaves the address bar", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const token = await server.token("dana", { name: "Dana" });
  await page.goto(`${server.url}/#token=${token}`);
  await page.locator(".me-name", { hasText: "Dana" }).waitFor();
  expect(new URL(page.url()).hash).toBe("");
  // A reload keeps the session (per tab).
  await page.reload();
  await page.locator(".me-name", { hasText: "Dana" }).waitFor();
  await context.close();
});

test("without dev sign-in the page offers a paste box, and refuses a bad token", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  await page.goto(server.url);
  expect(await page.locator('input[name="sub"]').count()).toBe(0);
  await page.screenshot({ path: screenshotPath("11-paste-token") });
  // A token signed with another secret: refused as invalid, and the app says so.
  const forged = await server.token("eve", { secret: "some-other-secret-0123456789" });
  await page.fill('textarea[name="token"]', forged);
  await page.click('button[type="submit"]');
  await page.locator(".banner.error", { hasText: "session was refused" }).waitFor();
  await page.click("text=Sign in again");
  const good = await server.token("erin", { name: "Erin" });
  await page.fill('textarea[name="token"]', good);
  await page.click('button[type="submit"]');
  await page.locator(".me-name", { hasText: "Erin" }).waitFor();
  // Connected and caught up: the banner goes.
  await page.locator(".banner").waitFor({ state: "detached" });
  await page.locator(".empty-pane").waitFor();
  await context.close();
});
