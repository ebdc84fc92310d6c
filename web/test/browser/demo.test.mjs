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
  listScope,
  login,
  openAs,
  postMany,
  removeDir,
  repoDir,
  resultsDir,
  rpc,
  seed,
  tempDir,
} from "./harness.mjs";

/**
 * decodeSubscribe decodes the body of a Connect SubscribeRequest (binary,
 * one enveloped message): records {key, version} and scopes {scope,
 * afterSeq, limit}.
 */
function decodeSubscribe(body) {
  const fields = (buf) => {
    const out = [];
    let i = 0;
    const varint = () => {
      let v = 0n;
      for (let shift = 0n; ; shift += 7n) {
        const b = buf[i++];
        v |= BigInt(b & 0x7f) << shift;
        if (b < 0x80) return v;
      }
    };
    while (i < buf.length) {
      const tag = Number(varint());
      if ((tag & 7) === 0) out.push([tag >> 3, varint()]);
      else if ((tag & 7) === 2) {
        const n = Number(varint());
        out.push([tag >> 3, buf.subarray(i, i + n)]);
        i += n;
      } else throw new Error(`unexpected wire type ${tag & 7}`);
    }
    return out;
  };
  const msg = body.subarray(5, 5 + body.readUInt32BE(1));
  const req = { records: [], scopes: [] };
  for (const [n, v] of fields(msg)) {
    const sub = fields(v);
    const str = (k) => Buffer.from(sub.find(([f]) => f === k)?.[1] ?? []).toString();
    const num = (k) => sub.find(([f]) => f === k)?.[1] ?? 0n;
    if (n === 1) req.records.push({ key: str(1), version: num(2) });
    if (n === 2) req.scopes.push({ scope: str(1), afterSeq: num(2), limit: Number(num(3)) });
  }
  return req;
}

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

  test("reload with a live session: still signed in, streams resume from their cursors, nothing shown twice", { timeout: 90_000 }, async (t) => {
    const general = `/chat/${encodeURIComponent(ids.general)}`;
    const { context, page } = await openAs(browser, server.base, "userB", { path: general, errors });
    try {
      await page.waitForURL(`**${general}`);
      await page.waitForFunction(() => document.body.dataset.conn === "live", null, { timeout: 20_000 });
      const tokenA = await login(server.base, "userA");
      await rpc(server.base, "sluice.message.v1.MessageService/PostMessage", { channelId: ids.general, text: "before the reload" }, tokenA);
      await page.locator("li.msg").filter({ hasText: "before the reload" }).waitFor({ timeout: 5_000 });

      // The session token is in an HttpOnly, SameSite=Strict cookie: no
      // script of the page can read it, and nothing stores it.
      const cookies = await context.cookies();
      const session = cookies.find((c) => c.name === "sluice_session");
      assert.ok(session, `session cookie set (cookies: ${cookies.map((c) => c.name)})`);
      assert.equal(session.httpOnly, true);
      assert.equal(session.sameSite, "Strict");
      assert.equal(session.path, "/");
      assert.match(session.value, /^slc_/);
      const visible = await page.evaluate(() => [document.cookie, JSON.stringify({ ...localStorage }), JSON.stringify({ ...sessionStorage })].join("\n"));
      assert.ok(!visible.includes(session.value) && !visible.includes("slc_"), "the token is out of the page's reach");

      const rows = await listScope(server.base, tokenA, `channel/${ids.general}`);
      const seqBefore = BigInt(rows.at(-1).seq);
      const shownBefore = await page.locator("li.msg .text").allTextContents();

      // Across the reload: the page shows what it held before any stream
      // answers, and a message committed while the page was away arrives
      // once the channel's stream resumes.
      let heldAtResume;
      const requests = [];
      const subscribe = "**/sluice.sync.v1.SyncService/Subscribe";
      t.after(() => page.unroute(subscribe).catch(() => {}));
      await page.route(subscribe, async (route) => {
        const req = decodeSubscribe(route.request().postDataBuffer());
        requests.push(req);
        if (req.scopes.some((s) => s.scope === `channel/${ids.general}`) && heldAtResume === undefined) {
          heldAtResume = await page.evaluate(() => [...document.querySelectorAll("li.msg .text")].map((e) => e.textContent));
          await rpc(server.base, "sluice.message.v1.MessageService/PostMessage", { channelId: ids.general, text: "during the reload" }, tokenA);
        }
        await route.continue();
      });
      await page.addInitScript(() => {
        // Records whether the login form ever shows in the reloaded page.
        new MutationObserver(() => {
          if (document.querySelector("form.login")) window.__sawLogin = true;
        }).observe(document, { childList: true, subtree: true });
      });
      await page.reload({ timeout: 15_000 });

      await page.locator('[data-testid="whoami"]').filter({ hasText: "userB" }).waitFor();
      await page.waitForURL(`**${general}`);
      await page.waitForFunction(() => document.body.dataset.conn === "live", null, { timeout: 20_000 });
      await page.locator("li.msg").filter({ hasText: "during the reload" }).waitFor({ timeout: 5_000 });
      assert.equal(await page.evaluate(() => window.__sawLogin ?? false), false, "no login form after the reload");
      assert.deepEqual(heldAtResume, shownBefore, "the reloaded page showed what it held before its stream resumed");

      // Each stream resumed from its saved cursor, not from scratch.
      const channel = requests.flatMap((r) => r.scopes).find((s) => s.scope === `channel/${ids.general}`);
      assert.ok(channel, "the channel's stream was reopened");
      t.diagnostic(`channel stream resumed after seq ${channel.afterSeq} (last seq before the reload: ${seqBefore}), window ${channel.limit}`);
      assert.ok(channel.afterSeq >= seqBefore, `resumed after seq ${channel.afterSeq}, want >= ${seqBefore}`);
      assert.equal(channel.limit, 50, "the window is kept");
      const color = requests.flatMap((r) => r.records).find((r) => r.key === "global-color");
      assert.ok(color && color.version > 0n, `global-color resumed from version ${color?.version}`);

      // One more, live; then nothing is shown twice.
      await rpc(server.base, "sluice.message.v1.MessageService/PostMessage", { channelId: ids.general, text: "after the reload" }, tokenA);
      await page.locator("li.msg").filter({ hasText: "after the reload" }).waitFor({ timeout: 5_000 });
      await delay(300); // let any duplicate arrive before counting
      const keys = await page.locator("li.msg").evaluateAll((els) => els.map((e) => e.dataset.key));
      assert.equal(new Set(keys).size, keys.length, "no message twice");
      assert.deepEqual(await page.locator("li.msg .text").allTextContents(), [...shownBefore, "during the reload", "after the reload"]);

      // Logging out clears the cookie: a reload shows the login.
      await page.locator("button", { hasText: "Log out" }).click();
      await page.locator("form.login").waitFor();
      assert.equal((await context.cookies()).some((c) => c.name === "sluice_session"), false, "the cookie is gone");
      assert.equal(await page.evaluate(() => Object.keys(sessionStorage).filter((k) => k.startsWith("sluice:stream:")).length), 0, "saved streams removed");
      await page.reload({ timeout: 15_000 });
      await page.locator("form.login").waitFor();
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

  // The chat posts through the outbox (IndexedDB): what is posted while the
  // server cannot be reached shows as pending and is sent, with its
  // Idempotency-Key, once it can.
  const composer = (page) => page.locator(".composer input");
  async function postFromPage(page, text) {
    await composer(page).fill(text);
    await composer(page).press("Enter");
  }
  /** delivered is the locator of the messages the stream delivered (not pending ones). */
  const delivered = (page) => page.locator("li.msg:not(.pending):not(.failed)");
  /** serverTexts returns the texts of a channel's messages as stored, in commit order. */
  async function serverTexts(channelId, user = "userB") {
    const token = await login(server.base, user);
    const recs = await listScope(server.base, token, `channel/${channelId}`);
    return recs.filter((r) => r.key.startsWith("message/")).map((r) => r.payload.text);
  }

  test("offline: posts made while the server is down show pending, survive a reload, and arrive once each, in order", { timeout: 120_000 }, async (t) => {
    const a = pages.userA.page;
    const b = pages.userB.page;
    for (const p of [a, b]) await p.waitForURL(`**/chat/${encodeURIComponent(ids.general)}`);
    await server.stop();
    await a.waitForFunction(() => document.body.dataset.conn === "reconnecting", null, { timeout: 10_000 });

    const texts = ["offline one", "offline two", "offline three"];
    for (const text of texts) await postFromPage(a, text);
    for (const text of texts) await a.locator("li.msg.pending").filter({ hasText: text }).waitFor();
    assert.deepEqual(await a.locator("li.msg.pending .text").allTextContents(), texts, "pending, in order");
    assert.equal(await a.locator("li.msg.pending time").first().textContent(), "sending…");
    const stored = await a.evaluate(
      () =>
        new Promise((resolve, reject) => {
          const req = indexedDB.open("sluice-outbox");
          req.onerror = () => reject(req.error);
          req.onsuccess = () => {
            const all = req.result.transaction("calls").objectStore("calls").getAll();
            all.onsuccess = () => resolve(all.result.sort((x, y) => x.order - y.order).map((c) => ({ key: c.key, procedure: c.procedure })));
          };
        }),
    );
    assert.equal(stored.length, 3);
    assert.ok(stored.every((c) => c.procedure === "sluice.message.v1.MessageService/PostMessage"));

    // Reload while the server is down: the page itself cannot load (sluiced serves it).
    await a.reload({ timeout: 10_000 }).then(
      () => assert.fail("the page loaded with the server down"),
      () => {},
    );
    // Keep PostMessage unreachable a little longer, to see the stored posts
    // pending in the reloaded page before they go.
    const keys = [];
    const onRequest = (req) => {
      if (req.url().endsWith("/PostMessage")) keys.push(req.headers()["idempotency-key"]);
    };
    a.on("request", onRequest);
    t.after(() => a.off("request", onRequest));
    const unreachable = "**/sluice.message.v1.MessageService/PostMessage";
    await a.route(unreachable, (route) => route.abort("connectionrefused"));
    t.after(() => a.unroute(unreachable).catch(() => {}));
    await server.start();
    // The session cookie outlives the reload: still signed in, no login.
    await a.goto(`${server.base}/chat/${encodeURIComponent(ids.general)}`, { timeout: 15_000 });
    await a.locator('[data-testid="whoami"]').filter({ hasText: "userA" }).waitFor();
    await a.waitForURL(`**/chat/${encodeURIComponent(ids.general)}`);
    await a.waitForFunction(() => document.body.dataset.conn === "live", null, { timeout: 20_000 });
    await a.locator("li.msg.pending").nth(texts.length - 1).waitFor();
    assert.deepEqual(await a.locator("li.msg.pending .text").allTextContents(), texts, "still pending after the reload");
    mkdirSync(resultsDir, { recursive: true });
    await a.screenshot({ path: path.join(resultsDir, "channel-pending-posts.png") });
    for (const text of texts) assert.equal(await delivered(a).filter({ hasText: text }).count(), 0);

    await a.unroute(unreachable);
    await a.evaluate(() => window.dispatchEvent(new Event("online")));
    for (const p of [a, b]) {
      for (const text of texts) await delivered(p).filter({ hasText: text }).waitFor({ timeout: 15_000 });
    }
    await a.locator("li.msg.pending").first().waitFor({ state: "detached", timeout: 5_000 });
    await delay(300); // let any duplicate arrive before counting
    for (const p of [a, b]) {
      for (const text of texts) assert.equal(await p.locator("li.msg").filter({ hasText: text }).count(), 1, `"${text}" once`);
      assert.deepEqual((await delivered(p).locator(".text").allTextContents()).slice(-3), texts, "commit order");
    }
    assert.deepEqual((await serverTexts(ids.general)).slice(-3), texts, "stored once each, in order");
    // Each post kept its stored key on every attempt, before and after the reload.
    assert.deepEqual(
      [...new Set(keys)].sort(),
      stored.map((c) => c.key).sort(),
      "the reloaded page sent the keys stored before the reload",
    );
    t.diagnostic(`${keys.length} PostMessage attempts after the reload for 3 posts`);
    assert.equal(await a.evaluate(() => document.querySelectorAll("li.msg.pending, li.msg.failed").length), 0);
  });

  test("SIGKILL while a post is in flight: the server committed it, the answer was lost; after the restart it exists once", { timeout: 120_000 }, async (t) => {
    const a = pages.userA.page;
    const b = pages.userB.page;
    const text = "in flight at SIGKILL";
    const keys = [];
    const onRequest = (req) => {
      if (req.url().endsWith("/PostMessage")) keys.push(req.headers()["idempotency-key"]);
    };
    a.on("request", onRequest);
    t.after(() => a.off("request", onRequest));
    let committed;
    const inFlight = "**/sluice.message.v1.MessageService/PostMessage";
    t.after(() => a.unroute(inFlight).catch(() => {}));
    const killed = new Promise((resolve, reject) => {
      a.route(
        inFlight,
        async (route) => {
          try {
            // The request reaches the server and commits; the server dies
            // before the page gets the answer.
            const res = await route.fetch({ timeout: 10_000 });
            committed = res.status();
            await server.kill();
            await route.abort("connectionreset");
            resolve();
          } catch (err) {
            reject(err);
          }
        },
        { times: 1 },
      );
    });
    await postFromPage(a, text);
    await killed;
    assert.equal(committed, 200, "the first attempt was committed");
    // Shown pending, or already delivered: the stream may have carried the
    // commit to the page before the kill (then the pending copy is hidden).
    await a.locator("li.msg").filter({ hasText: text }).first().waitFor();
    await a.waitForFunction(() => document.body.dataset.conn === "reconnecting", null, { timeout: 10_000 });
    assert.equal(await a.locator("li.msg").filter({ hasText: text }).count(), 1, "never shown twice");
    await server.start();
    for (const p of [a, b]) await delivered(p).filter({ hasText: text }).waitFor({ timeout: 20_000 });
    await a.locator("li.msg.pending").filter({ hasText: text }).waitFor({ state: "detached", timeout: 5_000 });
    await delay(300);
    for (const p of [a, b]) assert.equal(await p.locator("li.msg").filter({ hasText: text }).count(), 1);
    assert.equal((await serverTexts(ids.general)).filter((x) => x === text).length, 1, "stored once");
    assert.ok(keys.length >= 2, `retried (${keys.length} attempts)`);
    assert.equal(new Set(keys).size, 1, "every attempt carried the same Idempotency-Key");
  });

  test("a post the server refuses shows as failed, is not dropped, and can be discarded", { timeout: 60_000 }, async () => {
    const a = pages.userA.page;
    // BEL is a control character: invalid_argument on text, whatever the retries.
    const text = "refused \u0007 post";
    await postFromPage(a, text);
    const failed = a.locator('li.msg.failed[data-state="failed"]').filter({ hasText: "refused" });
    await failed.waitFor({ timeout: 10_000 });
    assert.match((await failed.locator(".outbox-error").textContent()) ?? "", /invalid_argument/);
    await delay(500);
    assert.equal(await failed.count(), 1, "still shown: not dropped");
    assert.ok((await serverTexts(ids.general)).every((x) => !x.startsWith("refused")));
    mkdirSync(resultsDir, { recursive: true });
    await a.screenshot({ path: path.join(resultsDir, "channel-failed-post.png") });
    await failed.locator("button", { hasText: "Discard" }).click();
    await failed.waitFor({ state: "detached" });
    const left = await a.evaluate(
      () =>
        new Promise((resolve, reject) => {
          const req = indexedDB.open("sluice-outbox");
          req.onerror = () => reject(req.error);
          req.onsuccess = () => {
            const all = req.result.transaction("calls").objectStore("calls").count();
            all.onsuccess = () => resolve(all.result);
          };
        }),
    );
    assert.equal(left, 0, "discarded from IndexedDB too");
  });

  test("invitations: userC sees them live on their own stream, declines one, accepts the seeded one, and the organization joins the sidebar", { timeout: 60_000 }, async () => {
    const { context, page } = await openAs(browser, server.base, "userC", { path: "/chat", errors });
    try {
      const invitation = (org) => page.locator('[data-testid="invitations"] li').filter({ hasText: org });
      await invitation("Beta").waitFor(); // seeded: userA invited userC
      const tokenA = await login(server.base, "userA");
      const gamma = await rpc(server.base, "sluice.org.v1.OrgService/CreateOrg", { name: "Gamma" }, tokenA);
      const added = await rpc(server.base, "sluice.org.v1.OrgService/AddMember", { orgId: gamma.org.id, userId: "userC", role: "ROLE_MEMBER" }, tokenA);
      assert.equal(added.invited, true, "a user's AddMember only invites");
      await invitation("Gamma").waitFor();
      await invitation("Gamma").locator('button[data-answer="decline"]').click();
      await invitation("Gamma").waitFor({ state: "detached" });
      assert.equal(await page.locator(".sidebar .org h3").filter({ hasText: "Gamma" }).count(), 0);
      mkdirSync(resultsDir, { recursive: true });
      await page.screenshot({ path: path.join(resultsDir, "chat-invitation.png") });
      await invitation("Beta").locator('button[data-answer="accept"]').click();
      await invitation("Beta").waitFor({ state: "detached" });
      await page.locator(".sidebar .org h3").filter({ hasText: "Beta" }).waitFor();
    } finally {
      await context.close();
    }
  });

  test("a channel of 5,000 messages opens on the newest 50 and pages older ones in, in order, as the user scrolls up", { timeout: 240_000 }, async (t) => {
    const token = await login(server.base, "userA");
    const created = await rpc(server.base, "sluice.channel.v1.ChannelService/CreateChannel", { orgId: ids.org, name: "firehose" }, token);
    const channelId = created.channel.id;
    const n = 5000;
    const started = Date.now();
    await postMany(
      server.base,
      token,
      channelId,
      Array.from({ length: n }, (_, i) => `firehose #${i + 1}`),
      8,
    );
    t.diagnostic(`posted ${n} messages in ${Date.now() - started} ms`);
    // Concurrent posts commit in any order: the server's order is the truth.
    const want = (await serverTexts(channelId, "userA")).filter((x) => x.startsWith("firehose #"));
    assert.equal(want.length, n);

    const { context, page } = await openAs(browser, server.base, "userA", { path: `/chat/${encodeURIComponent(channelId)}`, errors });
    try {
      const texts = () => page.locator("li.msg:not(.system) .text").allTextContents();
      const count = () => page.locator("li.msg:not(.system)").count();
      await page.waitForFunction(() => document.querySelectorAll("li.msg").length >= 50, null, { timeout: 20_000 });
      await delay(300);
      assert.equal(await count(), 50, "the window: the newest 50");
      assert.deepEqual(await texts(), want.slice(-50));
      assert.equal(await page.locator('[data-testid="history"]').getAttribute("data-state"), "more");

      const scrollUp = () => page.locator('[data-testid="messages"]').evaluate((el) => (el.scrollTop = 0));
      const pagingStarted = Date.now();
      await scrollUp();
      await page.waitForFunction(() => document.querySelectorAll("li.msg").length >= 100, null, { timeout: 10_000 });
      await delay(200);
      assert.equal(await count(), 100, "one page of 50 more");
      assert.deepEqual(await texts(), want.slice(-100), "prepended in order");
      // The view stayed on the message the user was reading, not the top.
      assert.ok((await page.locator('[data-testid="messages"]').evaluate((el) => el.scrollTop)) > 500);

      // Keep scrolling up until the beginning of the channel, as a user
      // holding the list at its top would (driven inside the page: one
      // round trip instead of several per page).
      const pages = await page.evaluate(async (limit) => {
        const list = document.querySelector('[data-testid="messages"]');
        const edge = () => document.querySelector('[data-testid="history"]')?.dataset.state;
        let loads = 0;
        while (edge() !== "start") {
          if (++loads > limit) throw new Error(`still not at the beginning after ${limit} pages`);
          const before = list.querySelectorAll("li.msg").length;
          list.scrollTop = 0;
          const deadline = Date.now() + 10_000;
          while (list.querySelectorAll("li.msg").length === before && edge() !== "start") {
            if (Date.now() > deadline) throw new Error(`no page loaded after ${before} messages (edge: ${edge()})`);
            await new Promise((r) => setTimeout(r, 10));
          }
        }
        return loads;
      }, n / 50 + 5);
      t.diagnostic(`paged back through ${n} messages (${pages + 1} scrolls to the top) in ${Date.now() - pagingStarted} ms`);
      await page.locator('[data-testid="history"][data-state="start"]').waitFor();
      assert.deepEqual(await texts(), want, "every message once, in commit order");
      const keys = await page.locator("li.msg").evaluateAll((els) => els.map((e) => e.dataset.key));
      assert.equal(new Set(keys).size, keys.length, "no message twice");
      assert.match((await page.locator("li.msg").first().textContent()) ?? "", /created|channel/i, "the channel's first (system) message comes first");

      // Live messages still arrive at the bottom.
      await rpc(server.base, "sluice.message.v1.MessageService/PostMessage", { channelId, text: "after the paging" }, token);
      await page.locator("li.msg").last().filter({ hasText: "after the paging" }).waitFor({ timeout: 5_000 });
    } finally {
      await context.close();
    }
    assert.deepEqual(errors, [], "no uncaught errors in the pages");
  });
});
