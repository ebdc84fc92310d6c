// The demo app in Chromium over HTTPS, where the browser speaks HTTP/2 to
// sluiced's own HTTP/2 server (internal/h2): the unary calls and the live
// stream both go over h2. Run by `npm test` after demo.test.mjs.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { Database, Server, buildServer, freePort, launchBrowser, removeDir, seed, tempDir } from "./harness.mjs";

// The readiness probe and the harness's calls go through Node's fetch, which
// must accept the test's self-signed certificate. This process runs this
// file's tests only.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";

const GREEN = "rgb(48, 164, 108)";

/** selfSigned writes a certificate and key for 127.0.0.1 into dir. */
async function selfSigned(dir) {
  const cert = path.join(dir, "cert.pem");
  const key = path.join(dir, "key.pem");
  await promisify(execFile)("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "-keyout", key, "-out", cert,
  ]);
  return { cert, key };
}

describe("demo app in Chromium over HTTPS (HTTP/2)", { timeout: 5 * 60_000 }, () => {
  let tmp, db, server, browser;

  before(async () => {
    tmp = tempDir();
    let bin, port, tls;
    [bin, db, port, tls] = await Promise.all([buildServer(tmp), new Database().create(), freePort(), selfSigned(tmp)]);
    await seed(bin, db);
    server = await new Server(bin, db, port, "sluiced-tls", tls).start();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await server?.stop();
    server?.saveLog();
    await db?.drop();
    if (tmp) removeDir(tmp);
  });

  /** open logs user in on the color page, in a context of its own. */
  async function open(user) {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1200, height: 760 } });
    context.setDefaultTimeout(10_000);
    const page = await context.newPage();
    await page.goto(server.base + "/color", { timeout: 15_000 });
    await page.locator(`button[data-user="${user}"]`).click();
    await page.locator('[data-testid="whoami"]').filter({ hasText: user }).waitFor();
    return page;
  }

  test("userA sets green over h2: userB's page, streaming over h2, turns green", { timeout: 90_000 }, async () => {
    const a = await open("userA");
    const b = await open("userB");
    await a.locator('button.swatch[data-color="green"]:enabled').waitFor();

    await a.locator('button.swatch[data-color="green"]').click();
    await b.waitForFunction(
      (want) => document.body.dataset.color === "green" && getComputedStyle(document.body).backgroundColor === want,
      GREEN,
      { timeout: 5_000 },
    );
    await b.locator('[data-testid="current-color"]').filter({ hasText: "set by userA" }).waitFor();

    // Every RPC the pages made went over HTTP/2.
    for (const [name, page] of [["userA", a], ["userB", b]]) {
      const protocols = await page.evaluate(() =>
        performance
          .getEntriesByType("resource")
          .filter((e) => e.name.includes("/sluice."))
          .map((e) => `${e.nextHopProtocol} ${new URL(e.name).pathname}`),
      );
      assert.ok(protocols.length > 0, `${name}: no RPC in the resource timings`);
      for (const p of protocols) assert.ok(p.startsWith("h2 "), `${name}: ${p}, want h2`);
    }
  });
});
