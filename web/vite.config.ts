import { defineConfig } from "vite";

// The demo app (src/app) builds straight into cmd/sluiced/webdist, which
// sluiced embeds and serves at /. It imports the workspace package
// @sluice/client from its build (client/dist), which `npm run build` and
// `npm run dev` make first. `npm run dev` proxies the RPCs to a running
// sluiced (SLUICE_URL, default http://localhost:8080).
export default defineConfig({
  build: {
    outDir: "../cmd/sluiced/webdist",
    emptyOutDir: true,
    target: "es2022",
    reportCompressedSize: false,
  },
  server: {
    proxy: {
      "^/[a-z][a-z0-9_]*(\\.[a-z0-9_]+)+\\.[A-Z]\\w*/": process.env.SLUICE_URL ?? "http://localhost:8080",
    },
  },
});
