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
