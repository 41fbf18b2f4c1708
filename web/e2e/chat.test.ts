// The web app in a real browser against a real confab (local mode): two people sign in, chat,
// see each other typing and online; one drops offline while the other writes, and finds the
// missed messages in order when back; hostile text stays text; a phone-sized screen works; a
// group's owner adds and removes members and a member leaves; a message written offline is sent
// after its tab was closed, and signing out discards unsent ones.

import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, expect, test } from "vitest";

import { devToken, startServer, until, type TestServer } from "../../clients/js/test/server.js";
import { launch, screenshotPath } from "./browser.js";

let server: TestServer;
let browser: Browser;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  // Local mode (no secret): the app offers "sign in as". A short presence grace makes
  // "went offline" show quickly.
  server = await startServer({ secret: null, env: { CONFAB_PRESENCE_GRACE_MS: "300" } });
  browser = await launch();
});

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close();
  await server?.dispose();
});

interface Person {
  context: BrowserContext;
  page: Page;
  /** alert() calls: any would mean injected script ran. */
  dialogs: string[];
  errors: string[];
}

async function person(viewport = { width: 1100, height: 720 }): Promise<Person> {
  const context = await browser.newContext({ viewport });
  contexts.push(context);
  const p: Person = { context, page: undefined as unknown as Page, dialogs: [], errors: [] };
  await newTab(p);
  return p;
}

/** A new tab in the person's browser (the same origin storage), replacing `page`. */
async function newTab(p: Person): Promise<void> {
  const page = await p.context.newPage();
  page.setDefaultTimeout(10_000);
  page.on("dialog", (d) => {
    p.dialogs.push(`${d.type()}: ${d.message()}`);
    // The app asks before deleting; anything else is a failure (recorded above).
    void (d.type() === "confirm" ? d.accept() : d.dismiss());
  });
  page.on("pageerror", (e) => p.errors.push(e.message));
  p.page = page;
}

async function signIn(p: Person, sub: string, name: string, shot?: string): Promise<void> {
  await p.page.goto(server.url);
  await p.page.fill('input[name="sub"]', sub);
  await p.page.fill('input[name="name"]', name);
  if (shot) await p.page.screenshot({ path: screenshotPath(shot) });
  await p.page.click('button[type="submit"]');
  await p.page.locator(".me-name", { hasText: name }).waitFor();
}

function conversationButton(p: Person, title: string) {
  return p.page.locator("button.conversation", { has: p.page.locator(".conversation-title", { hasText: title }) });
}

async function send(p: Person, text: string): Promise<void> {
  await p.page.fill('textarea[name="message"]', text);
  await p.page.keyboard.press("Enter");
}

/** Creates a group from the "New chat" dialog and waits for it to open. */
async function createGroup(p: Person, title: string, members: string): Promise<void> {
  await p.page.click("text=New chat");
  await p.page.click('.tabs button:has-text("Group")');
  await p.page.fill('input[name="title"]', title);
  await p.page.fill('input[name="members"]', members);
  await p.page.click('.dialog button[type="submit"]');
  await p.page.locator(".pane-title h2", { hasText: title }).waitFor();
}

/** The bodies of delivered messages, in page order. */
async function bodies(p: Person): Promise<string[]> {
  return p.page.locator("li.message:not(.pending) .body").allTextContents();
}

let alice: Person;
let bob: Person;

test("two people sign in and chat, with typing, presence and receipts", async () => {
  alice = await person();
  bob = await person();
  await signIn(alice, "alice", "Alice", "01-sign-in");
  await signIn(bob, "bob", "Bob");

  // Alice starts a direct chat with Bob.
  await alice.page.click("text=New chat");
  await alice.page.fill('input[name="user"]', "bob");
  await alice.page.screenshot({ path: screenshotPath("02-new-chat") });
  await alice.page.click('.dialog button[type="submit"]');
  await alice.page.locator(".pane-title h2", { hasText: "Bob" }).waitFor();
  await send(alice, "Hello Bob!");
  await alice.page.locator("li.message.mine:not(.pending) .body", { hasText: "Hello Bob!" }).waitFor();

  // Bob sees it in his list, unread, with a preview; opening it shows it and clears the badge.
  const item = conversationButton(bob, "Alice");
  await item.locator(".badge", { hasText: "1" }).waitFor();
  expect(await item.locator(".conversation-preview").textContent()).toBe("Hello Bob!");
  // Both are online, and each sees the other's dot.
  await item.locator(".dot.online").waitFor();
  await bob.page.screenshot({ path: screenshotPath("03-list-unread") });
  await item.click();
  await bob.page.locator("li.message .body", { hasText: "Hello Bob!" }).waitFor();
  await until(async () => (await item.locator(".badge").count()) === 0, "the badge to clear");
  // Alice sees that Bob read it.
  await alice.page.locator(".seen", { hasText: "Seen" }).waitFor();
  await alice.page.locator(".presence-line", { hasText: "online" }).waitFor();

  // Bob types: Alice sees it; he sends: it stops.
  await bob.page.locator('textarea[name="message"]').pressSequentially("Hi Ali", { delay: 20 });
  await alice.page.locator(".typing", { hasText: "Bob is typing…" }).waitFor();
  await alice.page.screenshot({ path: screenshotPath("04-typing") });
  await bob.page.locator('textarea[name="message"]').pressSequentially("ce, how are you?");
  await bob.page.keyboard.press("Enter");
  await alice.page.locator("li.message .body", { hasText: "Hi Alice, how are you?" }).waitFor();
  await until(async () => (await alice.page.locator(".typing").textContent()) === "", "the typing line to clear");
  expect(await bodies(alice)).toEqual(["Hello Bob!", "Hi Alice, how are you?"]);
  await alice.page.screenshot({ path: screenshotPath("05-conversation") });
});

test("messages sent while one is offline appear, in order, when back", async () => {
  await bob.context.setOffline(true);
  await bob.page.locator(".banner", { hasText: "Reconnecting" }).waitFor();
  // Alice sees him go (after the presence grace).
  await alice.page.locator(".presence-line", { hasText: "last seen" }).waitFor();

  for (const text of ["while you were out 1", "while you were out 2", "while you were out 3"]) {
    await send(alice, text);
    await alice.page.locator("li.message:not(.pending) .body", { hasText: text }).waitFor();
  }
  // Bob writes too while offline: shown at once, pending, sent when back.
  await send(bob, "written offline");
  await bob.page.locator("li.message.pending .body", { hasText: "written offline" }).waitFor();
  await bob.page.screenshot({ path: screenshotPath("06-offline-pending") });

  await bob.context.setOffline(false);
  await until(async () => (await bob.page.locator(".banner").count()) === 0, "bob's banner to go", 20_000);
  await bob.page.locator("li.message:not(.pending) .body", { hasText: "written offline" }).waitFor();
  const atBob = await bodies(bob);
  expect(atBob.slice(0, 5)).toEqual([
    "Hello Bob!",
    "Hi Alice, how are you?",
    "while you were out 1",
    "while you were out 2",
    "while you were out 3",
  ]);
  expect(atBob).toHaveLength(6);
  expect(new Set(atBob).size).toBe(6);
  await alice.page.locator("li.message .body", { hasText: "written offline" }).waitFor();
  await alice.page.locator(".presence-line", { hasText: "online" }).waitFor();
  expect(await bodies(alice)).toEqual(atBob);
  await bob.page.screenshot({ path: screenshotPath("07-back-online") });
});

test("hostile text renders as text, and edits and deletes reach the other side", async () => {
  const hostile = "<img src=x onerror=alert(1)> <script>alert(2)</script> <b>bold?</b>";
  await send(alice, hostile);
  const atBob = bob.page.locator("li.message .body", { hasText: "<img src=x onerror=alert(1)>" });
  await atBob.waitFor();
  expect(await atBob.textContent()).toBe(hostile);
  expect(await bob.page.locator(".messages img, .messages script, .messages b").count()).toBe(0);
  expect(bob.dialogs).toEqual([]);
  expect(alice.dialogs).toEqual([]);

  // Alice edits, then deletes, her message.
  const seq = await alice.page.locator("li.message.mine", { hasText: "Hello Bob!" }).getAttribute("data-seq");
  const mine = alice.page.locator(`li.message[data-seq="${seq}"]`);
  await mine.hover();
  await mine.locator("button", { hasText: "Edit" }).click();
  await mine.locator("textarea").fill("Hello Bob! (edited)");
  await mine.locator("button", { hasText: "Save" }).click();
  await bob.page.locator("li.message", { hasText: "Hello Bob! (edited)" }).locator(".edited").waitFor();
  await mine.locator(".edited").waitFor();
  await mine.hover();
  await mine.locator("button", { hasText: "Delete" }).click();
  await bob.page.locator("li.message.deleted").first().waitFor();
  expect(await bob.page.locator("li.message.deleted .body").first().textContent()).toBe("This message was deleted.");
  expect(alice.dialogs).toEqual(["confirm: Delete this message for everyone?"]);
  expect([...alice.errors, ...bob.errors]).toEqual([]);
});

test("a group, older history on scroll-up, and a phone-sized screen", async () => {
  // A group with a long history, written through the API.
  await createGroup(alice, "Launch plans", "bob, carol");
  const id = await conversationButton(alice, "Launch plans").getAttribute("data-conversation");
  const token = await devToken(server, "carol", "Carol");
  for (let i = 1; i <= 70; i++) {
    const r = await fetch(`${server.url}/api/conversations/${id}/messages`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ client_id: `seed-${i}`, body: `history ${i}` }),
    });
    expect(r.status).toBe(201);
  }
  const long = `A long message that must wrap on a small screen: ${"word ".repeat(60)}and-an-unbroken-${"x".repeat(120)}`;
  await send(alice, long);

  // Bob, on a phone.
  const phone = await person({ width: 390, height: 780 });
  await signIn(phone, "bob", "Bob");
  const badge = conversationButton(phone, "Launch plans").locator(".badge");
  await badge.waitFor();
  // The list fits the screen: badge and buttons in view, long previews cut, not widening it.
  const noOverflow = async () => {
    const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(0);
  };
  await noOverflow();
  for (const box of [await badge.boundingBox(), await phone.page.locator("text=Sign out").boundingBox()]) {
    expect(box && box.x + box.width).toBeLessThanOrEqual(390);
  }
  await phone.page.screenshot({ path: screenshotPath("08-phone-list") });
  await conversationButton(phone, "Launch plans").click();
  await phone.page.locator("li.message .body", { hasText: "A long message" }).waitFor();
  await phone.page.locator(".sender", { hasText: "Carol" }).first().waitFor();
  // Nothing sticks out sideways.
  await noOverflow();
  const bubble = await phone.page.locator("li.message", { hasText: "A long message" }).locator(".bubble").boundingBox();
  expect(bubble && bubble.x + bubble.width).toBeLessThanOrEqual(390);
  await phone.page.screenshot({ path: screenshotPath("09-phone-conversation") });

  // The first page holds the newest 50; scrolling up brings the rest, oldest first.
  expect(await phone.page.locator("li.message .body", { hasText: /^history 1$/ }).count()).toBe(0);
  await until(
    async () => {
      await phone.page.locator(".messages").evaluate((el) => el.scrollTo(0, 0));
      return (await phone.page.locator("li.message .body", { hasText: /^history 1$/ }).count()) === 1;
    },
    "the oldest message after scrolling up",
    15_000,
  );
  const all = await bodies(phone);
  expect(all.slice(0, 70)).toEqual(Array.from({ length: 70 }, (_, i) => `history ${i + 1}`));
  await phone.page.locator(".older", { hasText: "beginning" }).waitFor();
  await phone.page.locator(".messages").evaluate((el) => el.scrollTo(0, 0));
  await phone.page.screenshot({ path: screenshotPath("10-phone-history-top") });
  // Back to the list.
  await phone.page.click("button.back");
  await phone.page.locator(".conversations").waitFor();
  expect(phone.errors).toEqual([]);
});

test("a group's members dialog adds and removes people, and lets a member leave", async () => {
  await createGroup(alice, "Book club", "bob");
  await conversationButton(bob, "Book club").waitFor();

  // Alice, the owner, adds Dave.
  await alice.page.click("button.members-button");
  const dialog = alice.page.locator('.dialog[aria-label="Members"]');
  await dialog.locator("h2", { hasText: "Members (2)" }).waitFor();
  expect(await dialog.locator(".member .role").allTextContents()).toEqual(["owner"]);
  await dialog.locator('input[name="add"]').fill("dave");
  await dialog.locator('button[type="submit"]').click();
  await dialog.locator("h2", { hasText: "Members (3)" }).waitFor();
  await alice.page.screenshot({ path: screenshotPath("11-members") });
  // A refusal is shown and changes nothing (user ids are at most 128 characters).
  await dialog.locator('input[name="add"]').fill("x".repeat(200));
  await dialog.locator('button[type="submit"]').click();
  await dialog.locator(".error").waitFor();
  expect(await dialog.locator(".member").count()).toBe(3);
  const dave = await person();
  await signIn(dave, "dave", "Dave");
  await conversationButton(dave, "Book club").waitFor();

  // She removes Bob: the group leaves his list.
  await dialog.locator('.member[data-user="bob"] button', { hasText: "Remove" }).click();
  await dialog.locator("h2", { hasText: "Members (2)" }).waitFor();
  await until(async () => (await conversationButton(bob, "Book club").count()) === 0, "the group to leave Bob's list");

  // Dave, a plain member, can't remove or add anyone, but can leave.
  await conversationButton(dave, "Book club").click();
  await dave.page.click("button.members-button");
  const his = dave.page.locator('.dialog[aria-label="Members"]');
  await his.locator("h2", { hasText: "Members (2)" }).waitFor();
  expect(await his.locator("button", { hasText: "Remove" }).count()).toBe(0);
  expect(await his.locator('input[name="add"]').count()).toBe(0);
  await his.locator("button", { hasText: "Leave group" }).click();
  await until(async () => (await conversationButton(dave, "Book club").count()) === 0, "the group to leave Dave's list");
  expect(dave.dialogs).toEqual(["confirm: Leave this group? You will stop receiving its messages."]);
  await dialog.locator("h2", { hasText: "Members (1)" }).waitFor();
  expect([...alice.errors, ...bob.errors, ...dave.errors]).toEqual([]);
});

/** Bodies in this tab's `localStorage` outbox keys. */
async function storedOutbox(p: Person): Promise<string[]> {
  return p.page.evaluate(() =>
    Object.keys(localStorage)
      .filter((k) => k.startsWith("confab.outbox."))
      .flatMap((k) => (JSON.parse(localStorage.getItem(k) ?? "[]") as { body: string }[]).map((e) => e.body)),
  );
}

test("a message written offline is sent after its tab was closed, and signing out discards unsent ones", async () => {
  await alice.page.locator('.dialog[aria-label="Members"] button', { hasText: "Close" }).click();
  await conversationButton(alice, "Bob").click();
  await conversationButton(bob, "Alice").click();
  await bob.context.setOffline(true);
  await bob.page.locator(".banner", { hasText: "Reconnecting" }).waitFor();
  await send(bob, "written, then the tab closed");
  await bob.page.locator("li.message.pending .body", { hasText: "written, then the tab closed" }).waitFor();
  expect(await storedOutbox(bob)).toEqual(["written, then the tab closed"]);
  await bob.page.close();

  // Back online, in a new tab (its own session, so he signs in again): the message goes out.
  await bob.context.setOffline(false);
  await newTab(bob);
  await signIn(bob, "bob", "Bob");
  await alice.page.locator("li.message .body", { hasText: "written, then the tab closed" }).waitFor();
  await until(async () => (await storedOutbox(bob)).length === 0, "the stored copy to go once sent");
  const atAlice = await bodies(alice);
  expect(atAlice.filter((b) => b === "written, then the tab closed")).toHaveLength(1);

  // Signing out with a message unsent asks, then discards it: the next user of this browser
  // doesn't inherit it, and it is never sent.
  await conversationButton(bob, "Alice").click();
  await bob.context.setOffline(true);
  await bob.page.locator(".banner", { hasText: "Reconnecting" }).waitFor();
  await send(bob, "never sent");
  await bob.page.locator("li.message.pending .body", { hasText: "never sent" }).waitFor();
  await bob.page.click('button[title="Sign out"]');
  await bob.page.locator('input[name="sub"]').waitFor();
  expect(bob.dialogs.at(-1)).toBe("confirm: 1 unsent message(s) will be discarded. Sign out?");
  expect(await storedOutbox(bob)).toEqual([]);
  await bob.context.setOffline(false);
  await signIn(bob, "bob", "Bob");
  await conversationButton(bob, "Alice").click();
  await bob.page.locator("li.message .body", { hasText: "written, then the tab closed" }).waitFor();
  expect(await bob.page.locator("li.message .body", { hasText: "never sent" }).count()).toBe(0);
  expect(await bodies(alice)).toEqual(atAlice);
  expect([...alice.errors, ...bob.errors]).toEqual([]);
});
