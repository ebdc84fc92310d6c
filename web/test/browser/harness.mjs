// Test harness for the browser tests: a real sluiced (built from this
// checkout, or SLUICED_BIN) on a free loopback port with a fresh Postgres
// database of its own, seeded with `sluiced seed`; direct Connect calls
// from Node (JSON over fetch, no generated code, no Go); and Chromium via
// playwright-core. Every wait is bounded.
import { execFile, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { chromium } from "playwright-core";

const exec = promisify(execFile);

export const webDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const repoDir = path.resolve(webDir, "..");
export const resultsDir = path.join(webDir, "test-results");

/** buildServer returns the sluiced binary: SLUICED_BIN, or a fresh `go build`. */
export async function buildServer(tmp) {
  if (process.env.SLUICED_BIN) return process.env.SLUICED_BIN;
  const bin = path.join(tmp, "sluiced");
  await exec("go", ["build", "-o", bin, "./cmd/sluiced"], { cwd: repoDir, timeout: 10 * 60_000, maxBuffer: 16 << 20 });
  return bin;
}

/** freePort returns a TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Database is a fresh Postgres database on the test server:
 * SLUICE_TEST_DATABASE_URL (an admin URL), else 127.0.0.1:5432 as the
 * current OS user (trust auth), as the Go tests use. drop() removes it.
 */
export class Database {
  constructor() {
    this.admin = new URL(process.env.SLUICE_TEST_DATABASE_URL || "postgres://127.0.0.1:5432/postgres?sslmode=disable");
    this.name = `sluice_web_${randomBytes(5).toString("hex")}`;
    const u = new URL(this.admin);
    u.pathname = `/${this.name}`;
    this.url = u.toString();
  }

  async create() {
    await psql(this.admin.toString(), `CREATE DATABASE ${this.name}`);
    return this;
  }

  async drop() {
    await psql(this.admin.toString(), `DROP DATABASE IF EXISTS ${this.name} WITH (FORCE)`).catch((err) =>
      console.error(`drop database ${this.name}: ${err.message}`),
    );
  }
}

async function psql(url, sql) {
  try {
    await exec("psql", [url, "-v", "ON_ERROR_STOP=1", "-qc", sql], { timeout: 30_000 });
  } catch (err) {
    throw new Error(`psql: ${sql}: ${err.stderr || err.message} (is Postgres running on 127.0.0.1:5432, or SLUICE_TEST_DATABASE_URL set?)`);
  }
}

/** seed runs `sluiced seed` and returns the ids it printed. */
export async function seed(bin, db) {
  const { stdout } = await exec(bin, ["seed", "--database-url", db.url, "--nats-prefix", `seed${randomBytes(3).toString("hex")}`, "--log-level", "error"], {
    timeout: 120_000,
  });
  const m = stdout.match(/seeded organization (\S+) \(Acme\): #general (\S+), #random (\S+);/);
  if (!m) throw new Error(`unexpected seed output: ${stdout}`);
  return { org: m[1], general: m[2], random: m[3] };
}

/**
 * Server is one sluiced process. start() waits until it serves the web app
 * at /; stop() sends SIGTERM (streams end with `unavailable`) and waits.
 */
export class Server {
  /**
   * tls, if given, is {cert, key} (PEM files): the server serves HTTPS
   * (HTTP/2 and HTTP/1.1 by ALPN) instead of HTTP/1.1 and h2c.
   */
  constructor(bin, db, port, name = "sluiced", tls = undefined) {
    this.bin = bin;
    this.db = db;
    this.port = port;
    this.name = name;
    this.tls = tls;
    this.base = `${tls ? "https" : "http"}://127.0.0.1:${port}`;
    this.log = [];
    this.proc = undefined;
  }

  async start() {
    const proc = spawn(
      this.bin,
      // The paging test posts 5,000 messages as one user in seconds: far
      // past the production default of 300 a minute (docs/SECURITY.md).
      [
        "serve", "--addr", `127.0.0.1:${this.port}`, "--database-url", this.db.url, "--nats-prefix", `web${this.port}`, "--log-level", "info", "--rate-messages", "2000/1s,2000",
        ...(this.tls ? ["--tls-cert", this.tls.cert, "--tls-key", this.tls.key] : []),
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    this.proc = proc;
    live.add(proc);
    const keep = (chunk) => {
      this.log.push(chunk.toString());
      if (this.log.length > 2000) this.log.splice(0, 1000);
    };
    proc.stdout.on("data", keep);
    proc.stderr.on("data", keep);
    const exited = new Promise((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal })));
    this.exited = exited;
    exited.then(() => live.delete(proc));
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const done = await Promise.race([exited, delay(100).then(() => undefined)]);
      if (done) throw new Error(`${this.name} exited (${done.code ?? done.signal}) while starting:\n${this.tail()}`);
      try {
        const res = await fetch(`${this.base}/`, { signal: AbortSignal.timeout(2000) });
        const body = await res.text();
        if (res.ok && body.includes('id="app"')) return this;
        if (res.status === 404) {
          throw new Error(
            `${this.name} answers GET / with 404: it does not serve the web app. Pass the embedded web app as server.Config.Web (cmd/sluiced/web.go); server/web.go serves it as the fallback route.`,
          );
        }
      } catch (err) {
        if (String(err.message).includes("webHandler")) {
          await this.stop();
          throw err;
        }
      }
    }
    await this.stop();
    throw new Error(`${this.name} did not serve / within 60 s:\n${this.tail()}`);
  }

  async stop() {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill("SIGTERM");
    const done = await Promise.race([this.exited, delay(20_000).then(() => undefined)]);
    if (!done) {
      proc.kill("SIGKILL");
      await Promise.race([this.exited, delay(5_000)]);
    }
  }

  /** kill ends the process with SIGKILL (no shutdown at all) and waits until it is gone. */
  async kill() {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill("SIGKILL");
    await Promise.race([this.exited, delay(10_000)]);
  }

  tail(lines = 40) {
    return this.log.join("").split("\n").slice(-lines).join("\n");
  }

  saveLog() {
    mkdirSync(resultsDir, { recursive: true });
    writeFileSync(path.join(resultsDir, `${this.name}.log`), this.log.join(""));
  }
}

// Children still running when the test process exits are killed.
const live = new Set();
process.on("exit", () => {
  for (const p of live) p.kill("SIGKILL");
});

export function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** tempDir makes a temporary directory; remove it with rmSync(dir, {recursive: true}). */
export function tempDir() {
  return mkdtempSync(path.join(os.tmpdir(), "sluice-web-"));
}

export function removeDir(dir) {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * rpc makes one Connect unary call with JSON over HTTP/1.1, as any HTTP
 * client can. It resolves with the response message, or rejects with an
 * error carrying the Connect `code` ("permission_denied", …).
 */
export async function rpc(base, procedure, body = {}, token, extraHeaders = {}) {
  const headers = { "content-type": "application/json", ...extraHeaders };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${base}/${procedure}`, {
    method: "POST",
    headers,
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const json = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(`${procedure}: ${json.code ?? res.status}: ${json.message ?? ""}`);
    err.code = json.code;
    throw err;
  }
  return json;
}

/**
 * listScope returns every live record of a scope through SyncService.List
 * (pages of 500), oldest first: the order a client shows them in.
 */
export async function listScope(base, token, scope) {
  const out = [];
  for (let before = "0"; ; ) {
    const page = await rpc(base, "sluice.sync.v1.SyncService/List", { scope, beforeSeq: before, limit: 500 }, token);
    out.push(...(page.records ?? []));
    if (!page.nextBeforeSeq || page.nextBeforeSeq === "0") break;
    before = page.nextBeforeSeq;
  }
  return out.reverse();
}

/**
 * postMany posts texts to a channel with `concurrency` calls in flight
 * (commit order is then not text order: read it back with listScope).
 */
export async function postMany(base, token, channelId, texts, concurrency = 16) {
  let next = 0;
  const worker = async () => {
    while (next < texts.length) {
      const text = texts[next++];
      const key = { "idempotency-key": randomUUID() }; // the same on every retry: posted once
      for (let attempt = 1; ; attempt++) {
        try {
          await rpc(base, "sluice.message.v1.MessageService/PostMessage", { channelId, text }, token, key);
          break;
        } catch (err) {
          if (attempt >= 5 || !["unavailable", "resource_exhausted", "aborted", undefined].includes(err.code)) throw err;
          await delay(100 * attempt);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** login returns a session token for a development user. */
export async function login(base, username) {
  const password = { admin: "admin-pass" }[username] ?? `${username.toLowerCase()}-pass`;
  const res = await rpc(base, "sluice.auth.v1.AuthService/Login", { username, password });
  return res.token;
}

/** launchBrowser starts Debian's Chromium headless. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    headless: true,
    timeout: 60_000,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
    ],
  });
}

/**
 * openAs opens a new browser context (its own cookies, connections and
 * memory-held token) on the app and logs in as user through the form.
 */
export async function openAs(browser, base, user, { path: start = "/color", errors } = {}) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 760 }, deviceScaleFactor: 1 });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  page.on("pageerror", (err) => errors?.push(`${user}: ${err.message}`));
  await page.goto(base + start, { timeout: 15_000 });
  await page.locator(`button[data-user="${user}"]`).click();
  await page.locator('[data-testid="whoami"]').filter({ hasText: user }).waitFor();
  return { context, page };
}
