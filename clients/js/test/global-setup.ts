// Builds the server once before the tests (unless CONFAB_BIN names a binary already built, as
// the Rust wrapper in tests/js_suites.rs does).

import { execFileSync } from "node:child_process";
import { REPO_ROOT } from "./server.js";

export default function setup(): void {
  if (process.env.CONFAB_BIN) return;
  execFileSync("cargo", ["build", "--bin", "confab"], { cwd: REPO_ROOT, stdio: "inherit" });
}
