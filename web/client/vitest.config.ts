import { defineConfig } from "vitest/config";

// Unit tests of the client: no server, no browser (a fake server behind
// fetch, in-memory outbox storage).
export default defineConfig({
  test: {
    environment: "node",
    include: ["test/**/*.test.ts"],
    testTimeout: 10_000,
  },
});
