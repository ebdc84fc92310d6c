// Makes sure the browser tests have a Chromium: Debian's `chromium` package
// at /usr/bin/chromium (Playwright's own browser downloads are not used).
// Installs it with apt-get when missing (root, or passwordless sudo).
// Set CHROMIUM_PATH to use another binary.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";

export const chromiumPath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

function run(cmd, args) {
  execFileSync(cmd, args, { stdio: "inherit", timeout: 15 * 60_000, env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
}

if (!existsSync(chromiumPath)) {
  if (process.env.CHROMIUM_PATH) {
    console.error(`setup: CHROMIUM_PATH=${chromiumPath} does not exist`);
    process.exit(1);
  }
  console.log("setup: /usr/bin/chromium is missing; installing Debian's chromium package");
  const sudo = process.getuid?.() === 0 ? [] : ["sudo", "-n"];
  const apt = (...args) => (sudo.length ? run(sudo[0], [...sudo.slice(1), "apt-get", ...args]) : run("apt-get", args));
  try {
    apt("update", "-qq");
    apt("install", "-y", "-qq", "chromium");
  } catch (err) {
    console.error(`setup: could not install chromium (${err.message}); install it with 'apt-get install chromium'`);
    process.exit(1);
  }
}
const version = execFileSync(chromiumPath, ["--version"], { encoding: "utf8", timeout: 30_000, stdio: ["ignore", "pipe", "ignore"] }).trim();
console.log(`setup: ${version}`);
