// Test harness: a real confab server (the binary built by `cargo build`) on a free port, with a
// fresh SQLite database, and HS256 tokens signed with its secret.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

import { SignJWT } from "jose";

export const SECRET = "confab-js-test-secret-0123456789";
export const REPO_ROOT = resolve(import.meta.dirname, "../../..");

/** The confab binary: `CONFAB_BIN`, else the debug build (globalSetup builds it). */
export function binary(): string {
  return process.env.CONFAB_BIN ?? join(REPO_ROOT, "target/debug/confab");
}

export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => done(port));
    });
  });
}

export interface ServerOptions {
  /** Extra `CONFAB_*` settings. */
  env?: Record<string, string>;
  /** Sign tokens with this secret (default: `SECRET`); `null` runs in local mode. */
  secret?: string | null;
}

/** A running confab. `stop()` then `start()` restarts it on the same port and database. */
export class TestServer {
  readonly dir = mkdtempSync(join(tmpdir(), "confab-js-"));
  port = 0;
  private child: ChildProcess | undefined;
  private log = "";

  constructor(private readonly options: ServerOptions = {}) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    if (this.port === 0) this.port = await freePort();
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "",
      CONFAB_BIND: `127.0.0.1:${this.port}`,
      CONFAB_DATA_DIR: this.dir,
      CONFAB_DATABASE_URL: `sqlite://${join(this.dir, "c.db")}`,
      CONFAB_LOG: process.env.CONFAB_TEST_LOG ?? "warn",
      // Tests send in bursts far beyond a person's pace; the rate-limit test sets its own.
      CONFAB_RATE_SEND: "10000/10000",
      CONFAB_RATE_TYPING: "10000/10000",
      CONFAB_RATE_OTHER: "10000/10000",
      CONFAB_RATE_MEMBERS: "100000/100000",
      CONFAB_RATE_CONNECT_PER_IP: "10000/10000",
      ...(this.options.secret !== null && { CONFAB_JWT_SECRET: this.options.secret ?? SECRET }),
      ...this.options.env,
    };
    const child = spawn(binary(), [], { env, stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    const keep = (chunk: Buffer) => {
      this.log = (this.log + chunk.toString()).slice(-20_000);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    const exited = new Promise<never>((_, fail) =>
      child.once("exit", (code) => fail(new Error(`confab exited (${code}) while starting:\n${this.log}`))),
    );
    exited.catch(() => {});
    await Promise.race([this.waitHealthy(), exited]);
    return this;
  }

  /** Stops the process (SIGKILL: like a crash, no goodbyes to the clients). */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    this.child = undefined;
    await new Promise<void>((done) => {
      child.once("exit", () => done());
      child.kill("SIGKILL");
    });
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  logs(): string {
    return this.log;
  }

  /** A token for `sub`, valid for `ttlSecs` (default an hour), signed with the server's secret. */
  async token(sub: string, opts: { ttlSecs?: number; name?: string; secret?: string } = {}): Promise<string> {
    return token(sub, { ...opts, secret: opts.secret ?? this.options.secret ?? SECRET });
  }

  private async waitHealthy(): Promise<void> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        const r = await fetch(`${this.url}/healthz`);
        if (r.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`confab did not become healthy:\n${this.log}`);
      await sleep(50);
    }
  }
}

/**
 * Holds SQLite's write lock on the server's database from another process, as a long write by
 * another program would: the server's writes wait out their busy timeout (5 s) and are answered
 * `unavailable`, while reads go on (WAL). `release()` lets writes through again. Python's
 * sqlite3 module holds it (CPython is on every machine of this project's kind).
 */
export async function lockDatabase(server: TestServer): Promise<{ release: () => Promise<void> }> {
  const script = [
    "import sqlite3, sys",
    "db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)",
    "db.execute('BEGIN IMMEDIATE')",
    "print('locked', flush=True)",
    "sys.stdin.read()",
    "db.execute('ROLLBACK')",
  ].join("\n");
  const holder = spawn("python3", ["-c", script, join(server.dir, "c.db")], { stdio: ["pipe", "pipe", "pipe"] });
  const exited = new Promise<void>((done) => holder.once("exit", () => done()));
  await new Promise<void>((done, fail) => {
    let errors = "";
    holder.once("error", (e) => fail(new Error(`python3 is needed to lock the database: ${e.message}`)));
    holder.stderr.on("data", (chunk: Buffer) => (errors += chunk.toString()));
    holder.once("exit", (code) => fail(new Error(`the lock holder exited (${code}): ${errors}`)));
    holder.stdout.on("data", (chunk: Buffer) => chunk.toString().includes("locked") && done());
  });
  return {
    release: async () => {
      holder.stdin.end();
      await exited;
    },
  };
}

export async function startServer(options: ServerOptions = {}): Promise<TestServer> {
  return new TestServer(options).start();
}

export async function token(
  sub: string,
  opts: { ttlSecs?: number; name?: string; secret?: string } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ name: opts.name ?? `User ${sub}` })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuedAt(now)
    .setExpirationTime(now + (opts.ttlSecs ?? 3600))
    .sign(new TextEncoder().encode(opts.secret ?? SECRET));
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a truthy value, or fails after `timeoutMs`. */
export async function until<T>(
  check: () => T | undefined | false | null | Promise<T | undefined | false | null>,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A token from a local-mode server's dev sign-in (`POST /api/dev/token`). */
export async function devToken(server: TestServer, sub: string, name?: string): Promise<string> {
  const response = await fetch(`${server.url}/api/dev/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ sub, name }),
  });
  const body = (await response.json()) as { ok: boolean; data: { token: string } };
  if (!body.ok) throw new Error(`dev sign-in refused: ${JSON.stringify(body)}`);
  return body.data.token;
}
