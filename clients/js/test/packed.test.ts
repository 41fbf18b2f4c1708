// The package as npm users get it: `npm pack` (which builds it through `prepare`), the tarball
// installed into a fresh project outside this repository, and used there the ways apps use it:
// imported from Node as ES modules and as CommonJS, both entry points, the React one in Node
// without a DOM (server rendering), and type-checked under each of TypeScript's module
// resolutions. publint, "are the types wrong" and `npm publish --dry-run` check the rest.

import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, expect, test } from "vitest";

const PACKAGE = join(import.meta.dirname, "..");
const pkg = JSON.parse(readFileSync(join(PACKAGE, "package.json"), "utf8")) as {
  name: string;
  version: string;
  devDependencies: Record<string, string>;
};
const bin = (name: string) => join(PACKAGE, "node_modules/.bin", name);

let work: string;
let tarball: string;
let packed: string[];
let project: string;

function sh(program: string, args: string[], cwd: string): string {
  try {
    return execFileSync(program, args, {
      cwd,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1", npm_config_audit: "false", npm_config_fund: "false" },
    });
  } catch (e) {
    const { stdout, stderr } = e as { stdout?: string; stderr?: string };
    throw new Error(`\`${program} ${args.join(" ")}\` failed in ${cwd}:\n${stdout ?? ""}\n${stderr ?? e}`);
  }
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "confab-pack-"));
  const [info] = JSON.parse(sh("npm", ["pack", "--json", "--pack-destination", work], PACKAGE)) as {
    filename: string;
    files: { path: string }[];
  }[];
  tarball = join(work, info!.filename);
  packed = info!.files.map((f) => f.path);

  // A stranger's project: nothing resolves from this repository.
  project = join(work, "app");
  mkdirSync(project);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "scratch", version: "1.0.0", private: true }));
  const dev = pkg.devDependencies;
  sh(
    "npm",
    [
      "install",
      "--prefer-offline",
      tarball,
      `react@${dev.react}`,
      `react-dom@${dev["react-dom"]}`,
      `typescript@${dev.typescript}`,
      `@types/react@${dev["@types/react"]}`,
      `@types/react-dom@${dev["@types/react-dom"]}`,
      `@types/node@${dev["@types/node"]}`,
    ],
    project,
  );
}, 240_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

test("the tarball holds built JavaScript and declarations for both formats, and no tests", () => {
  for (const format of ["esm", "cjs"]) {
    for (const entry of ["index", "react"]) {
      expect(packed).toContain(`dist/${format}/${entry}.js`);
      expect(packed).toContain(`dist/${format}/${entry}.d.ts`);
    }
  }
  expect(packed).toContain("dist/cjs/package.json");
  expect(packed.filter((f) => f.startsWith("test/") || f.includes("node_modules"))).toEqual([]);
  // Installed as a copy, not a link to this checkout (a link would load this checkout's React).
  const installed = join(project, "node_modules/@confab/client/package.json");
  expect(JSON.parse(readFileSync(installed, "utf8")).version).toBe(pkg.version);
  // The React entry stays a client module for React Server Components in both formats: the
  // directive opens the file (after CommonJS's own "use strict").
  for (const format of ["esm", "cjs"]) {
    const source = readFileSync(join(project, `node_modules/@confab/client/dist/${format}/react.js`), "utf8");
    expect(source).toMatch(/^(?:"use strict";\s*)?"use client";/);
  }
  expect(sh("node", ["-p", `require("fs").lstatSync(${JSON.stringify(join(project, "node_modules/@confab/client"))}).isSymbolicLink()`], project).trim()).toBe("false");
});

// What both module formats run: both entries load, a client made without connecting stays
// unconnected, and the hooks render on the server (no DOM here).
const USE = (load: string) => `${load}
const client = confab.connect({ getToken: () => { throw new Error("no token wanted") }, autoConnect: false });
const Probe = () => react.createElement("p", null, hooks.useConnectionState() + " " + hooks.useConversations().items.length);
const html = server.renderToString(react.createElement(hooks.ConfabProvider, { client }, react.createElement(Probe)));
setTimeout(() => {
  console.log([typeof confab.ConfabError, client.socket.active, client.state, html].join(" | "));
  client.close();
}, 300);
`;

test("a fresh project imports both entries as ES modules, and renders the hooks on the server", () => {
  writeFileSync(
    join(project, "use.mjs"),
    USE(`import * as confab from "@confab/client";
import * as hooks from "@confab/client/react";
import * as react from "react";
import * as server from "react-dom/server";`),
  );
  expect(sh("node", ["use.mjs"], project).trim()).toBe("function | false | connecting | <p>connecting 0</p>");
});

test("a fresh project requires both entries as CommonJS", () => {
  writeFileSync(
    join(project, "use.cjs"),
    USE(`const confab = require("@confab/client");
const hooks = require("@confab/client/react");
const react = require("react");
const server = require("react-dom/server");
if (!require.resolve("@confab/client").includes("/dist/cjs/")) throw new Error("not the CommonJS build");
if (!require("@confab/client/package.json").version) throw new Error("no ./package.json export");`),
  );
  expect(sh("node", ["use.cjs"], project).trim()).toBe("function | false | connecting | <p>connecting 0</p>");
});

// Typed use of both entries; each @ts-expect-error fails the check if the types went missing
// (an untyped module is `any`, where nothing is an error).
const TYPED = `import { connect, ConfabError, type ConfabClient, type ConnectionState, type Message } from "@confab/client";
import { ConfabProvider, useConversation, type useConversations } from "@confab/client/react";

const client: ConfabClient = connect({ url: "http://localhost:3001", getToken: async () => "token", autoConnect: false });
client.connect();
const state: ConnectionState = client.state;
const sent: Promise<Message> = client.send("c1", "hello");
const error: ConfabError | undefined = undefined;
const list: ReturnType<typeof useConversations>["items"] = [];
export const used = [state, sent, error, list, ConfabProvider, useConversation];

// @ts-expect-error: getToken is required
connect({ url: "http://localhost:3001" });
// @ts-expect-error: a ConnectionState is one of a few words
const wrong: ConnectionState = "sleeping";
export { wrong };
`;

test.each([
  { resolution: "NodeNext (ESM)", module: "NodeNext", moduleResolution: "NodeNext", file: "typed.mts" },
  { resolution: "NodeNext (CommonJS)", module: "NodeNext", moduleResolution: "NodeNext", file: "typed.cts" },
  { resolution: "Bundler", module: "ESNext", moduleResolution: "Bundler", file: "typed.ts" },
  { resolution: "Node10", module: "CommonJS", moduleResolution: "Node10", file: "typed.ts" },
])("a TypeScript file type-checks against the installed package under $resolution resolution", (c) => {
  const dir = join(project, `ts-${c.resolution.replace(/\W+/g, "-")}`);
  mkdirSync(dir);
  writeFileSync(join(dir, c.file), TYPED);
  writeFileSync(
    join(dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        module: c.module,
        moduleResolution: c.moduleResolution,
        target: "ES2022",
        lib: ["ES2022", "DOM"],
        strict: true,
        noEmit: true,
        resolveJsonModule: true,
        esModuleInterop: true,
        types: [],
      },
      files: [c.file],
    }),
  );
  sh(join(project, "node_modules/.bin/tsc"), ["-p", dir], project);
});

test("publint finds nothing to fix", () => {
  const out = sh(bin("publint"), ["run", "--strict", tarball], PACKAGE);
  expect(out).toContain("All good!");
});

test("are the types wrong: every entry resolves to matching types under every resolution", () => {
  // Exits 1 when it finds problems; the JSON report says which.
  const { stdout } = spawnSync(bin("attw"), [tarball, "--format", "json"], { cwd: PACKAGE, encoding: "utf8" });
  const report = JSON.parse(stdout) as { problems?: Record<string, unknown[]>; analysis: { entrypoints: object } };
  expect(report.problems ?? {}).toEqual({});
  expect(Object.keys(report.analysis.entrypoints).sort()).toEqual([".", "./package.json", "./react"]);
});

test("npm publish --dry-run is clean", () => {
  const { status, stdout, stderr } = spawnSync("npm", ["publish", "--dry-run"], { cwd: PACKAGE, encoding: "utf8" });
  expect(status, stderr).toBe(0);
  expect(stdout).toContain(`+ ${pkg.name}@${pkg.version}`);
  // No warning but the one that a real publish needs a login, which this machine has not.
  const warnings = stderr.split("\n").filter((l) => /^npm (warn|error|ERR)/i.test(l) && !/requires you to be logged in/.test(l));
  expect(warnings).toEqual([]);
});
