// The open conversation lives in the address (reload, deep links, the phone's Back button);
// a wide message's actions fit a phone's screen; words and dates come from Intl.

import { beforeAll, expect, test } from "vitest";

import { until } from "../../clients/js/test/server.js";
import {
  suite,
  conversationId,
  conversationLink,
  conversationList,
  DESKTOP,
  message,
  messageBySeq,
  newTab,
  open,
  pane,
  person,
  PHONE,
  send,
  shot,
  signIn,
  startDirect,
  startGroup,
  type Person,
} from "./people.js";

const s = suite({ secret: null });
let kim: Person;
let lou: Person;

beforeAll(async () => {
  kim = await s.signedIn("kim", "Kim", PHONE);
  lou = await s.signedIn("lou", "Lou", DESKTOP);
  await startDirect(lou, "kim", { expectWarning: true });
  await send(lou, "Morning!");
  await startGroup(lou, "Garden", "kim");
  await send(lou, "Seeds arrived");
});

test("the open conversation is in the address: reload, deep link, Back and Forward", async () => {
  const garden = await conversationId(lou, "Garden");
  // Lou (desktop) has Garden open: the address says so, and a reload keeps it open.
  expect(new URL(lou.page.url()).searchParams.get("c")).toBe(garden);
  await lou.page.reload();
  await pane(lou, "Garden").waitFor();

  // Kim (phone) opens Lou's chat, then Garden; Back goes to the list through them, Forward again.
  await open(kim, "Lou");
  await message(kim, "Morning!").waitFor();
  await kim.page.goBack();
  await conversationList(kim).waitFor();
  expect(await pane(kim, "Lou").count()).toBe(0);
  expect(new URL(kim.page.url()).searchParams.get("c")).toBeNull();
  await kim.page.goForward();
  await pane(kim, "Lou").waitFor();
  // The app's own back arrow is the same step back.
  await kim.page.getByRole("button", { name: "Back to conversations" }).click();
  await conversationList(kim).waitFor();
  await open(kim, "Garden");
  await kim.page.goBack();
  await conversationList(kim).waitFor();

  // A link to Garden, opened in a new tab (not signed in there yet): after signing in, Garden.
  await newTab(kim);
  await kim.page.goto(`${s.server.url}/?c=${garden}`);
  await signIn(kim, null, "kim", "Kim");
  await pane(kim, "Garden").waitFor();
  await message(kim, "Seeds arrived").waitFor();
  // A link to a conversation that isn't (or is no longer) yours: the list, and a word about it.
  await kim.page.goto(`${s.server.url}/?c=00000000-0000-4000-8000-000000000000`);
  await kim.page.getByRole("status").filter({ hasText: "isn't available" }).waitFor();
  await conversationList(kim).waitFor();
  expect(kim.errors).toEqual([]);
});

test("a wide message's Edit and Delete fit a phone's screen", async () => {
  const wide = `A message as wide as the screen allows: ${"word ".repeat(40)}end`;
  await open(kim, "Lou");
  await send(kim, wide);
  await message(kim, "as wide as the screen allows").waitFor();
  const mine = await messageBySeq(kim, "as wide as the screen allows");
  // Tapped, the message shows its actions.
  await mine.getByText("as wide as the screen allows").click();
  for (const name of ["Edit", "Delete"]) {
    const button = mine.getByRole("button", { name });
    await button.waitFor();
    const box = await button.boundingBox();
    expect(box, name).not.toBeNull();
    expect(box!.x, `${name}'s left edge`).toBeGreaterThanOrEqual(0);
    expect(box!.x + box!.width, `${name}'s right edge`).toBeLessThanOrEqual(PHONE.width);
    expect(await button.evaluate((el) => Number(getComputedStyle(el.parentElement as Element).opacity)), `${name} shown`).toBe(1);
  }
  await shot(kim, "phone-wide-message-actions");
  const overflow = await kim.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(0);
  // And it works from there.
  await mine.getByRole("button", { name: "Edit" }).click();
  await mine.getByRole("textbox", { name: "Edit message" }).fill("Shorter now");
  await mine.getByRole("button", { name: "Save" }).click();
  await open(lou, "Kim");
  await message(lou, "Shorter now").waitFor();
});

test("words go through Intl: lists, plurals and the members count", async () => {
  const mia = await s.signedIn("mia", "Mia", DESKTOP);
  await open(lou, "Garden");
  await lou.page.getByRole("button", { name: "Members" }).click();
  const dialog = lou.page.getByRole("dialog", { name: "Members" });
  await dialog.getByRole("heading", { name: "2 members" }).waitFor();
  await dialog.getByLabel(/^Add people/).fill("mia");
  await dialog.getByRole("button", { name: "Add" }).click();
  await dialog.getByRole("heading", { name: "3 members" }).waitFor();
  await lou.page.keyboard.press("Escape");
  // The header lists the members as Intl.ListFormat does for English.
  const expected = await lou.page.evaluate(() => new Intl.ListFormat("en", { type: "conjunction" }).format(["you", "Kim", "Mia"]));
  expect(expected).toBe("you, Kim, and Mia");
  await pane(lou, "Garden").getByText(expected, { exact: true }).waitFor();
  // Two typing at once: a list and a plural verb.
  await kim.page.getByRole("button", { name: "Back to conversations" }).click();
  await open(kim, "Garden");
  await open(mia, "Garden");
  await kim.page.getByRole("textbox", { name: "Message", exact: true }).pressSequentially("hmm", { delay: 30 });
  await mia.page.getByRole("textbox", { name: "Message", exact: true }).pressSequentially("hmm", { delay: 30 });
  await pane(lou, "Garden").getByText(/^(Kim and Mia|Mia and Kim) are typing…$/).waitFor();
  await shot(lou, "intl-typing-desktop");
  await until(async () => (await conversationLink(lou, "Garden").count()) === 1, "the list");
});
