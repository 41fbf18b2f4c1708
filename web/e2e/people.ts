// People using the web app in their own browsers, found on the page the way they (and assistive
// technology) find things: by role, label and text, not by CSS class.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

import type { Browser, BrowserContext, Locator, Page } from "playwright-core";
import { afterAll, beforeAll, expect } from "vitest";

import { startServer, type ServerOptions, type TestServer } from "../../clients/js/test/server.js";
import { launch, screenshotPath } from "./browser.js";

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/** A test file's server and browser: started before its tests, stopped after them. */
export interface Suite {
  server: TestServer;
  browser: Browser;
  /** A person with their own browser profile, closed with the suite. */
  person(viewport?: { width: number; height: number }): Promise<Person>;
  /** A person signed in with "sign in as" (local mode). */
  signedIn(sub: string, name: string, viewport?: { width: number; height: number }): Promise<Person>;
}

export function suite(options: ServerOptions): Suite {
  const contexts: BrowserContext[] = [];
  const s = {
    person: (viewport = DESKTOP) => person(s.browser, viewport, contexts),
    signedIn: async (sub: string, name: string, viewport = DESKTOP) => {
      const p = await person(s.browser, viewport, contexts);
      await signIn(p, s.server.url, sub, name);
      return p;
    },
  } as Suite;
  beforeAll(async () => {
    s.server = await startServer(options);
    s.browser = await launch();
  });
  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await s.browser?.close();
    await s.server?.dispose();
  });
  return s;
}

export interface Person {
  context: BrowserContext;
  page: Page;
  /** alert()/confirm() calls, as "type: message". */
  dialogs: string[];
  /** Uncaught errors in the page. */
  errors: string[];
}

/** A person with their own browser profile (storage), one tab open on nothing yet. */
export async function person(browser: Browser, viewport = DESKTOP, contexts?: BrowserContext[]): Promise<Person> {
  const context = await browser.newContext({ viewport, locale: "en-GB", timezoneId: "Europe/London" });
  contexts?.push(context);
  const p: Person = { context, page: undefined as unknown as Page, dialogs: [], errors: [] };
  await newTab(p);
  return p;
}

/** A new tab in the person's browser (the same origin storage), replacing `page`. */
export async function newTab(p: Person): Promise<void> {
  const page = await p.context.newPage();
  page.setDefaultTimeout(10_000);
  page.on("dialog", (d) => {
    p.dialogs.push(`${d.type()}: ${d.message()}`);
    void (d.type() === "confirm" ? d.accept() : d.dismiss());
  });
  page.on("pageerror", (e) => p.errors.push(e.message));
  p.page = page;
}

/** Signs in with "sign in as" (local mode), from wherever the page is (or `url`). */
export async function signIn(p: Person, url: string | null, sub: string, name: string): Promise<void> {
  if (url !== null) await p.page.goto(url);
  await p.page.getByLabel("User id").fill(sub);
  await p.page.getByLabel("Display name").fill(name);
  await p.page.getByRole("button", { name: "Sign in" }).click();
  // Signed in: the list (with its New chat button) shows, or, on a phone with a conversation in
  // the address, that conversation does, with the list folded behind its Back button. Which one
  // is seen first depends on whether the list has loaded, so either will do.
  await p.page
    .getByRole("button", { name: "New chat" })
    .or(p.page.getByRole("button", { name: "Back to conversations" }))
    .first()
    .waitFor();
}

/** The list of conversations (a navigation landmark). */
export function conversationList(p: Person): Locator {
  return p.page.getByRole("navigation", { name: "Conversations" });
}

/** A conversation in the list (its row), by its title. */
export function conversationItem(p: Person, title: string): Locator {
  return conversationList(p)
    .getByRole("listitem")
    .filter({ has: p.page.getByRole("link", { name: title, exact: true }) });
}

/** The link that opens a conversation, by its title. */
export function conversationLink(p: Person, title: string): Locator {
  return conversationList(p).getByRole("link", { name: title, exact: true });
}

/** The open conversation (a region named after it). */
export function pane(p: Person, title: string): Locator {
  return p.page.getByRole("region", { name: title, exact: true });
}

/** The open conversation's timeline: a live log. */
export function timeline(p: Person): Locator {
  return p.page.getByRole("log", { name: "Messages" });
}

/** A delivered message (or a timeline line) containing `text`. */
export function message(p: Person, text: string | RegExp): Locator {
  return timeline(p).getByRole("listitem").filter({ hasText: text });
}

/**
 * A message that contains `text` now, found again by its seq later: while it is edited, its
 * text is in a text box, not in the page.
 */
export async function messageBySeq(p: Person, text: string): Promise<Locator> {
  // Delivered: a pending message (on its way) has no seq yet.
  const seq = await timeline(p).locator("li[data-seq]", { hasText: text }).getAttribute("data-seq");
  return timeline(p).locator(`li[data-seq="${seq}"]`);
}

export async function send(p: Person, text: string): Promise<void> {
  await p.page.getByRole("textbox", { name: "Message", exact: true }).fill(text);
  await p.page.keyboard.press("Enter");
}

export async function open(p: Person, title: string): Promise<void> {
  await conversationLink(p, title).click();
  await pane(p, title).waitFor();
}

/** "New chat" → Direct → user id → Create, then whatever `confirm` says about a first contact. */
export async function startDirect(p: Person, userId: string, opts: { expectWarning?: boolean } = {}): Promise<void> {
  await p.page.getByRole("button", { name: "New chat" }).click();
  const dialog = p.page.getByRole("dialog", { name: "New chat" });
  await dialog.getByRole("radio", { name: "Direct" }).check();
  await dialog.getByLabel("User id").fill(userId);
  await dialog.getByRole("button", { name: "Create" }).click();
  if (opts.expectWarning) await dialog.getByRole("button", { name: "Start the chat" }).click();
  await dialog.waitFor({ state: "hidden" });
}

/** "New chat" → Group → title and members → Create (confirming first contacts). */
export async function startGroup(p: Person, title: string, members: string): Promise<void> {
  await p.page.getByRole("button", { name: "New chat" }).click();
  const dialog = p.page.getByRole("dialog", { name: "New chat" });
  await dialog.getByRole("radio", { name: "Group" }).check();
  await dialog.getByLabel("Title").fill(title);
  await dialog.getByLabel(/^Members/).fill(members);
  await dialog.getByRole("button", { name: "Create" }).click();
  const confirm = dialog.getByRole("button", { name: "Start the chat" });
  await Promise.race([confirm.click().catch(() => {}), dialog.waitFor({ state: "hidden" })]);
  await dialog.waitFor({ state: "hidden" });
  await pane(p, title).waitFor();
}

/** A conversation's id, from the address of its link. */
export async function conversationId(p: Person, title: string): Promise<string> {
  const href = await conversationLink(p, title).getAttribute("href");
  const id = new URL(href ?? "", "http://x").searchParams.get("c");
  if (!id) throw new Error(`no conversation id in ${href}`);
  return id;
}

/** A screenshot into the screenshots folder (CONFAB_SCREENSHOTS, else .ci/artifacts). */
export async function shot(p: Person, name: string): Promise<void> {
  await p.page.screenshot({ path: screenshotPath(name) });
}

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

interface AxeResult {
  violations: { id: string; impact: string | null; help: string; nodes: { target: string[]; failureSummary?: string }[] }[];
}

/**
 * Runs axe-core in the page (through the debugging protocol, so the page's CSP, which forbids
 * inline scripts, stays on) and fails on any serious or critical violation.
 */
export async function expectAccessible(p: Person, where: string): Promise<void> {
  const loaded = await p.page.evaluate(() => "axe" in window);
  if (!loaded) await p.page.evaluate(`${axeSource}\n;0`);
  const result = await p.page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(ctx: Document, opts: object): Promise<AxeResult> } }).axe;
    const r = await axe.run(document, { resultTypes: ["violations"] });
    return {
      violations: r.violations.map((v) => ({
        id: v.id,
        impact: v.impact,
        help: v.help,
        nodes: v.nodes.slice(0, 3).map((n) => ({ target: n.target, failureSummary: n.failureSummary })),
      })),
    };
  });
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(bad, `axe (${where}): ${JSON.stringify(bad, null, 1)}`).toEqual([]);
}
