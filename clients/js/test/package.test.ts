// The package's shape: React stays behind its own entry point.

import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { expect, test } from "vitest";

const root = join(import.meta.dirname, "..");

test("only the react entry point imports react, which is an optional peer", () => {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  expect(Object.keys(pkg.exports)).toEqual([".", "./react", "./package.json"]);
  expect(pkg.dependencies.react).toBeUndefined();
  expect(pkg.peerDependenciesMeta.react.optional).toBe(true);
  const files = readdirSync(join(root, "src"), { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"));
  const importers = files.filter((f) => /from "react(-dom)?(\/[^"]*)?"/.test(readFileSync(join(root, "src", f), "utf8")));
  expect(importers).toEqual(["react.ts"]);
});

test("the built package loads in Node as ES modules, both entry points", async () => {
  const { execFileSync } = await import("node:child_process");
  const { rmSync } = await import("node:fs");
  // Inside the package, so its dependencies resolve as they would for an installed package.
  const out = join(root, ".dist-check");
  try {
    execFileSync(join(root, "node_modules/.bin/tsc"), ["-p", join(root, "tsconfig.build.json"), "--outDir", out]);
    // Plain Node resolution (no bundler): every relative import must name its .js file.
    const script = `const m = await import(${JSON.stringify(join(out, "index.js"))});
      const r = await import(${JSON.stringify(join(out, "react.js"))});
      console.log(typeof m.connect, typeof m.ConfabError, typeof r.useConversation, typeof r.ConfabProvider);`;
    const printed = execFileSync(process.execPath, ["--input-type=module", "-e", script], { cwd: root, encoding: "utf8" });
    expect(printed.trim()).toBe("function function function function");
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
