// Attachments and search through the client: upload, send with the message, download by a
// signed link, and find messages again.

import { afterAll, beforeAll, expect, test } from "vitest";

import { ConfabError, type Message } from "../src/index.js";
import { client, live } from "./clients.js";
import { startServer, until, type TestServer } from "./server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => server.dispose());

/** A 3×2 PNG's signature and header, then some bytes. */
function png(): Uint8Array<ArrayBuffer> {
  const head = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52, 0, 0, 0, 3, 0, 0, 0, 2, 8, 6,
    0, 0, 0, 0x9a, 0x8c, 0x5e, 0xbd,
  ];
  return new Uint8Array([...head, ...Array.from({ length: 500 }, (_, i) => i % 251)]);
}

test("a file is uploaded, sent with a message, and downloaded by a link", async () => {
  const alice = await live(client(server, "att-alice"));
  const bob = await live(client(server, "att-bob"));
  const conversation = await alice.createGroup("photos", ["att-bob"]);
  const got: Message[] = [];
  bob.subscribe(conversation.id, { message: (m) => got.push(m) });

  const bytes = png();
  const progress: number[] = [];
  const attachment = await alice.uploadAttachment(new Blob([bytes], { type: "image/png" }), {
    name: "cat.png",
    onProgress: (loaded) => progress.push(loaded),
  });
  expect(attachment).toMatchObject({ content_type: "image/png", size: bytes.length, name: "cat.png", width: 3, height: 2 });
  expect(progress.at(-1)).toBe(bytes.length);

  const sent = await alice.send(conversation.id, "", { attachments: [attachment] });
  expect(sent.attachments).toEqual([attachment]);
  expect(alice.pending(conversation.id)).toEqual([]);
  await until(() => got.length === 1, "bob's copy");
  expect(got[0]?.attachments?.[0]?.id).toBe(attachment.id);

  const url = await bob.attachmentUrl(attachment.id);
  const response = await fetch(url);
  expect(response.status).toBe(200);
  expect(new Uint8Array(await response.arrayBuffer())).toEqual(bytes);
});

test("a file whose bytes aren't what it claims is refused", async () => {
  const alice = await live(client(server, "att-carol"));
  const html = new Blob(["<!DOCTYPE html><script>alert(1)</script>"], { type: "image/png" });
  const error = await alice.uploadAttachment(html).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ConfabError);
  expect((error as ConfabError).code).toBe("invalid_payload");
});

test("search finds the user's messages, newest first", async () => {
  const alice = await live(client(server, "search-alice"));
  const conversation = await alice.createGroup("notes", []);
  await alice.send(conversation.id, "the quarterly roadmap draft");
  await alice.send(conversation.id, "roadmap, final");
  const page = await alice.search("roadmap", { conversationId: conversation.id, limit: 1 });
  expect(page.results.map((r) => r.message.body)).toEqual(["roadmap, final"]);
  expect(page.results[0]?.highlights).toEqual([[0, 7]]);
  expect(page.has_more).toBe(true);
  const next = await alice.search("roadmap", { before: page.results[0]?.message.id });
  expect(next.results.map((r) => r.message.body)).toEqual(["the quarterly roadmap draft"]);
});
