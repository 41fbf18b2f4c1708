// Starting conversations: refusals in people's words (not the API's "user_id: …"), and a
// question before starting a chat with someone confab can't vouch for (presence can't be probed
// for strangers, so the app can't know they ever signed in: it says so, and asks).

import { beforeAll, expect, test } from "vitest";

import {
  suite,
  conversationLink,
  conversationList,
  expectAccessible,
  open,
  pane,
  person,
  PHONE,
  send,
  shot,
  startGroup,
  type Person,
} from "./people.js";

const s = suite({ secret: null });
let ivy: Person;
let jon: Person;

beforeAll(async () => {
  ivy = await s.signedIn("ivy", "Ivy", PHONE);
  jon = await s.signedIn("jon", "Jon");
});

test("refusals are said in people's words", async () => {
  await ivy.page.getByRole("button", { name: "New chat" }).click();
  const dialog = ivy.page.getByRole("dialog", { name: "New chat" });
  await dialog.getByLabel("User id").fill("ivy");
  await dialog.getByRole("button", { name: "Create" }).click();
  const alert = dialog.getByRole("alert");
  await alert.waitFor();
  expect(await alert.innerText()).toBe("That's you: a direct chat needs someone else's user id.");
  await shot(ivy, "error-self-chat-phone");
  await expectAccessible(ivy, "new chat dialog with an error");
  await ivy.page.keyboard.press("Escape");

  // Adding someone with an impossible id to a group.
  await startGroup(ivy, "Climbing", "jon");
  await ivy.page.getByRole("button", { name: "Members" }).click();
  const members = ivy.page.getByRole("dialog", { name: "Members" });
  await members.getByLabel(/^Add people/).fill(`jon, ${"x".repeat(200)}`);
  await members.getByRole("button", { name: "Add" }).click();
  const refusal = members.getByRole("alert");
  await refusal.waitFor();
  expect(await refusal.innerText()).toBe(`“${"x".repeat(200)}” can't be a user id: it is longer than 128 characters.`);
  await shot(ivy, "error-long-id-phone");
  await ivy.page.keyboard.press("Escape");
  expect(ivy.errors).toEqual([]);
});

test("a chat with someone confab can't vouch for asks first; with someone known, it doesn't", async () => {
  await jon.page.getByRole("button", { name: "New chat" }).click();
  const dialog = jon.page.getByRole("dialog", { name: "New chat" });
  await dialog.getByLabel("User id").fill("zed");
  await dialog.getByRole("button", { name: "Create" }).click();
  // A question, not a chat: nothing is created until Jon says so.
  const warning = dialog.getByRole("alert");
  await warning.waitFor();
  expect(await warning.innerText()).toMatch(/“zed”.*signed in.*when they first sign in/s);
  await shot(jon, "first-contact-desktop");
  await expectAccessible(jon, "first contact question");
  expect(await conversationLink(jon, "zed").count()).toBe(0);
  // Going back lets him fix a typo.
  await dialog.getByRole("button", { name: "Back" }).click();
  await dialog.getByLabel("User id").fill("zed");
  await dialog.getByRole("button", { name: "Create" }).click();
  await dialog.getByRole("button", { name: "Start the chat" }).click();
  await pane(jon, "zed").waitFor();
  await send(jon, "Hi Zed, welcome");

  // Ivy is someone Jon shares a group with, and she has been online: no question.
  await jon.page.getByRole("button", { name: "New chat" }).click();
  await dialog.getByLabel("User id").fill("ivy");
  await dialog.getByRole("button", { name: "Create" }).click();
  await pane(jon, "Ivy").waitFor();
  expect(await conversationList(jon).getByRole("link").count()).toBe(3);

  // Zed signs in for the first time: the chat is there.
  const zed = await s.signedIn("zed", "Zed");
  await open(zed, "Jon");
  expect(jon.errors).toEqual([]);
});
