// The stream's sequencing rules on their own, with a scripted host: no server, every order of
// arrival under control.

import { expect, test } from "vitest";

import { Stream, type StreamHost } from "../src/stream.js";
import type { Message, SyncUpdate } from "../src/types.js";

function message(seq: number, body = `m${seq}`, conversation = "c"): Message {
  return {
    id: `${conversation}-${seq}`,
    conversation_id: conversation,
    seq,
    sender_id: "bob",
    kind: "user",
    client_id: `k${seq}`,
    body,
    created_at: "2026-01-01T00:00:00.000Z",
    edited_at: null,
    deleted_at: null,
  };
}

/**
 * A host whose `sync` answers from a list of stored messages (and, given `since`, the changed
 * ones at or below the cursor, after `changed_after`), both in pages of two, and records what it
 * was asked.
 */
function host(stored: Message[], changed: Message[] = []) {
  const delivered: Message[] = [];
  const updated: Message[] = [];
  const syncs: Record<string, number>[] = [];
  const sinces: (string | undefined)[] = [];
  const changedAfters: (Record<string, number> | undefined)[] = [];
  let connected = true;
  const h: StreamHost = {
    sync: async (cursors, since, changedAfter) => {
      syncs.push(cursors);
      sinces.push(since);
      changedAfters.push(changedAfter);
      if (!connected) throw new Error("disconnected");
      const updates = Object.entries(cursors).map(([id, cursor]): SyncUpdate => {
        const after = stored.filter((m) => m.conversation_id === id && m.seq > cursor);
        const from = changedAfter?.[id] ?? 0;
        const edits =
          since === undefined
            ? []
            : changed.filter((m) => m.conversation_id === id && m.seq > from && m.seq <= cursor);
        return {
          conversation_id: id,
          messages: after.slice(0, 2),
          has_more: after.length > 2,
          changed: edits.slice(0, 2),
          changed_has_more: edits.length > 2,
        };
      });
      return { updates, server_time: "2026-01-01T00:00:09.000Z" };
    },
    connected: () => connected,
    deliver: (m) => delivered.push(m),
    update: (m) => updated.push(m),
    unknownConversation: () => {},
  };
  return { h, delivered, updated, syncs, sinces, changedAfters, setConnected: (c: boolean) => (connected = c) };
}

const settle = () => new Promise((r) => setTimeout(r, 0));

test("in-order messages are delivered at once; duplicates are dropped", () => {
  const t = host([]);
  const s = new Stream(t.h);
  s.track("c", 0);
  for (const seq of [1, 2, 2, 1, 3]) s.ingest(message(seq));
  expect(t.delivered.map((m) => m.seq)).toEqual([1, 2, 3]);
  expect(t.syncs).toEqual([]);
});

test("a gap holds later messages back until a paged sync fills it", async () => {
  const stored = [1, 2, 3, 4, 5, 6].map((s) => message(s));
  const t = host(stored);
  const s = new Stream(t.h);
  s.track("c", 0);
  s.ingest(message(6));
  s.ingest(message(5));
  expect(t.delivered).toEqual([]);
  await s.idle();
  expect(t.delivered.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6]);
  // Pages of two from cursors 0 and 2; 5 and 6 were waiting already; the second page said "more",
  // so a last sync from 6 makes sure nothing lies beyond.
  expect(t.syncs).toEqual([{ c: 0 }, { c: 2 }, { c: 6 }]);
  expect(s.stats()).toEqual({ cursors: 1, ahead: 0, wanted: 0, changesPending: 0 });
});

test("an edit of a message still waiting behind a gap is delivered in its edited state", async () => {
  const t = host([message(1), message(2, "edited")]);
  const s = new Stream(t.h);
  s.track("c", 0);
  s.ingest(message(2, "original"));
  s.change(message(2, "edited"));
  await s.idle();
  expect(t.delivered.map((m) => m.body)).toEqual(["m1", "edited"]);
  expect(t.updated).toEqual([]);
  // Once delivered, a change is an update.
  s.change(message(1, "m1 edited"));
  expect(t.updated.map((m) => m.body)).toEqual(["m1 edited"]);
});

test("a sync that fails while offline is asked again on resync", async () => {
  const t = host([message(1), message(2)]);
  const s = new Stream(t.h);
  s.track("c", 0);
  t.setConnected(false);
  s.ingest(message(2));
  await settle();
  expect(t.delivered).toEqual([]);
  t.setConnected(true);
  s.resync();
  await s.idle();
  expect(t.delivered.map((m) => m.seq)).toEqual([1, 2]);
});

test("a forgotten conversation delivers nothing more", async () => {
  const t = host([message(1), message(2)]);
  const s = new Stream(t.h);
  s.track("c", 0);
  s.ingest(message(2));
  s.forget("c");
  await settle();
  expect(t.delivered).toEqual([]);
  expect(s.stats()).toEqual({ cursors: 0, ahead: 0, wanted: 0, changesPending: 0 });
});

test("after a reconnect, edits and deletions made meanwhile arrive as updates", async () => {
  const deleted = { ...message(1), body: null, deleted_at: "2026-01-01T00:00:05.000Z" };
  const t = host([message(1), message(2)], [deleted]);
  const s = new Stream(t.h);
  s.track("c", 0);
  s.ingest(message(1));
  s.ingest(message(2));
  // Reconnect: the catch-up sync asks for changes since the last server time seen.
  s.resync();
  await s.idle();
  expect(t.sinces).toEqual(["2026-01-01T00:00:00.000Z"]);
  expect(t.updated).toEqual([deleted]);
  // A later gap while connected needs no `since`: live events covered the changes.
  s.ingest(message(4));
  await settle();
  expect(t.sinces[1]).toBeUndefined();
});

test("more changes than one answer holds are paged through with the first `since`", async () => {
  const stored = [1, 2, 3, 4, 5, 6].map((s) => message(s));
  const edited = [1, 2, 3, 5, 6].map((s) => message(s, `edited ${s}`));
  const t = host(stored, edited);
  const s = new Stream(t.h);
  s.track("c", 0);
  for (const m of stored) s.ingest(m);
  s.resync();
  await s.idle();
  expect(t.updated.map((m) => m.body)).toEqual(["edited 1", "edited 2", "edited 3", "edited 5", "edited 6"]);
  // Each page continues after the last change received, with the `since` of the first (the
  // first answer's server_time is later, and would skip changes made before it).
  expect(t.changedAfters).toEqual([undefined, { c: 2 }, { c: 5 }]);
  expect(new Set(t.sinces)).toEqual(new Set(["2026-01-01T00:00:00.000Z"]));
  expect(s.stats()).toEqual({ cursors: 1, ahead: 0, wanted: 0, changesPending: 0 });
});

test("a reconnect while changes are being paged starts their pages over", async () => {
  const stored = [1, 2, 3, 4, 5, 6].map((s) => message(s));
  const edited = [1, 2, 3, 5, 6].map((s) => message(s, `edited ${s}`));
  const t = host(stored, edited);
  const s = new Stream(t.h);
  // The first page comes; the connection drops as the second is asked for.
  const sync = t.h.sync;
  t.h.sync = (...args) => {
    if (t.syncs.length === 1) t.setConnected(false);
    return sync(...args);
  };
  s.track("c", 0);
  for (const m of stored) s.ingest(m);
  s.resync();
  await settle();
  expect(t.changedAfters).toEqual([undefined, { c: 2 }]);
  t.setConnected(true);
  s.resync();
  await s.idle();
  // Asked again from the start of the changes, with the first `since`, and paged on from there.
  expect(t.changedAfters.slice(2)).toEqual([{ c: 0 }, { c: 2 }, { c: 5 }]);
  expect(t.sinces[2]).toBe("2026-01-01T00:00:00.000Z");
  expect(t.updated.map((m) => m.seq)).toEqual([1, 2, 1, 2, 3, 5, 6]);
  expect(s.stats()).toEqual({ cursors: 1, ahead: 0, wanted: 0, changesPending: 0 });
});

test("resyncs in one tick make one sync, whose `since` goes back by the longest lookback", async () => {
  const t = host([message(1), message(2)]);
  const s = new Stream(t.h);
  s.track("c", 0);
  s.ingest(message(1)); // live: up to date at its created_at
  s.resync(0);
  s.resync(120_000);
  s.resync(5_000);
  await s.idle();
  expect(t.syncs).toEqual([{ c: 1 }]);
  expect(t.sinces).toEqual(["2025-12-31T23:58:00.000Z"]);
  expect(t.delivered.map((m) => m.seq)).toEqual([1, 2]);
  // A plain (re)connect catch-up afterwards asks from the last sync's server_time, unshifted.
  s.resync();
  await s.idle();
  expect(t.sinces.at(-1)).toBe("2026-01-01T00:00:09.000Z");
});
