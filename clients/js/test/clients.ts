// Clients for tests: connected to a TestServer (or a proxy in front of it), closed afterwards.

import { afterEach } from "vitest";

import { connect, type ConfabClient, type ConnectOptions, type Message } from "../src/index.js";
import { until, type TestServer } from "./server.js";

const open: ConfabClient[] = [];

afterEach(() => {
  for (const c of open.splice(0)) c.close();
});

/** Connects `user`; closed after the test. Tokens come from the server's secret. */
export function client(
  server: TestServer,
  user: string,
  options: Partial<ConnectOptions> & { via?: { url: string } } = {},
): ConfabClient {
  const { via, ...rest } = options;
  const c = connect({
    url: via?.url ?? server.url,
    getToken: () => server.token(user),
    ackTimeoutMs: 3_000,
    reconnectionDelayMs: 100,
    reconnectionDelayMaxMs: 300,
    ...rest,
    socketOptions: { transports: ["websocket"], ...rest.socketOptions },
  });
  open.push(c);
  return c;
}

export async function live(c: ConfabClient, timeoutMs = 10_000): Promise<ConfabClient> {
  await until(() => c.state === "live", `${c.me?.id ?? "client"} to be live (is ${c.state})`, timeoutMs);
  return c;
}

/** Collects what a conversation subscription delivers. */
export function collect(c: ConfabClient, conversationId: string): { messages: Message[]; updates: Message[]; stop: () => void } {
  const messages: Message[] = [];
  const updates: Message[] = [];
  const stop = c.subscribe(conversationId, { message: (m) => messages.push(m), update: (m) => updates.push(m) });
  return { messages, updates, stop };
}

export const seqs = (messages: Message[]) => messages.map((m) => m.seq);
export const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
