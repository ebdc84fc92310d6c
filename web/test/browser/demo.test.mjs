// Browser tests of the demo app against a real sluiced and a fresh
// database, in Debian's Chromium. Run by `npm test` (after the build and
// the unit tests): node --test test/browser/demo.test.mjs.
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  Database,
  Server,
  buildServer,
  delay,
  freePort,
  launchBrowser,
  login,
  openAs,
  removeDir,
  repoDir,
  resultsDir,
  rpc,
  seed,
  tempDir,
} from "./harness.mjs";

const RED = "rgb(229, 72, 77)";
const GREEN = "rgb(48, 164, 108)";

describe("demo app in Chromium", { timeout: 15 * 60_000 }, () => {
  let tmp, db, server, browser, ids, bin, port;
  const pages = {};
  const errors = [];

  before(async () => {
    tmp = tempDir();
    [bin, db, port] = await Promise.all([buildServer(tmp), new Database().create(), freePort()]);
    ids = await seed(bin, db);
    server = await new Server(bin, db, port).start();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await server?.stop();
    server?.saveLog();
    await db?.drop();
    if (tmp) removeDir(tmp);
  });

  const swatch = (page, color) => page.locator(`button.swatch[data-color="${color}"]`);

  test("admin revokes userA's red: userA's button disables within 1 s and the server refuses red", { timeout: 90_000 }, async (t) => {
    pages.admin = await openAs(browser, server.base, "admin", { errors });
    pages.userA = await openAs(browser, server.base, "userA", { errors });
    const a = pages.userA.page;
    const toggle = pages.admin.page.locator('button.toggle[data-user="userA"][data-color="red"]');

    // Seeded: userA may set red and green, not blue.
    await swatch(a, "red").and(a.locator(":enabled")).waitFor();
    await swatch(a, "green").and(a.locator(":enabled")).waitFor();
    assert.equal(await swatch(a, "blue").isDisabled(), true);
    await pages.admin.page.locator('button.toggle[data-user="userA"][data-color="red"][aria-pressed="true"]').waitFor();

    const disabled = a.waitForFunction(
      () => document.querySelector('button.swatch[data-color="red"]')?.disabled === true,
      null,
      { polling: 20, timeout: 5_000 },
    );
    const clicked = Date.now();
    await toggle.click();
    await disabled;
    const elapsed = Date.now() - clicked;
    t.diagnostic(`userA's red button disabled ${elapsed} ms after the admin's click`);
    assert.ok(elapsed < 1000, `red disabled after ${elapsed} ms, want < 1000 ms`);
    // The admin's toggle shows the committed state once its stream has it.
    await pages.admin.page.locator('button.toggle[data-user="userA"][data-color="red"][aria-pressed="false"]').waitFor();
    assert.equal(await swatch(a, "green").isEnabled(), true);

    // A forced call is refused by the server, whatever the page shows.
    const token = await login(server.base, "userA");
    await assert.rejects(rpc(server.base, "sluice.color.v1.ColorService/SetColor", { color: "COLOR_RED" }, token), (err) => {
      assert.equal(err.code, "permission_denied");
      return true;
    });
  });

  test("userA sets green: userB's page turns green", { timeout: 60_000 }, async () => {
    pages.userB = await openAs(browser, server.base, "userB", { errors });
    const b = pages.userB.page;
    // userB may set no color at all.
    for (const c of ["red", "green", "blue"]) {
      await b.waitForFunction((c) => document.querySelector(`button.swatch[data-color="${c}"]`)?.title !== "checking…", c);
      assert.equal(await swatch(b, c).isDisabled(), true, `userB's ${c} button`);
    }
    assert.notEqual(await b.evaluate(() => getComputedStyle(document.body).backgroundColor), GREEN);

    await swatch(pages.userA.page, "green").click();
    await b.waitForFunction(
      (want) => document.body.dataset.color === "green" && getComputedStyle(document.body).backgroundColor === want,
      GREEN,
      { timeout: 5_000 },
    );
    await b.locator('[data-testid="current-color"]').filter({ hasText: "set by userA" }).waitFor();
    // The caller sees its own write through its stream, like everyone else.
    await pages.userA.page.locator(".status").filter({ hasText: "green is live" }).waitFor();
    assert.equal(await pages.userA.page.evaluate(() => getComputedStyle(document.body).backgroundColor), GREEN);
    assert.notEqual(GREEN, RED);
  });

  test("userA and userB in #general see each other's messages and typing live", { timeout: 90_000 }, async () => {
    const a = pages.userA.page;
    const b = pages.userB.page;
    for (const p of [a, b]) {
      await p.locator('nav a[href="/chat"]').click();
      await p.locator('a[data-channel="general"]').click();
      await p.waitForURL(`**/chat/${encodeURIComponent(ids.general)}`);
      await p.locator("li.msg .text").filter({ hasText: "Welcome to Acme!" }).waitFor();
    }

    // Typing reaches the other side (an ephemeral signal, never stored).
    await a.locator(".composer input").pressSequentially("Hello from A", { delay: 10 });
    await b.locator('[data-testid="typing"]').filter({ hasText: "userA is typing…" }).waitFor({ timeout: 5_000 });
    await a.locator(".composer input").press("Enter");
    await b.locator("li.msg").filter({ hasText: "Hello from A" }).waitFor({ timeout: 5_000 });
    await a.locator("li.msg").filter({ hasText: "Hello from A" }).waitFor({ timeout: 5_000 });
    await b.locator('[data-testid="typing"]').filter({ hasText: /^$/ }).waitFor({ timeout: 6_000 });

    await b.locator(".composer input").pressSequentially("Hi A, B here", { delay: 10 });
    await a.locator('[data-testid="typing"]').filter({ hasText: "userB is typing…" }).waitFor({ timeout: 5_000 });
    await b.locator(".composer button[type=submit]").click();
    await a.locator("li.msg").filter({ hasText: "Hi A, B here" }).waitFor({ timeout: 5_000 });

    for (const p of [a, b]) {
      assert.equal(await p.locator("li.msg").filter({ hasText: "Hello from A" }).count(), 1);
      assert.equal(await p.locator("li.msg").filter({ hasText: "Hi A, B here" }).count(), 1);
      const authors = await p.locator("li.msg .author").allTextContents();
      assert.deepEqual(authors.slice(-2), ["userA", "userB"]);
    }
    // Presence: each sees the other online.
    await a.locator('[data-testid="members"] li[data-user="userB"][data-online="true"]').waitFor({ timeout: 5_000 });
    await b.locator('[data-testid="members"] li[data-user="userA"][data-online="true"]').waitFor({ timeout: 5_000 });
  });

  test("server restart mid-session: the page resumes and shows every message posted meanwhile, once each", { timeout: 180_000 }, async () => {
    const a = pages.userA.page;
    await a.evaluate(() => {
      window.__sameDocument = true; // survives only if the page is not reloaded
    });
    const before = await a.locator("li.msg").count();

    await server.stop();
    await a.waitForFunction(() => document.body.dataset.conn === "reconnecting", null, { timeout: 10_000 });

    // While the page's server is down, post through another instance on
    // the same database: plain Connect calls from Node.
    const side = await new Server(bin, db, await freePort(), "sluiced-side").start();
    const texts = [];
    try {
      const tokenB = await login(side.base, "userB");
      const tokenA = await login(side.base, "userA");
      for (let i = 1; i <= 5; i++) {
        const text = `posted while down #${i}`;
        texts.push(text);
        await rpc(side.base, "sluice.message.v1.MessageService/PostMessage", { channelId: ids.general, text }, i % 2 ? tokenB : tokenA);
      }
    } finally {
      await side.stop();
      side.saveLog();
    }
    // Nothing reached the page yet: its server is still down.
    assert.equal(await a.locator("li.msg").filter({ hasText: "posted while down" }).count(), 0);

    // The same server comes back on the same port and database.
    await server.start();
    await a.waitForFunction(() => document.body.dataset.conn === "live", null, { timeout: 20_000 });
    for (const text of texts) await a.locator("li.msg").filter({ hasText: text }).waitFor({ timeout: 10_000 });

    // One more, live after the restart.
    const token = await login(server.base, "userB");
    await rpc(server.base, "sluice.message.v1.MessageService/PostMessage", { channelId: ids.general, text: "live after restart" }, token);
    await a.locator("li.msg").filter({ hasText: "live after restart" }).waitFor({ timeout: 5_000 });

    await delay(300); // let any duplicate arrive before counting
    assert.equal(await a.evaluate(() => window.__sameDocument), true, "the page was reloaded");
    for (const text of [...texts, "live after restart"]) {
      assert.equal(await a.locator("li.msg").filter({ hasText: text }).count(), 1, `"${text}" shown once`);
    }
    assert.equal(await a.locator("li.msg").count(), before + texts.length + 1);
    const keys = await a.locator("li.msg").evaluateAll((els) => els.map((e) => e.dataset.key));
    assert.equal(new Set(keys).size, keys.length, "no message twice");
    const shown = await a.locator("li.msg .text").allTextContents();
    assert.deepEqual(shown.slice(-6), [...texts, "live after restart"], "commit order");
  });

  test("a deep link to a channel survives a reload: served the app, logs in, opens the channel", { timeout: 60_000 }, async () => {
    const deep = `/chat/${encodeURIComponent(ids.random)}`; // channel ids contain a dot
    const res = await fetch(server.base + deep, { signal: AbortSignal.timeout(5_000) });
    assert.equal(res.status, 200);
    assert.match(await res.text(), /id="app"/);
    assert.equal((await fetch(`${server.base}/assets/missing.js`, { signal: AbortSignal.timeout(5_000) })).status, 404);
    const rpc404 = await fetch(`${server.base}/sluice.nope.v1.NopeService/Nope`, { method: "POST", signal: AbortSignal.timeout(5_000) });
    assert.equal(rpc404.status, 404);

    const { context, page } = await openAs(browser, server.base, "userB", { path: deep, errors });
    try {
      await page.waitForURL(`**${deep}`);
      await page.locator(".channel-head h2").filter({ hasText: "# random" }).waitFor();
      await page.locator("li.msg .text").filter({ hasText: "Sluice streams every change live." }).waitFor();
    } finally {
      await context.close();
    }
  });

  test("screenshots of the color demo and the channel view", { timeout: 60_000 }, async () => {
    mkdirSync(resultsDir, { recursive: true });
    const admin = pages.admin.page;
    await admin.waitForFunction(() => document.body.dataset.conn === "live", null, { timeout: 20_000 });
    await admin.locator('button.toggle[data-user="userA"][data-color="green"][aria-pressed="true"]').waitFor();
    // The admin grants itself blue (a direct call): its own blue button
    // comes alive through AccessService.Watch.
    assert.equal(await swatch(admin, "blue").isDisabled(), true);
    await rpc(server.base, "sluice.color.v1.ColorService/SetPermission", { userId: "admin", color: "COLOR_BLUE", allowed: true }, await login(server.base, "admin"));
    await swatch(admin, "blue").and(admin.locator(":enabled")).waitFor({ timeout: 5_000 });
    await admin.locator('[data-testid="my-permissions"] li.on[data-color="blue"]').waitFor({ timeout: 5_000 });
    const shots = [
      { page: admin, file: "color-demo.png" },
      { page: pages.userA.page, file: "channel-view.png" },
    ];
    const b = pages.userB.page;
    await b.locator(".composer input").pressSequentially("Looks great", { delay: 10 });
    await pages.userA.page.locator('[data-testid="typing"]').filter({ hasText: "userB is typing…" }).waitFor({ timeout: 5_000 });
    for (const { page, file } of shots) {
      await page.mouse.move(0, 0);
      await page.screenshot({ path: path.join(resultsDir, file) });
    }
    if (process.env.UPDATE_DOCS_IMG === "1") {
      const docs = path.join(repoDir, "docs", "img");
      mkdirSync(docs, { recursive: true });
      for (const { file } of shots) copyFileSync(path.join(resultsDir, file), path.join(docs, file));
    }
    assert.deepEqual(errors, [], "no uncaught errors in the pages");
  });
});
