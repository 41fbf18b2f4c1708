// The example end to end, as its README runs it: confab with a generated secret and this app's
// origin allowed, the app built and started with confab's public URL, and two people in
// Chromium who sign in through Auth.js, chat (presence, typing, unread), and one reloads and
// finds the history. Needs CONFAB_BIN (else the debug build at the repository root) and
// Chromium (CHROMIUM_PATH, else /usr/bin/chromium); @confab/client comes from the tarball
// `npm pack` makes in clients/js (tests/js_suites.rs packs it and runs `npm ci` here first).

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import { chromium } from "playwright-core";

const APP = resolve(import.meta.dirname, "..");
const REPO = resolve(APP, "../..");
const CONFAB = process.env.CONFAB_BIN ?? join(REPO, "target/debug/confab");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const SCREENSHOTS = join(REPO, ".ci/artifacts/screenshots");
const NEXT = join(APP, "node_modules/next/dist/bin/next");
/** `E2E_NEXT=dev` or `E2E_NEXT=build` runs only that mode. */
const MODES = ["build", "dev"].filter((m) => !process.env.E2E_NEXT || process.env.E2E_NEXT === m);

const children = [];
const dirs = [];
let browser;
let confabUrl;
let appUrl;

async function freePort() {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

/** Starts a long-running process in its own process group (so it can be stopped with its children). */
function start(name, program, args, env) {
  const child = spawn(program, args, { cwd: APP, env: { ...process.env, ...env }, detached: true });
  let log = "";
  const keep = (chunk) => (log = (log + chunk).slice(-20_000));
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const entry = { name, child, log: () => log };
  children.push(entry);
  return entry;
}

/** Runs a command to completion; throws with its output when it fails. */
function run(program, args, env) {
  return new Promise((done, fail) => {
    const child = spawn(program, args, { cwd: APP, env: { ...process.env, ...env } });
    let log = "";
    child.stdout.on("data", (c) => (log += c));
    child.stderr.on("data", (c) => (log += c));
    child.on("exit", (code) => (code === 0 ? done(log) : fail(new Error(`${program} ${args.join(" ")} failed (${code}):\n${log}`))));
  });
}

async function until(check, what, timeoutMs = 30_000, entry) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (entry && entry.child.exitCode !== null) throw new Error(`${entry.name} exited:\n${entry.log()}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${entry ? `:\n${entry.log()}` : ""}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  assert.ok(existsSync(CONFAB), `no confab binary at ${CONFAB}: build it (cargo build) or set CONFAB_BIN`);
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install -y chromium, or set CHROMIUM_PATH`);
  // The app must run on the packed client, not a link to the sources (a link loads a second
  // React: "Invalid hook call").
  const installed = join(APP, "node_modules/@confab/client");
  assert.ok(existsSync(join(installed, "dist/esm/react.js")), "@confab/client is not installed: see README.md");
  assert.ok(!lstatSync(installed).isSymbolicLink(), "@confab/client is a symlink, not the packed tarball");
  // Without an integrity in the lockfile, `npm ci` reads the tarball afresh; with one, npm
  // installs its cached copy of that integrity: a stale client.
  const lock = JSON.parse(readFileSync(join(APP, "package-lock.json"), "utf8"));
  assert.equal(lock.packages["node_modules/@confab/client"].integrity, undefined, "package-lock.json pins the tarball's integrity: remove it");

  mkdirSync(SCREENSHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}, { timeout: 60_000 });

after(async () => {
  await browser?.close().catch(() => {});
  for (const entry of children) stop(entry);
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * confab and the app as the README runs them, on free ports, with a fresh database: `next dev`,
 * or a production build (`next build`, `next start`). Returns a function that stops both.
 */
async function serve(mode) {
  // One dedicated secret, shared by confab and the app's token route; Auth.js has its own.
  const secret = randomBytes(32).toString("hex");
  const confabPort = await freePort();
  const appPort = await freePort();
  confabUrl = `http://127.0.0.1:${confabPort}`;
  appUrl = `http://127.0.0.1:${appPort}`;
  const dir = mkdtempSync(join(tmpdir(), "confab-nextjs-"));
  dirs.push(dir);

  const confab = start("confab", CONFAB, [], {
    CONFAB_BIND: `127.0.0.1:${confabPort}`,
    CONFAB_DATA_DIR: dir,
    CONFAB_DATABASE_URL: `sqlite://${join(dir, "confab.db")}`,
    CONFAB_JWT_SECRET: secret,
    CONFAB_CORS_ORIGINS: appUrl,
    CONFAB_LOG: "warn",
  });
  const env = {
    AUTH_SECRET: randomBytes(32).toString("hex"),
    CONFAB_JWT_SECRET: secret,
    NEXT_PUBLIC_CONFAB_URL: confabUrl,
    NEXT_TELEMETRY_DISABLED: "1",
  };
  const listen = ["-p", String(appPort), "-H", "127.0.0.1"];
  let app;
  if (mode === "dev") {
    app = start("next dev", process.execPath, [NEXT, "dev", ...listen], env);
  } else {
    // NEXT_PUBLIC_* is compiled into the pages: build with this run's confab URL.
    const started = Date.now();
    await run(process.execPath, [NEXT, "build"], env);
    console.log(`next build: ${((Date.now() - started) / 1000).toFixed(1)}s`);
    // Production mode, where Auth.js trusts the Host header only when told.
    app = start("next start", process.execPath, [NEXT, "start", ...listen], { ...env, AUTH_TRUST_HOST: "true" });
  }
  await until(async () => (await fetch(`${confabUrl}/healthz`)).ok, "confab", 20_000, confab);
  await until(async () => (await fetch(`${appUrl}/signin`)).ok, "the app", 90_000, app);
  return () => {
    stop(app);
    stop(confab);
  };
}

function stop({ child }) {
  if (child.exitCode !== null) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** A person in a browser of their own; page errors and console errors are kept. */
async function person(viewport = { width: 1100, height: 720 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const errors = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && errors.push(`console: ${m.text()}`));
  page.on("response", (r) => r.status() >= 400 && errors.push(`HTTP ${r.status()}: ${r.url()}`));
  return { context, page, errors };
}

async function signIn(page, user, password) {
  await page.goto(`${appUrl}/chat`);
  await page.waitForURL(/\/signin/);
  await page.getByLabel("User").selectOption(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

const texts = async (locator) => (await locator.allInnerTexts()).map((t) => t.replace(/\s+/g, " ").trim());

for (const mode of MODES) {
  const what = mode === "dev" ? "next dev (StrictMode)" : "a production build";
  test(`${what}: two people sign in through Auth.js, chat, and one reloads and sees the history`, { timeout: 300_000 }, async () => {
    const stopAll = await serve(mode);
    try {
      await chat(mode);
    } finally {
      stopAll();
    }
  });
}

async function chat(mode) {
  const alice = await person();
  const bob = await person({ width: 390, height: 800 });

  // A wrong password is refused by the credentials provider.
  await signIn(alice.page, "alice", "wrong");
  await alice.page.getByRole("alert").filter({ hasText: "don't match" }).waitFor();

  await signIn(alice.page, "alice", "demo");
  await alice.page.waitForURL(/\/chat$/);
  await alice.page.getByText("Signed in as Alice").waitFor();
  await signIn(bob.page, "bob", "demo");
  await bob.page.waitForURL(/\/chat$/);
  await bob.page.getByText("No conversations yet.").waitFor();

  // Alice starts a chat with Bob, who is online, and writes.
  await alice.page.getByRole("button", { name: "Chat with Bob" }).click();
  const aliceThread = alice.page.getByRole("region", { name: "Conversation with Bob" });
  await aliceThread.getByText("Bob: online").waitFor();
  await aliceThread.getByRole("textbox", { name: "Message" }).fill("hello bob");
  await aliceThread.getByRole("textbox", { name: "Message" }).press("Enter");
  await aliceThread.getByRole("log").getByText("hello bob").waitFor();

  // Bob's list shows the new conversation, unread.
  const bobList = bob.page.getByRole("navigation", { name: "Conversations" });
  await bobList.getByRole("button", { name: /Alice/ }).getByLabel("1 unread").waitFor();
  await bob.page.screenshot({ path: join(SCREENSHOTS, `nextjs-${mode}-bob-unread.png`) });
  await bobList.getByRole("button", { name: /Alice/ }).click();
  const bobThread = bob.page.getByRole("region", { name: "Conversation with Alice" });
  await bobThread.getByRole("log").getByText("hello bob").waitFor();
  await bobThread.getByText("Alice: online").waitFor();
  // Read: the badge goes.
  await bobList.getByLabel("1 unread").waitFor({ state: "detached" });

  // Bob types: Alice sees it; then he sends.
  await bobThread.getByRole("textbox", { name: "Message" }).pressSequentially("hi al", { delay: 30 });
  await aliceThread.getByText("Bob is typing…").waitFor();
  await alice.page.screenshot({ path: join(SCREENSHOTS, `nextjs-${mode}-alice-typing.png`) });
  await bobThread.getByRole("textbox", { name: "Message" }).pressSequentially("ice");
  await bobThread.getByRole("button", { name: "Send" }).click();
  await aliceThread.getByRole("log").getByText("hi alice").waitFor();
  await aliceThread.getByText("Bob is typing…").waitFor({ state: "detached" });
  assert.deepEqual(await texts(aliceThread.getByRole("log").getByRole("listitem")), ["You hello bob", "Bob hi alice"]);

  // Bob reloads: still signed in (the Auth.js session), and the conversation's history is there.
  await bob.page.reload();
  await bobList.getByRole("button", { name: /Alice/ }).click();
  await bobThread.getByRole("log").getByText("hi alice").waitFor();
  assert.deepEqual(await texts(bobThread.getByRole("log").getByRole("listitem")), ["Alice hello bob", "You hi alice"]);
  await bob.page.screenshot({ path: join(SCREENSHOTS, `nextjs-${mode}-bob-after-reload.png`) });

  // And it is live again: Alice's next message arrives.
  await aliceThread.getByRole("textbox", { name: "Message" }).fill("welcome back");
  await aliceThread.getByRole("textbox", { name: "Message" }).press("Enter");
  await bobThread.getByRole("log").getByText("welcome back").waitFor();
  await alice.page.screenshot({ path: join(SCREENSHOTS, `nextjs-${mode}-alice.png`) });

  // No React errors ("Invalid hook call", hydration mismatches) and no failed requests.
  assert.deepEqual(alice.errors, []);
  assert.deepEqual(bob.errors, []);
  await alice.context.close();
  await bob.context.close();
}
