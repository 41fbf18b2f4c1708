// docs/INTEGRATION.md's code, checked so it doesn't rot: the blocks marked `// file: PATH` are
// written out as a small Next.js-shaped app, type-checked, and run: the token route with a stubbed
// Auth.js session, then a connection to a real confab with the token it mints, then the React
// component rendered against that server.

import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

import { decodeJwt } from "jose";
import { Window } from "happy-dom";
import { act, createElement, type FunctionComponent } from "react";
import { createRoot } from "react-dom/client";
import { afterAll, beforeAll, expect, test } from "vitest";

import type { ConfabClient } from "../src/index.js";
import { client, live } from "./clients.js";
import { REPO_ROOT, SECRET, startServer, until, type TestServer } from "./server.js";

const PACKAGE = join(import.meta.dirname, "..");
const OUT = join(PACKAGE, ".docs-check");

/** The code blocks of the guide that name a file: path → source. */
function extract(markdown: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const match of markdown.matchAll(/```tsx?\n(\/\/ file: (\S+)\n[\s\S]*?)```/g)) {
    const [, source, path] = match;
    if (source && path) files.set(path, source);
  }
  return files;
}

const STUB_AUTH = `// Stands in for the app's Auth.js \`auth()\`: the test decides who is signed in.
export interface Session {
  user?: { id?: string; name?: string | null; email?: string | null };
}
let current: Session | null = null;
export function setSession(session: Session | null): void {
  current = session;
}
export async function auth(): Promise<Session | null> {
  return current;
}
`;

const TSCONFIG = {
  compilerOptions: {
    target: "ES2022",
    module: "ESNext",
    moduleResolution: "Bundler",
    lib: ["ES2022", "DOM", "DOM.Iterable"],
    jsx: "react-jsx",
    strict: true,
    noEmit: true,
    isolatedModules: true,
    skipLibCheck: true,
    types: ["node"],
    baseUrl: ".",
    paths: {
      "@/*": ["./*"],
      "@confab/client": ["../src/index.ts"],
      "@confab/client/react": ["../src/react.ts"],
    },
  },
  include: ["**/*.ts", "**/*.tsx"],
};

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => {
  await server.dispose();
});

test("the guide's code type-checks, mints a working token and renders a live chat", async () => {
  const files = extract(readFileSync(join(REPO_ROOT, "docs/INTEGRATION.md"), "utf8"));
  expect([...files.keys()].sort()).toEqual(["app/api/confab-token/route.ts", "app/chat/Chat.tsx", "lib/confab.ts"]);
  rmSync(OUT, { recursive: true, force: true });
  for (const [path, source] of files) {
    mkdirSync(dirname(join(OUT, path)), { recursive: true });
    writeFileSync(join(OUT, path), source);
  }
  writeFileSync(join(OUT, "auth.ts"), STUB_AUTH);
  writeFileSync(join(OUT, "tsconfig.json"), JSON.stringify(TSCONFIG, null, 2));
  try {
    execFileSync(join(PACKAGE, "node_modules/.bin/tsc"), ["-p", join(OUT, "tsconfig.json")], { encoding: "utf8" });
  } catch (e) {
    throw new Error(`the guide's code doesn't type-check:\n${(e as { stdout?: string }).stdout ?? e}`);
  }

  // The route: 401 without a session; with one, a 15-minute HS256 token for the user.
  process.env.CONFAB_JWT_SECRET = SECRET;
  const { setSession } = (await import(join(OUT, "auth.ts"))) as { setSession(s: unknown): void };
  const { GET } = (await import(join(OUT, "app/api/confab-token/route.ts"))) as { GET(): Promise<Response> };
  setSession(null);
  expect((await GET()).status).toBe(401);
  setSession({ user: { id: "alice", name: "Alice" } });
  const response = await GET();
  expect(response.status).toBe(200);
  expect(response.headers.get("cache-control")).toBe("no-store");
  const { token } = (await response.json()) as { token: string };
  const claims = decodeJwt(token);
  expect(claims.sub).toBe("alice");
  expect(claims.name).toBe("Alice");
  expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(15 * 60);

  // The browser side: `fetch("/api/confab-token")` reaches the route, as in the app.
  const realFetch = globalThis.fetch;
  let tokenRequests = 0;
  globalThis.fetch = (async (input: RequestInfo | URL, init?: RequestInit) => {
    if (String(input) === "/api/confab-token") {
      tokenRequests++;
      return GET();
    }
    return realFetch(input, init);
  }) as typeof fetch;
  const dom = new Window({ url: "http://localhost/" });
  const saved = { window: globalThis.window, document: globalThis.document };
  Object.assign(globalThis, { window: dom, document: dom.document });
  (globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;
  try {
    const { connectConfab } = (await import(join(OUT, "lib/confab.ts"))) as {
      connectConfab(url: string): ConfabClient;
    };
    const alice = await live(connectConfab(server.url));
    expect(alice.me?.id).toBe("alice");
    alice.close();

    // Bob writes to Alice; the guide's component shows it.
    const bob = await live(client(server, "bob"));
    const direct = await bob.createDirect("alice");
    await bob.send(direct.id, "hi from bob");

    const { Chat } = (await import(join(OUT, "app/chat/Chat.tsx"))) as {
      Chat: FunctionComponent<{ url: string; user: string }>;
    };
    const container = dom.document.createElement("div");
    dom.document.body.append(container);
    const root = createRoot(container as unknown as Element);
    await act(async () => root.render(createElement(Chat, { url: server.url, user: "alice" })));
    const text = () => container.textContent ?? "";
    await act(() => until(() => text().includes("(1)"), "the conversation with one unread"));
    await act(async () => (container.querySelector("li button") as unknown as HTMLButtonElement).click());
    await act(() => until(() => text().includes("bob: hi from bob"), "bob's message in the thread"));
    expect(tokenRequests).toBeGreaterThanOrEqual(2);

    // Alice signs out and Bob signs in, in the same page: the chat becomes Bob's, on a client of
    // his own (Alice's would refuse his token rather than mix the two accounts).
    const carol = await live(client(server, "carol"));
    await act(async () => {
      await carol.createGroup("alice and carol", ["alice"]);
      await until(() => text().includes("alice and carol"), "alice's group in her list");
    });
    setSession({ user: { id: "bob", name: "Bob" } });
    await carol.createGroup("bob and carol", ["bob"]);
    await act(async () => root.render(createElement(Chat, { url: server.url, user: "bob" })));
    await act(() => until(() => text().includes("bob and carol"), `bob's group in his list (shows: ${text()})`));
    expect(text()).not.toContain("alice and carol");
    expect(text()).not.toContain("sign in again");
    await act(async () => root.unmount());
  } finally {
    globalThis.fetch = realFetch;
    Object.assign(globalThis, saved);
  }
});

test("the docs give one answer on the secret: a dedicated one, never the app's NextAuth secret", () => {
  const docs = ["README.md", "docs/INTEGRATION.md", "docs/CONFIGURATION.md", "docs/DEPLOYMENT.md", "docs/SECURITY.md", "examples/nextjs/README.md", "clients/js/README.md"];
  for (const doc of docs) {
    const text = readFileSync(join(REPO_ROOT, doc), "utf8");
    // Reusing the session secret, suggested in words or in a command.
    expect(text, doc).not.toMatch(/(e\.g\.|for example|such as) (its|the app's|your app's) (NextAuth|Auth\.js|session) secret/i);
    expect(text, doc).not.toMatch(/CONFAB_JWT_SECRET=["']?\$\{?(NEXTAUTH|AUTH)_SECRET/);
  }
  for (const doc of ["README.md", "docs/INTEGRATION.md", "docs/CONFIGURATION.md"]) {
    expect(readFileSync(join(REPO_ROOT, doc), "utf8"), doc).toContain("openssl rand -hex 32");
  }
});
