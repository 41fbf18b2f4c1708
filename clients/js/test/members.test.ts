// Group membership as the other members see it: the server sends what changed
// (`conversation:members`), and the client keeps each conversation's member list whole.

import { afterAll, beforeAll, expect, test } from "vitest";

import type { Conversation } from "../src/index.js";
import { client, live } from "./clients.js";
import { startServer, until, type TestServer } from "./server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => server.dispose());

const roles = (c: Conversation | undefined) => c?.members.map((m) => `${m.user_id}:${m.role}`);

test("members joining, leaving and an ownership hand-over reach the other members' lists", async () => {
  const alice = await live(client(server, "m-alice"));
  const bob = await live(client(server, "m-bob"));
  const carol = await live(client(server, "m-carol"));
  const updates: Conversation[] = [];
  bob.on("conversation:updated", (c) => updates.push(c));
  const group = await alice.createGroup("Club", ["m-bob"]);
  const atBob = () => bob.conversations.get(group.id);
  await until(() => atBob() !== undefined, "bob to learn the group");
  expect(roles(atBob())).toEqual(["m-alice:owner", "m-bob:member"]);

  // Carol joins: bob's copy grows by one, and the client says so.
  await alice.addMembers(group.id, ["m-carol"]);
  await until(() => atBob()?.members.length === 3, "carol to join bob's copy");
  expect(roles(atBob())).toEqual(["m-alice:owner", "m-bob:member", "m-carol:member"]);
  expect(roles(updates.at(-1))).toEqual(roles(atBob()));
  await until(() => carol.conversations.get(group.id) !== undefined, "carol to learn the group");

  // Alice, the owner, leaves: bob inherits ownership in place; carol's copy agrees.
  await alice.leave(group.id);
  await until(() => atBob()?.members.length === 2, "alice to leave bob's copy");
  expect(roles(atBob())).toEqual(["m-bob:owner", "m-carol:member"]);
  await until(() => carol.conversations.get(group.id)?.members.length === 2, "carol's copy");
  expect(roles(carol.conversations.get(group.id))).toEqual(["m-bob:owner", "m-carol:member"]);

  // Bob removes carol: the group leaves her list, and his copy holds only him.
  await bob.removeMembers(group.id, ["m-carol"]);
  await until(() => carol.conversations.get(group.id) === undefined, "the group to leave carol's list");
  expect(roles(atBob())).toEqual(["m-bob:owner"]);
  // A fresh list from the server says the same as the copies kept from events.
  const fresh = await live(client(server, "m-bob"));
  await until(() => fresh.conversations.get(group.id) !== undefined, "a fresh list");
  expect(roles(fresh.conversations.get(group.id))).toEqual(roles(atBob()));
});

test("a large group carries its first 100 members and the count; the rest is paged on demand", async () => {
  const owner = await live(client(server, "lg-owner"));
  const watcher = await live(client(server, "lg-0"));
  const others = Array.from({ length: 149 }, (_, i) => `lg-${i}`);
  const group = await owner.createGroup("Big", others.slice(0, 120));
  await owner.addMembers(group.id, others.slice(120));
  expect(group.members).toHaveLength(100);
  expect(group.member_count).toBe(121);
  await until(() => watcher.conversations.get(group.id) !== undefined, "the watcher to learn the group");
  const copy = watcher.conversations.get(group.id)!;
  expect(copy.members).toHaveLength(100);

  // Page by page, each member once, owner first.
  const first = await watcher.listMembers(group.id, { limit: 60 });
  expect(first.members).toHaveLength(60);
  expect(first.member_count).toBe(150);
  expect(first.members[0]).toMatchObject({ user_id: "lg-owner", role: "owner" });
  const second = await watcher.listMembers(group.id, { after: first.next!, limit: 60 });
  expect(second.members[0]?.user_id).not.toBe(first.members[59]?.user_id);
  const all: string[] = [];
  for await (const m of watcher.members(group.id, { limit: 40 })) all.push(m.user_id);
  expect(all).toHaveLength(150);
  expect(new Set(all).size).toBe(150);
  expect(all.slice(0, 60)).toEqual(first.members.map((m) => m.user_id));

  // Strangers and bad cursors are refused with the server's error.
  const stranger = await live(client(server, "lg-stranger"));
  await expect(stranger.listMembers(group.id)).rejects.toMatchObject({ code: "not_found" });
  await expect(watcher.listMembers(group.id, { after: "bogus" })).rejects.toMatchObject({ code: "invalid_payload" });
});

test("a group that shrinks back to 100 is loaded whole again", async () => {
  const owner = await live(client(server, "sh-owner"));
  const watcher = await live(client(server, "sh-0"));
  const others = Array.from({ length: 102 }, (_, i) => `sh-${i}`);
  const group = await owner.createGroup("Shrinking", others);
  await until(() => watcher.conversations.get(group.id)?.member_count === 103, "the watcher to learn the group");
  expect(watcher.conversations.get(group.id)!.members).toHaveLength(100);
  // Down to 100: the delta alone can't make the list whole (the copy held the first 100 of 103);
  // the client loads it again.
  await owner.removeMembers(group.id, ["sh-101", "sh-100", "sh-99"]);
  await until(() => watcher.conversations.get(group.id)?.member_count === 100, "the count to follow");
  await until(() => watcher.conversations.get(group.id)?.members.length === 100, "the whole list");
  const ids = watcher.conversations.get(group.id)!.members.map((m) => m.user_id);
  expect(ids).not.toContain("sh-99");
  expect(new Set(ids).size).toBe(100);
});
