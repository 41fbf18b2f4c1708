import { resolve } from "node:path";

import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: {
    alias: [
      // For the code extracted from docs/INTEGRATION.md (test/docs.test.ts): the Next.js app's
      // `@/…` imports, and the package imported by name as an app would.
      { find: /^@\//, replacement: `${resolve(import.meta.dirname, ".docs-check")}/` },
      { find: /^@confab\/client\/react$/, replacement: resolve(import.meta.dirname, "src/react.ts") },
      { find: /^@confab\/client$/, replacement: resolve(import.meta.dirname, "src/index.ts") },
    ],
  },
  test: {
    include: ["test/**/*.test.{ts,tsx}"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Each file starts its own server; two at a time suits a 2-core machine.
    maxWorkers: 2,
  },
});
