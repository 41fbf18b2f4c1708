// Builds the package into dist/: ES modules (dist/esm) and CommonJS (dist/cjs), each with its
// type declarations. Run by `npm run build` and by `prepare`, so `npm pack`, `npm publish` and an
// install from a git checkout all ship JavaScript built from the sources at hand.

import { execFileSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const root = join(import.meta.dirname, "..");
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");

// Nothing stale: a file removed from src/ must not linger in the package.
rmSync(join(root, "dist"), { recursive: true, force: true });
for (const project of ["tsconfig.build.json", "tsconfig.cjs.json"]) {
  execFileSync(process.execPath, [tsc, "-p", join(root, project)], { cwd: root, stdio: "inherit" });
}
// The package is "type": "module"; this makes Node (and TypeScript) read dist/cjs as CommonJS.
writeFileSync(join(root, "dist/cjs/package.json"), `${JSON.stringify({ type: "commonjs" }, null, 2)}\n`);
