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
  const me = page.getByRole("complementary").getByText("Dana", { exact: true });
  await me.waitFor();
  expect(new URL(page.url()).hash).toBe("");
  // A reload keeps the session (per tab).
  await page.reload();
  await me.waitFor();
  await context.close();
});

test("without dev sign-in the page offers a paste box, and refuses a bad token", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  await page.goto(server.url);
  expect(await page.getByLabel("User id").count()).toBe(0);
  await page.screenshot({ path: screenshotPath("11-paste-token") });
  // A token signed with another secret: refused on the form, which says so (signin.test.ts
  // tries more kinds of bad token).
  const forged = await server.token("eve", { secret: "some-other-secret-0123456789" });
  await page.getByLabel("Token").fill(forged);
  await page.getByRole("button", { name: "Connect" }).click();
  await page.getByRole("alert").filter({ hasText: "wasn't accepted" }).waitFor();
  const good = await server.token("erin", { name: "Erin" });
  await page.getByLabel("Token").fill(good);
  await page.getByRole("button", { name: "Connect" }).click();
  await page.getByRole("complementary").getByText("Erin", { exact: true }).waitFor();
  // Connected and caught up: the banner goes.
  await page.getByText(/Connecting|Catching up/).waitFor({ state: "detached" });
  await page.getByText("Pick a conversation, or start a new one.").waitFor();
  await context.close();
});
