// Files and search in the web app, in a real browser against a real confab: a photo attached
// with the button shows as a preview for the other person, a text file as a chip that
// downloads, and the search box finds a message and opens its conversation.

import { expect, test } from "vitest";

import { devToken, until } from "../../clients/js/test/server.js";
import { conversationId, pane, send, shot, startGroup, suite, timeline } from "./people.js";

const s = suite({ secret: null });

/** A real 3×2 PNG (red), so the browser draws it. */
const PNG = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAMAAAACCAYAAACddGYaAAAAEUlEQVR4nGM4YWPzH4YZkDkArV0Ne3wTlfEAAAAASUVORK5CYII=", "base64");

test("a photo and a file are attached, shown, and a message is found by search", async () => {
  const alice = await s.signedIn("alice", "Alice");
  const bob = await s.signedIn("bob", "Bob");
  await startGroup(alice, "Trip", "bob");

  // Attach with the button: chips with the uploads, sent without a caption.
  const chooser = alice.page.waitForEvent("filechooser");
  await alice.page.getByRole("button", { name: "Attach files" }).click();
  await (await chooser).setFiles([
    { name: "beach.png", mimeType: "image/png", buffer: PNG },
    { name: "packing.txt", mimeType: "text/plain", buffer: Buffer.from("towel\nsunscreen\n") },
  ]);
  const chips = alice.page.getByRole("list", { name: "Attachments" });
  await chips.getByText("beach.png").waitFor();
  const sendButton = alice.page.getByRole("button", { name: "Send", exact: true });
  await until(async () => await sendButton.isEnabled(), "the uploads to finish");
  await sendButton.click();
  await chips.waitFor({ state: "detached" });

  // Bob sees the preview (a signed link, no token in the address) and the file chip.
  await bob.page.getByRole("link", { name: /Trip/ }).first().click();
  await pane(bob, "Trip").waitFor();
  await bob.page.getByRole("navigation", { name: "Conversations" }).getByText("Alice: 2 files").waitFor();
  const image = timeline(bob).getByRole("img", { name: "beach.png" });
  await image.waitFor();
  const src = (await image.getAttribute("src")) ?? "";
  expect(src).toContain("sig=");
  expect(src).not.toContain("Bearer");
  const chip = timeline(bob).getByRole("link", { name: /packing\.txt/ });
  await chip.waitFor();
  expect(await chip.getAttribute("download")).toBe("packing.txt");
  await until(async () => await image.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth === 3), "the image to load");
  await shot(bob, "20-files");

  // Search: the snippet's match is marked, and the result opens the conversation.
  await send(alice, "meet at the lighthouse at noon");
  await timeline(bob).getByText("meet at the lighthouse at noon").waitFor();
  await bob.page.getByRole("link", { name: /Trip/ }).first().click();
  const box = bob.page.getByRole("searchbox", { name: "Search messages" });
  await box.fill("lighthouse");
  await box.press("Enter");
  const results = bob.page.getByRole("list", { name: "Search results" });
  await results.locator("mark", { hasText: "lighthouse" }).waitFor();
  await shot(bob, "21-search");
  await results.getByRole("link").first().click();
  await pane(bob, "Trip").waitFor();
  expect(alice.errors).toEqual([]);
  expect(bob.errors).toEqual([]);
});

test("a search result far back in history is loaded and scrolled to", async () => {
  const carol = await s.signedIn("carol", "Carol");
  await startGroup(carol, "Archive", "");
  const id = await conversationId(carol, "Archive");
  // More than two pages of history after it, sent over the HTTP API.
  const token = await devToken(s.server, "carol", "Carol");
  const post = (client_id: string, body: string) =>
    fetch(`${s.server.url}/api/conversations/${id}/messages`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ client_id, body }),
    });
  await post("needle", "the needle in the haystack");
  for (let i = 0; i < 120; i++) await post(`hay-${i}`, `hay number ${i}`);
  await timeline(carol).getByText("hay number 119").waitFor();

  const box = carol.page.getByRole("searchbox", { name: "Search messages" });
  await box.fill("needle");
  await box.press("Enter");
  await carol.page.getByRole("list", { name: "Search results" }).getByRole("link").first().click();
  const needle = timeline(carol).locator("li[data-seq]", { hasText: "the needle in the haystack" });
  await needle.waitFor();
  await until(async () => await needle.isVisible() && (await needle.getAttribute("class"))?.includes("focused"), "the result scrolled to");
  const inView = await needle.evaluate((el) => {
    const box = el.getBoundingClientRect();
    return box.top >= 0 && box.bottom <= window.innerHeight;
  });
  expect(inView).toBe(true);
  expect(carol.errors).toEqual([]);
});

test("a file attached offline is uploaded once back, then sent", async () => {
  const dan = await s.signedIn("dan", "Dan");
  await startGroup(dan, "Offline", "");
  await dan.context.setOffline(true);
  const chooser = dan.page.waitForEvent("filechooser");
  await dan.page.getByRole("button", { name: "Attach files" }).click();
  await (await chooser).setFiles([{ name: "later.png", mimeType: "image/png", buffer: PNG }]);
  const chips = dan.page.getByRole("list", { name: "Attachments" });
  await chips.getByText("Waiting for the connection…").waitFor();
  const sendButton = dan.page.getByRole("button", { name: "Send", exact: true });
  expect(await sendButton.isDisabled()).toBe(true);
  await dan.context.setOffline(false);
  await until(async () => await sendButton.isEnabled(), "the upload once back online", 15_000);
  await sendButton.click();
  await timeline(dan).locator("li[data-seq]").getByRole("img", { name: "later.png" }).waitFor();
  expect(dan.errors).toEqual([]);
});
