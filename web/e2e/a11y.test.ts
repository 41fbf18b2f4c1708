// The app by keyboard and by screen reader: every action reachable with Tab, new messages
// announced, dialogs that behave as modal dialogs (focus in, kept in, Escape, focus back),
// presence said in words, Enter inside an IME composition left to the IME; and axe-core finding
// nothing serious on any screen, at desktop and phone sizes.

import type { Locator, Page } from "playwright-core";
import { beforeAll, expect, test } from "vitest";

import { until } from "../../clients/js/test/server.js";
import {
  suite,
  conversationItem,
  conversationLink,
  DESKTOP,
  expectAccessible,
  message,
  messageBySeq,
  open,
  person,
  PHONE,
  send,
  shot,
  signIn,
  startDirect,
  startGroup,
  timeline,
  type Person,
} from "./people.js";

const s = suite({ secret: null, env: { CONFAB_PRESENCE_GRACE_MS: "300" } });
let ann: Person;
let ben: Person;

beforeAll(async () => {
  ann = await s.signedIn("ann", "Ann", DESKTOP);
  ben = await s.signedIn("ben", "Ben", DESKTOP);
  await startDirect(ann, "ben", { expectWarning: true });
  await send(ann, "Hello Ben");
  await message(ann, "Hello Ben").waitFor();
});

/** Whether the focused element is inside `locator`. */
async function focusInside(locator: Locator): Promise<boolean> {
  return locator.evaluate((el) => el.contains(document.activeElement));
}

/**
 * Whether focus is kept from the page behind a modal dialog: inside the dialog, or (between the
 * dialog's last control and its first, as browsers do for a modal <dialog>) on the browser's
 * own controls, which leaves nothing in the page focused.
 */
async function focusKept(dialog: Locator): Promise<boolean> {
  return dialog.evaluate((el) => {
    const active = document.activeElement;
    return el.contains(active) || active === null || active === document.body;
  });
}

/** The opacity an element is drawn with (its own times its ancestors'). */
async function shownOpacity(locator: Locator): Promise<number> {
  return locator.evaluate((el) => {
    let opacity = 1;
    for (let e: Element | null = el; e; e = e.parentElement) opacity *= Number(getComputedStyle(e).opacity);
    return opacity;
  });
}

/** Presses Tab until `target` has focus (at most `max` times). */
async function tabTo(page: Page, target: Locator, max = 40): Promise<void> {
  for (let i = 0; i < max; i++) {
    if (await target.evaluate((el) => el === document.activeElement).catch(() => false)) return;
    await page.keyboard.press("Tab");
  }
  throw new Error(`Tab never reached ${target}`);
}

test("Edit and Delete of one's own message are reachable by keyboard", async () => {
  const mine = await messageBySeq(ann, "Hello Ben");
  const edit = mine.getByRole("button", { name: "Edit" });
  await ann.page.getByRole("textbox", { name: "Message", exact: true }).focus();
  await ann.page.mouse.move(0, 0);
  await tabTo(ann.page, edit);
  // Focused, it is shown (not merely there, transparent), whole, on the screen.
  const box = await edit.boundingBox();
  expect(box).not.toBeNull();
  expect(box!.x).toBeGreaterThanOrEqual(0);
  expect(box!.x + box!.width).toBeLessThanOrEqual(DESKTOP.width);
  expect(await shownOpacity(edit)).toBe(1);
  await shot(ann, "a11y-edit-focused-desktop");
  await ann.page.keyboard.press("Enter");
  const box2 = mine.getByRole("textbox", { name: "Edit message" });
  await box2.waitFor();
  expect(await box2.evaluate((el) => el === document.activeElement)).toBe(true);
  await ann.page.keyboard.press("Escape");
  await box2.waitFor({ state: "detached" });
  await tabTo(ann.page, mine.getByRole("button", { name: "Delete" }));
});

test("new messages are announced: the timeline is a live log", async () => {
  await open(ben, "Ann");
  const log = timeline(ben);
  // role=log is polite by definition; say it outright for older screen readers too.
  expect(await log.getAttribute("aria-live")).toBe("polite");
  await send(ann, "Are you coming tonight?");
  await log.getByText("Are you coming tonight?").waitFor();
});

test("dialogs are modal: focus goes in and stays in, Escape closes, focus comes back", async () => {
  const opener = ann.page.getByRole("button", { name: "New chat" });
  await opener.focus();
  await ann.page.keyboard.press("Enter");
  const dialog = ann.page.getByRole("dialog", { name: "New chat" });
  await dialog.waitFor();
  expect(await dialog.evaluate((el) => el instanceof HTMLDialogElement && el.matches(":modal"))).toBe(true);
  expect(await focusInside(dialog)).toBe(true);
  let inside = 0;
  for (let i = 0; i < 12; i++) {
    await ann.page.keyboard.press("Tab");
    expect(await focusKept(dialog), `focus after ${i + 1} Tab`).toBe(true);
    if (await focusInside(dialog)) inside++;
  }
  // It cycles through the dialog's controls (not stuck on the browser's).
  expect(inside).toBeGreaterThanOrEqual(8);
  await expectAccessible(ann, "new chat dialog");
  await ann.page.keyboard.press("Escape");
  await dialog.waitFor({ state: "hidden" });
  expect(await opener.evaluate((el) => el === document.activeElement)).toBe(true);

  // The same for a group's members.
  await startGroup(ann, "Quiz night", "ben");
  const members = ann.page.getByRole("button", { name: "Members" });
  await members.click();
  const list = ann.page.getByRole("dialog", { name: "Members" });
  await list.waitFor();
  expect(await focusInside(list)).toBe(true);
  await expectAccessible(ann, "members dialog");
  await shot(ann, "a11y-members-desktop");
  await ann.page.keyboard.press("Escape");
  await list.waitFor({ state: "hidden" });
  expect(await members.evaluate((el) => el === document.activeElement)).toBe(true);
});

test("presence is said in words, not only by a dot's colour", async () => {
  await ann.page.goto(s.server.url);
  const item = conversationItem(ann, "Ben");
  await item.getByRole("img", { name: "online" }).waitFor();
  await ben.context.setOffline(true);
  await item.getByRole("img", { name: "offline" }).waitFor();
  await ben.context.setOffline(false);
  await item.getByRole("img", { name: "online" }).waitFor({ timeout: 20_000 });
});

test("Enter inside an IME composition does not save an edit", async () => {
  await open(ann, "Ben");
  const mine = await messageBySeq(ann, "Hello Ben");
  await mine.hover();
  await mine.getByRole("button", { name: "Edit" }).click();
  const box = mine.getByRole("textbox", { name: "Edit message" });
  await box.fill("");
  const cdp = await ann.context.newCDPSession(ann.page);
  // Typing Japanese: the IME shows にほん, still being composed; Enter is the IME's.
  await cdp.send("Input.imeSetComposition", { text: "にほん", selectionStart: 3, selectionEnd: 3 });
  await ann.page.keyboard.press("Enter");
  await ann.page.waitForTimeout(300);
  expect(await box.count(), "the edit box is still open").toBe(1);
  // The composition ends (日本 chosen); now Enter saves.
  await cdp.send("Input.insertText", { text: "日本" });
  await ann.page.keyboard.press("Enter");
  await box.waitFor({ state: "detached" });
  await message(ben, "日本").waitFor();
});

test("axe finds nothing serious on any screen, at desktop and phone sizes", async () => {
  for (const size of [DESKTOP, PHONE]) {
    const p = await s.person(size);
    const tag = size === PHONE ? "phone" : "desktop";
    // On a phone the list and the open conversation take turns.
    const toList = async () => {
      if (size === PHONE) await p.page.getByRole("button", { name: "Back to conversations" }).click();
    };
    await p.page.goto(s.server.url);
    await p.page.getByLabel("User id").waitFor();
    await expectAccessible(p, `sign-in, ${tag}`);
    await signIn(p, null, "ann", "Ann");
    await conversationLink(p, "Ben").waitFor();
    await expectAccessible(p, `conversation list, ${tag}`);
    await shot(p, `a11y-list-${tag}`);
    await open(p, "Quiz night");
    await expectAccessible(p, `group conversation, ${tag}`);
    await toList();
    await open(p, "Ben");
    await message(p, "Are you coming tonight?").waitFor();
    await expectAccessible(p, `direct conversation, ${tag}`);
    await shot(p, `a11y-conversation-${tag}`);
    await toList();
    await p.page.getByRole("button", { name: "New chat" }).click();
    await p.page.getByRole("dialog", { name: "New chat" }).waitFor();
    await expectAccessible(p, `new chat dialog, ${tag}`);
    await shot(p, `a11y-new-chat-${tag}`);
    await p.page.keyboard.press("Escape");
    await until(async () => (await p.page.getByRole("dialog").count()) === 0, "the dialog to close");
    expect(p.errors).toEqual([]);
  }
});
