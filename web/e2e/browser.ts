// Headless Chromium from the system (Debian's `chromium`), driven by playwright-core: npm's own
// browser downloads don't work everywhere this runs.

import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";

import { chromium, type Browser } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
/** Where screenshots go: `CONFAB_SCREENSHOTS`, else .ci/artifacts/screenshots (not committed). */
export const SCREENSHOTS = process.env.CONFAB_SCREENSHOTS ?? resolve(import.meta.dirname, "../../.ci/artifacts/screenshots");

export async function launch(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: install it (apt-get install -y chromium) or set CHROMIUM_PATH`);
  }
  mkdirSync(SCREENSHOTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

export function screenshotPath(name: string): string {
  return join(SCREENSHOTS, `${name}.png`);
}
