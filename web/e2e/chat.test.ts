// The web app in a real browser against a real confab (local mode): two people sign in, chat,
// see each other typing and online; one drops offline while the other writes, and finds the
// missed messages in order when back; hostile text stays text; a phone-sized screen works; a
// group's owner adds and removes members and a member leaves; a message written offline is sent
// after its tab was closed, and signing out discards unsent ones.

import { expect, test } from "vitest";

import { devToken, until } from "../../clients/js/test/server.js";
import { screenshotPath } from "./browser.js";
import {
  suite,
  conversationItem,
  conversationList,
  message,
  messageBySeq,
  newTab,
  open,
  pane,
  send,
  signIn as signInAt,
  startDirect,
  startGroup,
  timeline,
  type Person,
} from "./people.js";

// Local mode (no secret): the app offers "sign in as". A short presence grace makes
// "went offline" show quickly.
const s = suite({ secret: null, env: { CONFAB_PRESENCE_GRACE_MS: "300" } });

async function person(viewport = { width: 1100, height: 720 }): Promise<Person> {
  return s.person(viewport);
}

async function signIn(p: Person, sub: string, name: string, shot?: string): Promise<void> {
  await p.page.goto(s.server.url);
  if (shot) {
    await p.page.getByLabel("User id").fill(sub);
    await p.page.getByLabel("Display name").fill(name);
    await p.page.screenshot({ path: screenshotPath(shot) });
  }
  await signInAt(p, null, sub, name);
  await p.page.getByRole("complementary").getByText(name, { exact: true }).waitFor();
}

/** A pending (not yet stored) message of one's own. */
function pendingMessage(p: Person, text: string) {
  return timeline(p).getByRole("listitem").filter({ hasText: text }).filter({ hasText: /Waiting for the connection|Sending/ });
}

/** The bodies of delivered messages, in page order. */
async function bodies(p: Person): Promise<string[]> {
  return timeline(p).locator("li[data-seq] p").allTextContents();
}

let alice: Person;
let bob: Person;

test("two people sign in and chat, with typing, presence and receipts", async () => {
  alice = await person();
  bob = await person();
  await signIn(alice, "alice", "Alice", "01-sign-in");
  await signIn(bob, "bob", "Bob");

  // Alice starts a direct chat with Bob (they share no conversation yet: the app asks first).
  await alice.page.getByRole("button", { name: "New chat" }).click();
  await alice.page.getByRole("dialog", { name: "New chat" }).getByLabel("User id").fill("bob");
  await alice.page.screenshot({ path: screenshotPath("02-new-chat") });
  await alice.page.keyboard.press("Escape");
  await startDirect(alice, "bob", { expectWarning: true });
  await pane(alice, "Bob").waitFor();
  await send(alice, "Hello Bob!");
  await timeline(alice).locator("li[data-seq]", { hasText: "Hello Bob!" }).waitFor();

  // Bob sees it in his list, unread, with a preview; opening it shows it and clears the badge.
  const item = conversationItem(bob, "Alice");
  await item.getByText("1 unread message", { exact: true }).waitFor();
  await item.getByText("Hello Bob!", { exact: true }).waitFor();
  // Both are online, and each sees the other's presence.
  await item.getByRole("img", { name: "online" }).waitFor();
  await bob.page.screenshot({ path: screenshotPath("03-list-unread") });
  await open(bob, "Alice");
  await message(bob, "Hello Bob!").waitFor();
  await until(async () => (await item.getByText(/unread message/).count()) === 0, "the badge to clear");
  // Alice sees that Bob read it.
  await timeline(alice).getByText("Seen", { exact: true }).waitFor();
  await pane(alice, "Bob").getByText("online", { exact: true }).waitFor();

  // Bob types: Alice sees it; he sends: it stops.
  const composer = bob.page.getByRole("textbox", { name: "Message", exact: true });
  await composer.pressSequentially("Hi Ali", { delay: 20 });
  await alice.page.getByText("Bob is typing…").waitFor();
  await alice.page.screenshot({ path: screenshotPath("04-typing") });
  await composer.pressSequentially("ce, how are you?");
  await bob.page.keyboard.press("Enter");
  await message(alice, "Hi Alice, how are you?").waitFor();
  await until(async () => (await alice.page.getByText(/is typing…/).count()) === 0, "the typing line to clear");
  expect(await bodies(alice)).toEqual(["Hello Bob!", "Hi Alice, how are you?"]);
  await alice.page.screenshot({ path: screenshotPath("05-conversation") });
});

test("messages sent while one is offline appear, in order, when back", async () => {
  await bob.context.setOffline(true);
  await bob.page.getByRole("status").filter({ hasText: "Reconnecting" }).waitFor();
  // Alice sees him go (after the presence grace).
  await pane(alice, "Bob").getByText(/^last seen/).waitFor();

  for (const text of ["while you were out 1", "while you were out 2", "while you were out 3"]) {
    await send(alice, text);
    await timeline(alice).locator("li[data-seq]", { hasText: text }).waitFor();
  }
  // Bob writes too while offline: shown at once, pending, sent when back.
  await send(bob, "written offline");
  await pendingMessage(bob, "written offline").waitFor();
  await bob.page.screenshot({ path: screenshotPath("06-offline-pending") });

  await bob.context.setOffline(false);
  await until(async () => (await bob.page.getByRole("status").filter({ hasText: /Reconnecting|Catching up/ }).count()) === 0, "bob's banner to go", 20_000);
  await timeline(bob).locator("li[data-seq]", { hasText: "written offline" }).waitFor();
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
  await message(alice, "written offline").waitFor();
  await pane(alice, "Bob").getByText("online", { exact: true }).waitFor();
  expect(await bodies(alice)).toEqual(atBob);
  await bob.page.screenshot({ path: screenshotPath("07-back-online") });
});

test("hostile text renders as text, and edits and deletes reach the other side", async () => {
  const hostile = "<img src=x onerror=alert(1)> <script>alert(2)</script> <b>bold?</b>";
  await send(alice, hostile);
  const atBob = timeline(bob).getByText("<img src=x onerror=alert(1)>");
  await atBob.waitFor();
  expect(await atBob.textContent()).toBe(hostile);
  expect(await timeline(bob).locator("img, script, b").count()).toBe(0);
  expect(bob.dialogs).toEqual([]);
  expect(alice.dialogs).toEqual([]);

  // Alice edits, then deletes, her message.
  const mine = await messageBySeq(alice, "Hello Bob!");
  await mine.hover();
  await mine.getByRole("button", { name: "Edit" }).click();
  await mine.getByRole("textbox", { name: "Edit message" }).fill("Hello Bob! (edited)");
  await mine.getByRole("button", { name: "Save" }).click();
  await message(bob, "Hello Bob! (edited)").getByText("edited ·").waitFor();
  await mine.getByText("edited ·").waitFor();
  await mine.hover();
  await mine.getByRole("button", { name: "Delete" }).click();
  await message(bob, "This message was deleted.").first().waitFor();
  expect(alice.dialogs).toEqual(["confirm: Delete this message for everyone?"]);
  expect([...alice.errors, ...bob.errors]).toEqual([]);
});

test("a group, older history on scroll-up, and a phone-sized screen", async () => {
  // A group with a long history, written through the API.
  await startGroup(alice, "Launch plans", "bob, carol");
  const id = await conversationItem(alice, "Launch plans").getAttribute("data-conversation");
  const token = await devToken(s.server, "carol", "Carol");
  for (let i = 1; i <= 70; i++) {
    const r = await fetch(`${s.server.url}/api/conversations/${id}/messages`, {
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
  const badge = conversationItem(phone, "Launch plans").getByText(/unread message/);
  await badge.waitFor();
  // The list fits the screen: badge and buttons in view, long previews cut, not widening it.
  const noOverflow = async () => {
    const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(0);
  };
  await noOverflow();
  for (const box of [await badge.boundingBox(), await phone.page.getByRole("button", { name: "Sign out" }).boundingBox()]) {
    expect(box && box.x + box.width).toBeLessThanOrEqual(390);
  }
  await phone.page.screenshot({ path: screenshotPath("08-phone-list") });
  await open(phone, "Launch plans");
  await message(phone, "A long message").waitFor();
  await timeline(phone).getByText("Carol", { exact: true }).first().waitFor();
  // Nothing sticks out sideways.
  await noOverflow();
  const bubble = await message(phone, "A long message").getByText("A long message").boundingBox();
  expect(bubble && bubble.x + bubble.width).toBeLessThanOrEqual(390);
  await phone.page.screenshot({ path: screenshotPath("09-phone-conversation") });

  // The first page holds the newest 50; scrolling up brings the rest, oldest first.
  const first = timeline(phone).getByText(/^history 1$/);
  expect(await first.count()).toBe(0);
  await until(
    async () => {
      await timeline(phone).evaluate((el) => el.scrollTo(0, 0));
      return (await first.count()) === 1;
    },
    "the oldest message after scrolling up",
    15_000,
  );
  const all = await bodies(phone);
  expect(all.slice(0, 70)).toEqual(Array.from({ length: 70 }, (_, i) => `history ${i + 1}`));
  await timeline(phone).getByText("This is the beginning of the conversation.").waitFor();
  await timeline(phone).evaluate((el) => el.scrollTo(0, 0));
  await phone.page.screenshot({ path: screenshotPath("10-phone-history-top") });
  // Back to the list.
  await phone.page.getByRole("button", { name: "Back to conversations" }).click();
  await conversationList(phone).waitFor();
  expect(phone.errors).toEqual([]);
});

test("a large group shows its count and pages its members on demand", async () => {
  // 150 members: the conversation carries the first 100, the dialog loads the rest when asked.
  const ids = Array.from({ length: 149 }, (_, i) => `big-${String(i).padStart(3, "0")}`);
  await startGroup(alice, "Big club", ids.join(", "));
  await pane(alice, "Big club").getByText("150 members").waitFor();
  await alice.page.getByRole("button", { name: "Members" }).click();
  const dialog = alice.page.getByRole("dialog", { name: "Members" });
  await dialog.getByRole("heading", { name: "150 members" }).waitFor();
  expect(await dialog.getByRole("listitem").count()).toBe(100);
  const more = dialog.getByRole("button", { name: /^Show more \(50 more\)/ });
  await more.click();
  await until(async () => (await dialog.getByRole("listitem").count()) === 150, "the second page");
  expect(await more.count()).toBe(0);
  // Each member once, the last to join last.
  const users = await dialog.locator("li[data-user]").evaluateAll((items) => items.map((li) => li.getAttribute("data-user")));
  expect(new Set(users).size).toBe(150);
  expect(users.at(-1)).toBe("big-148");
  await dialog.getByRole("button", { name: "Close" }).click();
  expect(alice.errors).toEqual([]);
});

test("a group's members dialog adds and removes people, and lets a member leave", async () => {
  await startGroup(alice, "Book club", "bob");
  await conversationItem(bob, "Book club").waitFor();

  // Alice, the owner, adds Dave.
  await alice.page.getByRole("button", { name: "Members" }).click();
  const dialog = alice.page.getByRole("dialog", { name: "Members" });
  await dialog.getByRole("heading", { name: "2 members" }).waitFor();
  expect(await dialog.getByText(/^(owner|admin|member)$/).allTextContents()).toEqual(["owner"]);
  await dialog.getByLabel(/^Add people/).fill("dave");
  await dialog.getByRole("button", { name: "Add", exact: true }).click();
  await dialog.getByRole("heading", { name: "3 members" }).waitFor();
  await alice.page.screenshot({ path: screenshotPath("11-members") });
  // A refusal is shown and changes nothing (user ids are at most 128 characters).
  await dialog.getByLabel(/^Add people/).fill("x".repeat(200));
  await dialog.getByRole("button", { name: "Add", exact: true }).click();
  await dialog.getByRole("alert").waitFor();
  expect(await dialog.getByRole("listitem").count()).toBe(3);
  const dave = await person();
  await signIn(dave, "dave", "Dave");
  await conversationItem(dave, "Book club").waitFor();

  // She removes Bob: the group leaves his list.
  await dialog.getByRole("button", { name: "Remove Bob" }).click();
  await dialog.getByRole("heading", { name: "2 members" }).waitFor();
  await until(async () => (await conversationItem(bob, "Book club").count()) === 0, "the group to leave Bob's list");

  // Dave, a plain member, can't remove or add anyone, but can leave.
  await open(dave, "Book club");
  await dave.page.getByRole("button", { name: "Members" }).click();
  const his = dave.page.getByRole("dialog", { name: "Members" });
  await his.getByRole("heading", { name: "2 members" }).waitFor();
  expect(await his.getByRole("button", { name: /^Remove/ }).count()).toBe(0);
  expect(await his.getByLabel(/^Add people/).count()).toBe(0);
  await his.getByRole("button", { name: "Leave group" }).click();
  await until(async () => (await conversationItem(dave, "Book club").count()) === 0, "the group to leave Dave's list");
  expect(dave.dialogs).toEqual(["confirm: Leave this group? You will stop receiving its messages."]);
  await dialog.getByRole("heading", { name: "1 member" }).waitFor();
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
  await alice.page.getByRole("dialog", { name: "Members" }).getByRole("button", { name: "Close" }).click();
  await open(alice, "Bob");
  await open(bob, "Alice");
  await bob.context.setOffline(true);
  await bob.page.getByRole("status").filter({ hasText: "Reconnecting" }).waitFor();
  await send(bob, "written, then the tab closed");
  await pendingMessage(bob, "written, then the tab closed").waitFor();
  expect(await storedOutbox(bob)).toEqual(["written, then the tab closed"]);
  await bob.page.close();

  // Back online, in a new tab (its own session, so he signs in again): the message goes out.
  await bob.context.setOffline(false);
  await newTab(bob);
  await signIn(bob, "bob", "Bob");
  await message(alice, "written, then the tab closed").waitFor();
  await until(async () => (await storedOutbox(bob)).length === 0, "the stored copy to go once sent");
  const atAlice = await bodies(alice);
  expect(atAlice.filter((b) => b === "written, then the tab closed")).toHaveLength(1);

  // Signing out with a message unsent asks, then discards it: the next user of this browser
  // doesn't inherit it, and it is never sent.
  await open(bob, "Alice");
  await bob.context.setOffline(true);
  await bob.page.getByRole("status").filter({ hasText: "Reconnecting" }).waitFor();
  await send(bob, "never sent");
  await pendingMessage(bob, "never sent").waitFor();
  await bob.page.getByRole("button", { name: "Sign out" }).click();
  await bob.page.getByLabel("User id").waitFor();
  expect(bob.dialogs.at(-1)).toBe("confirm: 1 unsent message will be discarded. Sign out?");
  expect(await storedOutbox(bob)).toEqual([]);
  await bob.context.setOffline(false);
  await signIn(bob, "bob", "Bob");
  await open(bob, "Alice");
  await message(bob, "written, then the tab closed").waitFor();
  expect(await message(bob, "never sent").count()).toBe(0);
  expect(await bodies(alice)).toEqual(atAlice);
  expect([...alice.errors, ...bob.errors]).toEqual([]);
});
