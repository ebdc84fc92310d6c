// Checks the package as an app team gets it: `npm pack` makes a tarball
// that installs in a scratch project outside this tree (with its peer
// dependencies at the versions pinned here, from the npm cache or the
// registry), type-checks against its declarations under both
// "moduleResolution": "nodenext" and "bundler" (an app's code and the
// README's example), and imports in Node.
// Run by `npm test` (root) and `npm run test:pack` (here).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const pkgDir = path.resolve(here, "..");
const pkg = JSON.parse(readFileSync(path.join(pkgDir, "package.json"), "utf8"));
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");

// npm passes its settings to scripts as npm_* variables; a nested npm
// would take `--workspace` and the like from them.
const env = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !/^npm_(config_(workspaces?|include_workspace_root)|package_|lifecycle_)/i.test(k)),
);

function run(cmd, args, cwd) {
  return execFileSync(cmd, args, { cwd, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 5 * 60_000 });
}

// The app's code: the public API only, by package name.
const app = `
import { Sluice, MemoryStorage, payloadAs, type Entry, type StreamStatus, type Update } from "@sluice/client";
import { Color, GlobalColorSchema } from "@sluice/client/gen/sluice/color/v1/color_pb";
import { MessageService } from "@sluice/client/gen/sluice/message/v1/message_pb";

export async function main(): Promise<Color | undefined> {
  const sluice = new Sluice({ baseUrl: "https://chat.example.com" });
  await sluice.login("userA", "usera-pass");
  const sub = sluice.subscribe({ records: ["global-color"], scopes: [{ scope: "channel/c1", limit: 50 }] }, {
    onUpdate: (updates: Update[]) => void updates,
    onStatus: (status: StreamStatus) => void status,
  });
  const history = sluice.history(sub, "channel/c1");
  if (!history.exhausted) await history.loadOlder();
  const entry: Entry | undefined = sub.get("global-color");
  const res = await sluice.color.setColor({ color: Color.GREEN });
  await sub.waitForVersion(res.written!);
  // @ts-expect-error a color is a Color, not a string (fails if the types were lost to any)
  await sluice.color.setColor({ color: "green" });
  const outbox = sluice.openOutbox({ storage: new MemoryStorage() });
  const { result } = outbox.enqueue(MessageService.method.postMessage, { channelId: "c1", text: "hi" });
  const posted = await result;
  void posted.written;
  sub.close();
  await sluice.logout();
  return payloadAs(entry, GlobalColorSchema)?.color;
}
`;

// Node loads the ESM build: every import resolves (no extensionless paths).
const smoke = `
import { Sluice, isMutating } from "@sluice/client";
import { ColorService, Color } from "@sluice/client/gen/sluice/color/v1/color_pb";
const sluice = new Sluice({ baseUrl: "http://127.0.0.1:9" });
if (typeof sluice.subscribe !== "function") throw new Error("no subscribe");
if (!isMutating(ColorService.method.setColor)) throw new Error("setColor is not mutating");
if (Color.GREEN === undefined) throw new Error("no enum");
console.log("ok");
`;

function tsconfig(module, moduleResolution) {
  return JSON.stringify({
    compilerOptions: {
      target: "ES2022", lib: ["ES2022", "DOM"], module, moduleResolution, strict: true, noEmit: true,
      types: [], skipLibCheck: false,
    },
    files: ["app.ts", "example.ts"],
  });
}

test("npm pack makes a tarball that installs, type-checks and loads in a scratch project", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sluice-client-pack-"));
  try {
    const [packed] = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", dir], pkgDir));
    const files = packed.files.map((f) => f.path);
    for (const f of ["package.json", "README.md", "dist/index.js", "dist/index.d.ts", "dist/gen/sluice/color/v1/color_pb.d.ts"]) {
      assert.ok(files.includes(f), `tarball lacks ${f}`);
    }
    assert.deepEqual(files.filter((f) => !f.startsWith("dist/") && f !== "package.json" && f !== "README.md"), [], "tarball holds only dist/, README.md, package.json");

    const project = path.join(dir, "app");
    mkdirSync(project);
    writeFileSync(path.join(project, "package.json"), JSON.stringify({ name: "scratch-app", private: true, type: "module" }));
    const peers = Object.keys(pkg.peerDependencies).map((name) => `${name}@${pkg.devDependencies[name]}`);
    run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error", path.join(dir, packed.filename), ...peers], project);

    writeFileSync(path.join(project, "app.ts"), app);
    // The README's example, as a user would paste it.
    const readme = readFileSync(path.join(pkgDir, "README.md"), "utf8");
    const example = /```ts\n([\s\S]*?)```/.exec(readme);
    assert.ok(example, "README.md has a ts example");
    writeFileSync(path.join(project, "example.ts"), example[1] + "export {};\n");
    for (const [module, resolution] of [["nodenext", "nodenext"], ["esnext", "bundler"]]) {
      writeFileSync(path.join(project, "tsconfig.json"), tsconfig(module, resolution));
      try {
        run(process.execPath, [tsc, "-p", "tsconfig.json"], project);
      } catch (err) {
        assert.fail(`tsc (${resolution}) failed:\n${err.stdout}${err.stderr}`);
      }
    }

    writeFileSync(path.join(project, "smoke.mjs"), smoke);
    assert.equal(run(process.execPath, ["smoke.mjs"], project).trim(), "ok");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
