// Builds the app into dist/ (or the folder given as the first argument): app.js, app.css,
// favicon.svg and index.html, whose asset URLs carry a hash of their content so the server can
// let browsers cache them for good. The output depends only on the sources and the locked
// package versions: no timestamps, no absolute paths, so CI can rebuild and compare
// (check-bundle.sh).

import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, "dist"));
const client = resolve(here, "../clients/js/src");

mkdirSync(out, { recursive: true });
const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { app: "src/main.tsx" },
  outdir: out,
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2020",
  jsx: "automatic",
  jsxImportSource: "preact",
  // The client library from source (its socket.io-client comes from clients/js/node_modules),
  // and React's API from Preact, so the app uses @confab/client/react as any React app would.
  alias: {
    "@confab/client/react": join(client, "react.ts"),
    "@confab/client": join(client, "index.ts"),
    react: "preact/compat",
    "react-dom": "preact/compat",
  },
  define: { "process.env.NODE_ENV": '"production"' },
  legalComments: "eof",
  charset: "utf8",
  sourcemap: false,
  metafile: false,
  logLevel: "warning",
});
if (result.errors.length > 0) process.exit(1);

copyFileSync(join(here, "src/favicon.svg"), join(out, "favicon.svg"));
const hash = (file) => createHash("sha256").update(readFileSync(join(out, file))).digest("hex").slice(0, 16);
const html = readFileSync(join(here, "src/index.html"), "utf8")
  .replace("/assets/app.js", `/assets/app.js?v=${hash("app.js")}`)
  .replace("/assets/app.css", `/assets/app.css?v=${hash("app.css")}`);
writeFileSync(join(out, "index.html"), html);
