// What a conversation's timeline says besides messages, as people know it from WhatsApp Web and
// Slack: who was added, removed or left and who became owner, by name, where it happened among
// the messages; a line for each day; senders by name even after they left (and after a
// reload); and someone typing since before the conversation was opened.

import { expect, test } from "vitest";

import { until } from "../../clients/js/test/server.js";
import {
  suite,
  conversationItem,
  conversationLink,
  message,
  open,
  pane,
  person,
  PHONE,
  send,
  shot,
  startDirect,
  startGroup,
  timeline,
  type Person,
} from "./people.js";

const s = suite({ secret: null, env: { CONFAB_PRESENCE_GRACE_MS: "300" } });

/** The texts of the timeline's items (messages and lines), in page order. */
async function items(p: Person): Promise<string[]> {
  return (await timeline(p).getByRole("listitem").allInnerTexts()).map((t) => t.replace(/\s+/g, " ").trim());
}

/** Opens a group's Members dialog. */
async function members(p: Person) {
  await p.page.getByRole("button", { name: "Members" }).click();
  return p.page.getByRole("dialog", { name: "Members" });
}

test("membership and owner changes appear in the timeline, by name, where they happened", async () => {
  const alice = await s.signedIn("alice", "Alice");
  const bob = await s.signedIn("bob", "Bob");
  const carol = await s.signedIn("carol", "Carol");
  const dave = await s.signedIn("dave", "Dave");

  await startGroup(alice, "Trip", "bob, carol");
  await open(bob, "Trip");
  await open(carol, "Trip");
  await send(carol, "See you all at the station");
  await message(bob, "See you all at the station").waitFor();

  // Alice adds Dave: Bob reads who did it, Alice reads that she did.
  let dialog = await members(alice);
  await dialog.getByLabel(/^Add people/).fill("dave");
  await dialog.getByRole("button", { name: "Add" }).click();
  await message(bob, "Alice added Dave").waitFor();
  await message(alice, "You added Dave").waitFor();

  // Carol leaves; then Alice removes Dave.
  await (await members(carol)).getByRole("button", { name: "Leave group" }).click();
  await message(bob, "Carol left").waitFor();
  await dialog.getByRole("listitem").filter({ hasText: "Dave" }).getByRole("button", { name: "Remove" }).click();
  await message(bob, "Alice removed Dave").waitFor();
  await message(alice, "You removed Dave").waitFor();
  await dialog.getByRole("button", { name: "Close" }).click();

  // The owner leaves: the longest-standing member, Bob, becomes owner.
  await (await members(alice)).getByRole("button", { name: "Leave group" }).click();
  await message(bob, "Alice left").waitFor();
  await message(bob, "You are now the owner").waitFor();
  await shot(bob, "timeline-members-desktop");

  const atBob = await items(bob);
  const at = (text: string) => atBob.findIndex((t) => t.includes(text));
  expect(at("See you all at the station")).toBeGreaterThanOrEqual(0);
  const order = ["See you all at the station", "Alice added Dave", "Carol left", "Alice removed Dave", "Alice left", "You are now the owner"].map(at);
  expect(order, atBob.join(" | ")).toEqual([...order].sort((a, b) => a - b));
  expect(order.every((i) => i >= 0), atBob.join(" | ")).toBe(true);

  // Carol's message still says who wrote it, by name, though she left; also after a reload.
  const carolsMessage = message(bob, "See you all at the station");
  expect(await carolsMessage.innerText()).toContain("Carol");
  expect(await carolsMessage.innerText()).not.toContain("carol");
  await bob.page.reload();
  await open(bob, "Trip");
  await message(bob, "See you all at the station").waitFor();
  expect(await message(bob, "See you all at the station").innerText()).toContain("Carol");
  expect([...alice.errors, ...bob.errors, ...carol.errors, ...dave.errors]).toEqual([]);
});

test("days are separated, and times are <time> elements with the exact instant", async () => {
  const erin = await s.signedIn("erin", "Erin");
  const fay = await s.signedIn("fay", "Fay", PHONE);
  await startDirect(erin, "fay", { expectWarning: true });
  await send(erin, "first of the day");
  await send(erin, "second of the day");
  await message(erin, "second of the day").waitFor();

  await open(fay, "Erin");
  await message(fay, "second of the day").waitFor();
  const log = timeline(fay);
  await log.getByRole("heading", { name: "Today" }).waitFor();
  expect(await log.getByRole("heading").count()).toBe(1);
  // Each message's time says its instant in `datetime`, as the server stamped it.
  const stamp = await message(fay, "first of the day").locator("time").getAttribute("datetime");
  expect(stamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  expect(Math.abs(Date.parse(stamp ?? "") - Date.now())).toBeLessThan(60_000);
  await shot(fay, "timeline-today-phone");

  // The same conversation seen a day later says "Yesterday".
  const later = await s.signedIn("fay", "Fay");
  await later.page.clock.install({ time: Date.now() + 86_400_000 });
  await open(later, "Erin");
  await timeline(later).getByRole("heading", { name: "Yesterday" }).waitFor();
  expect(await timeline(later).getByRole("heading", { name: "Today" }).count()).toBe(0);
});

test("someone typing since before the conversation was opened shows when it opens", async () => {
  const gus = await s.signedIn("gus", "Gus");
  const hal = await s.signedIn("hal", "Hal");
  await startDirect(gus, "hal", { expectWarning: true });
  await send(gus, "are you there?");
  await conversationLink(hal, "Gus").waitFor();

  // Hal types (and keeps typing) while Gus looks at his list, not at the conversation.
  await gus.page.goto(`${s.server.url}/`);
  await conversationLink(gus, "Hal").waitFor();
  await open(hal, "Gus");
  await hal.page.getByRole("textbox", { name: "Message", exact: true }).pressSequentially("I am writing a long ans", { delay: 30 });
  // The list says so already, as WhatsApp's does.
  await conversationItem(gus, "Hal").getByText("typing…").waitFor();
  await open(gus, "Hal");
  await pane(gus, "Hal").getByText("Hal is typing…").waitFor();
  // And it ends when his message arrives.
  await hal.page.keyboard.press("Enter");
  await message(gus, "I am writing a long ans").waitFor();
  await until(async () => (await pane(gus, "Hal").getByText("Hal is typing…").count()) === 0, "the typing line to clear");
});
