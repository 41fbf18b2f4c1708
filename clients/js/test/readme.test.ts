// The README's Node snippet, run as its reader would: extracted from README.md (so the two can't
// drift) into `try.mjs`, with tokens minted by `confab token` as the README says, against a real
// server. It must print the message and exit; with a refused token or no tokens, it must say
// why and exit, not hang.

import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { afterAll, beforeAll, expect, test } from "vitest";

import { binary, REPO_ROOT, SECRET, startServer, type TestServer } from "./server.js";

// Inside the package, so `socket.io-client` resolves as in a folder where it was installed.
const DIR = join(import.meta.dirname, "../.readme-check");
const SCRIPT = join(DIR, "try.mjs");

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
  const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
  const blocks = [...readme.matchAll(/```js\n(\/\/ try\.mjs[\s\S]*?)```/g)].map((m) => m[1]);
  expect(blocks).toHaveLength(1);
  mkdirSync(DIR, { recursive: true });
  writeFileSync(SCRIPT, blocks[0]!);
});
afterAll(async () => {
  await server.dispose();
  rmSync(DIR, { recursive: true, force: true });
});

/** A token as the README mints it: `confab token`, with the server's secret. */
function mint(sub: string, name: string): string {
  return execFileSync(binary(), ["token", "--sub", sub, "--name", name], {
    env: { PATH: process.env.PATH ?? "", CONFAB_JWT_SECRET: SECRET, CONFAB_DATA_DIR: server.dir },
    encoding: "utf8",
  }).trim();
}

/** Runs `node try.mjs`; resolves with how it ended, or after `timeoutMs` with `hung: true`. */
function runScript(env: Record<string, string>, timeoutMs = 15_000) {
  return new Promise<{ code: number | null; stdout: string; stderr: string; hung: boolean }>((done) => {
    const child = spawn(process.execPath, [SCRIPT], { cwd: DIR, env: { PATH: process.env.PATH ?? "", ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      done({ code: null, stdout, stderr, hung: true });
    }, timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr, hung: false });
    });
  });
}

test("with both tokens it prints Alice's message and exits", async () => {
  const result = await runScript({
    CONFAB_URL: server.url,
    ALICE_TOKEN: mint("alice", "Alice"),
    BOB_TOKEN: mint("bob", "Bob"),
  });
  expect(result).toMatchObject({ hung: false, code: 0, stdout: "alice: hello, bob\n" });
});

test("a refused token is reported and the script exits", async () => {
  const result = await runScript({ CONFAB_URL: server.url, ALICE_TOKEN: "not-a-token", BOB_TOKEN: mint("bob", "Bob") });
  expect(result.hung).toBe(false);
  expect(result.code).toBe(1);
  expect(result.stderr).toContain(`cannot connect to ${server.url}: unauthorized`);
});

test("without tokens it says which variables to set", async () => {
  const result = await runScript({ CONFAB_URL: server.url });
  expect(result.hung).toBe(false);
  expect(result.code).not.toBe(0);
  expect(result.stderr).toContain("set ALICE_TOKEN and BOB_TOKEN");
});
