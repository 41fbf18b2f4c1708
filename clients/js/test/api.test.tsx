// The public API's shape, as an app developer meets it: calls that can be aborted, a send that
// settles offline without losing the message, records with the protocol's names throughout, and
// React hooks that neither resubscribe on every render nor hand out objects that don't work.
// Against a real server; React renders with react-dom into a happy-dom document.

import { Window } from "happy-dom";
import { act, useState } from "react";
import { createRoot } from "react-dom/client";
import { afterAll, beforeAll, expect, test } from "vitest";

import { ConfabError, type ConfabClient } from "../src/index.js";
import { ConfabProvider, useConnectionState, useConversation } from "../src/react.js";
import { client, live, range } from "./clients.js";
import { Proxy } from "./proxy.js";
import { startServer, until, type TestServer } from "./server.js";

const dom = new Window({ url: "http://localhost/" });
Object.assign(globalThis, { window: dom, document: dom.document });
(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

let server: TestServer;
let proxy: Proxy;
beforeAll(async () => {
  server = await startServer();
  proxy = await new Proxy(server.port).start();
});
afterAll(async () => {
  await proxy.close();
  await server.dispose();
});

/** `user` through the proxy, and a direct chat with `peer`. */
async function chatThroughProxy(user: string, peer: string) {
  proxy.up();
  const other = await live(client(server, peer));
  const me = await live(client(server, user, { via: proxy }));
  const direct = await me.createDirect(peer);
  await until(() => other.cursor(direct.id) !== undefined, `${peer} to learn the chat`);
  return { me, other, direct };
}

test("an offline send rejects with timeout, and the message is still sent once back", async () => {
  const { me, other, direct } = await chatThroughProxy("s-alice", "s-bob");
  proxy.down();
  await until(() => me.state === "reconnecting", "alice to go offline");

  const error = await me.send(direct.id, "written offline", { timeoutMs: 300 }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ConfabError);
  expect((error as ConfabError).code).toBe("timeout");
  const clientId = (error as ConfabError).clientId;
  expect(me.pending(direct.id)).toMatchObject([{ client_id: clientId, body: "written offline", state: "queued" }]);

  // The client's default (`sendTimeoutMs`) bounds it too.
  const bounded = client(server, "s-alice", { via: proxy, sendTimeoutMs: 200 });
  const second = await bounded.send(direct.id, "also offline").catch((e: unknown) => e);
  expect((second as ConfabError).code).toBe("timeout");
  bounded.close();

  proxy.up();
  await until(() => me.pending(direct.id).length === 0, "the message to be sent");
  const history = await other.history(direct.id);
  expect(history.messages.map((m) => [m.body, m.client_id])).toEqual([["written offline", clientId]]);
});

test("aborting a send stops the wait, not the message; an aborted signal queues nothing", async () => {
  const { me, other, direct } = await chatThroughProxy("s-carol", "s-dan");
  proxy.down();
  await until(() => me.state === "reconnecting", "carol to go offline");

  const controller = new AbortController();
  const sending = me.send(direct.id, "kept", { signal: controller.signal, clientId: "kept-1" });
  controller.abort();
  const reason = await sending.catch((e: unknown) => e);
  expect((reason as Error).name).toBe("AbortError");
  expect(me.pending(direct.id).map((e) => e.client_id)).toEqual(["kept-1"]);

  const refused = await me.send(direct.id, "never", { signal: AbortSignal.abort() }).catch((e: unknown) => e);
  expect((refused as Error).name).toBe("AbortError");
  expect(me.pending(direct.id).map((e) => e.body)).toEqual(["kept"]);

  proxy.up();
  await until(() => me.pending(direct.id).length === 0, "the kept message to be sent");
  expect((await other.history(direct.id)).messages.map((m) => m.body)).toEqual(["kept"]);
});

test("aborting a request rejects it at once with the signal's reason", async () => {
  const { me, direct } = await chatThroughProxy("s-erin", "s-finn");
  await me.send(direct.id, "hello");
  // Answers travel slowly: without the abort, the request would wait for its answer.
  proxy.holdReplies();
  try {
    const controller = new AbortController();
    const started = Date.now();
    const page = me.history(direct.id, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error("gave up")), 50);
    await expect(page).rejects.toThrow("gave up");
    expect(Date.now() - started).toBeLessThan(1_000);

    // Already aborted: nothing is sent.
    const sent: string[] = [];
    me.socket.onAnyOutgoing((event) => sent.push(event));
    const groups = me.createGroup("never made", [], { signal: AbortSignal.abort() });
    await expect(groups).rejects.toMatchObject({ name: "AbortError" });
    expect(sent).toEqual([]);
  } finally {
    proxy.deliver();
  }
  // Every async call takes a signal.
  const signal = new AbortController().signal;
  expect((await me.history(direct.id, { limit: 1, signal })).messages).toHaveLength(1);
  await me.markRead(direct.id, 1, { signal });
  expect(await me.fetchPresence(["s-finn"], { signal })).toHaveLength(1);
  expect((await me.listConversations({ signal })).map((c) => c.id)).toContain(direct.id);
});

/** Every key of a plain object, and of the plain objects and arrays within it (Maps aside). */
function keysOf(value: unknown, into = new Set<string>()): Set<string> {
  if (Array.isArray(value)) for (const v of value) keysOf(v, into);
  else if (value !== null && typeof value === "object" && !(value instanceof Map) && !(value instanceof Error)) {
    for (const [k, v] of Object.entries(value)) {
      into.add(k);
      keysOf(v, into);
    }
  }
  return into;
}

test("every record the client hands out has the protocol's snake_case names", async () => {
  const { me, other, direct } = await chatThroughProxy("s-gus", "s-hana");
  await other.send(direct.id, "hi");
  await until(() => me.conversations.get(direct.id)?.unread_count === 1, "the unread count");
  const view = me.view(direct.id);
  await until(() => view.getSnapshot().status === "ready", "the view");
  proxy.down();
  await until(() => me.state === "reconnecting", "gus to go offline");
  void me.send(direct.id, "queued").catch(() => {});

  const records = {
    items: me.conversations.getSnapshot().items,
    pending: me.pending(),
    messages: view.getSnapshot().messages,
    page: await other.history(direct.id),
    presence: await other.fetchPresence(["s-gus"]),
    conversations: await other.listConversations(),
  };
  const keys = [...keysOf(records)].filter((k) => !Object.keys(records).includes(k));
  expect(keys.filter((k) => !/^[a-z]+(_[a-z]+)*$/.test(k))).toEqual([]);
  // The same names for the same things: an entry becomes a message with its client_id.
  expect(Object.keys(me.pending()[0] ?? {}).sort()).toEqual(
    ["attachment_ids", "attempts", "body", "client_id", "conversation_id", "created_at", "error", "state"].sort(),
  );
  expect(me.conversations.get(direct.id)).toMatchObject({ id: direct.id, last_message: { body: "hi" }, unread_count: 1 });
  view.dispose();
  proxy.up();
});

test("useConnectionState subscribes once, however often the component renders", async () => {
  const alice = await live(client(server, "r-alice"));
  let subscriptions = 0;
  const onState = alice.onState.bind(alice);
  alice.onState = (listener) => {
    subscriptions++;
    return onState(listener);
  };
  let rerender: (() => void) | undefined;
  function Banner() {
    const [n, setN] = useState(0);
    rerender = () => setN(n + 1);
    return <p data-renders={n}>{useConnectionState()}</p>;
  }
  const container = document.createElement("div");
  const root = createRoot(container);
  await act(async () => root.render(<ConfabProvider client={alice}><Banner /></ConfabProvider>));
  for (let i = 0; i < 5; i++) await act(async () => rerender?.());
  expect(container.querySelector("p")?.getAttribute("data-renders")).toBe("5");
  expect(container.textContent).toBe("live");
  expect(subscriptions).toBe(1);
  await act(async () => root.unmount());
  expect(alice.stats().stateListeners).toBe(0);
});

test("the view from the first render works once the conversation is loaded, and stays the same", async () => {
  const alice = await live(client(server, "r-carol"));
  const bob = await live(client(server, "r-dan"));
  const direct = await bob.createDirect("r-carol");
  for (const i of range(1, 8)) await bob.send(direct.id, `m${i}`);
  await until(() => alice.cursor(direct.id) === 8, "alice to learn the chat");

  const seen: { view: unknown; status: string; count: number }[] = [];
  function Thread({ id }: { id: string }) {
    const { view, status, messages } = useConversation(id, { pageSize: 3 });
    seen.push({ view, status, count: messages.length });
    return null;
  }
  const root = createRoot(document.createElement("div"));
  await act(async () => root.render(<ConfabProvider client={alice}><Thread id={direct.id} /></ConfabProvider>));
  await until(() => seen.at(-1)?.status === "ready", "the conversation to load");
  const first = seen[0] as { view: ReturnType<typeof useConversation>["view"]; status: string };
  expect(first.status).toBe("loading");
  expect(new Set(seen.map((s) => s.view)).size).toBe(1);

  // Kept from the first render (in a callback, say), it acts on the loaded view.
  await act(async () => first.view.loadOlder());
  expect(seen.at(-1)?.count).toBe(6);
  await act(async () => first.view.markRead());
  await until(() => bob.readMarksOf(direct.id).get("r-carol") === 8, "bob to see carol's read mark");
  await act(async () => root.unmount());
});

test("a send on a closed client rejects at once, naming the message", async () => {
  const alice: ConfabClient = await live(client(server, "r-erin"));
  alice.close();
  const error = await alice.send("x", "late", { clientId: "late-1" }).catch((e: unknown) => e);
  expect(error).toMatchObject({ code: "closed", clientId: "late-1" });
});
