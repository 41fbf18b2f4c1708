// The package's shape: React stays behind its own entry point.

import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { expect, test } from "vitest";

const root = join(import.meta.dirname, "..");

test("only the react entry point imports react, which is an optional peer", () => {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  expect(Object.keys(pkg.exports)).toEqual([".", "./react"]);
  expect(pkg.dependencies.react).toBeUndefined();
  expect(pkg.peerDependenciesMeta.react.optional).toBe(true);
  const files = readdirSync(join(root, "src"), { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"));
  const importers = files.filter((f) => /from "react(-dom)?(\/[^"]*)?"/.test(readFileSync(join(root, "src", f), "utf8")));
  expect(importers).toEqual(["react.ts"]);
});
