import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import type { SubscribeRequest, SubscribeResponse } from "../src/gen/sluice/sync/v1/sync_pb.js";
import { backoffDelay } from "../src/backoff.js";
import type { Update } from "../src/cursors.js";
import type { StreamStatus } from "../src/resumable.js";
import { Subscription } from "../src/subscription.js";
import { heartbeat, msg, synced } from "./events.js";

/**
 * Server is a fake SyncService: each connection plays a script of events,
 * then ends with an error, stays open until aborted ("hang"), or ends.
 */
type Step = SubscribeResponse | { fail: ConnectError } | "hang";

class Server {
  requests: Array<{ records: Record<string, number>; scopes: Record<string, number> }> = [];
  constructor(private readonly scripts: Array<(req: SubscribeRequest) => Step[]>) {}

  open = (req: SubscribeRequest, signal: AbortSignal): AsyncIterable<SubscribeResponse> => {
    this.requests.push({
      records: Object.fromEntries(req.records.map((r) => [r.key, Number(r.version)])),
      scopes: Object.fromEntries(req.scopes.map((s) => [s.scope, Number(s.afterSeq)])),
    });
    const script = this.scripts[this.requests.length - 1];
    const steps = script ? script(req) : ["hang" as const];
    return (async function* () {
      for (const step of steps) {
        await Promise.resolve();
        if (signal.aborted) throw new ConnectError("aborted", Code.Canceled);
        if (step === "hang") {
          await new Promise((_, reject) => {
            if (signal.aborted) reject(new ConnectError("aborted", Code.Canceled));
            signal.addEventListener("abort", () => reject(new ConnectError("aborted", Code.Canceled)), { once: true });
          });
        } else if ("fail" in step) {
          throw step.fail;
        } else {
          yield step;
        }
      }
    })();
  };
}

const unavailable = { fail: new ConnectError("server shutting down", Code.Unavailable) };

function until(cond: () => boolean, ms = 2000): Promise<void> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const tick = () => {
      if (cond()) resolve();
      else if (Date.now() - start > ms) reject(new Error("condition not met in time"));
      else setTimeout(tick, 1);
    };
    tick();
  });
}

function harness(server: Server, opts: { idleTimeoutMs?: number } = {}) {
  const updates: Update[] = [];
  const statuses: StreamStatus[] = [];
  const delays: number[] = [];
  const sub = new Subscription(server.open, { scopes: ["channel/c"] }, {
    onUpdate: (us) => updates.push(...us),
    onStatus: (s) => statuses.push(s),
    backoff: { baseMs: 100, maxMs: 1000, random: () => 0.5 },
    idleTimeoutMs: opts.idleTimeoutMs,
    sleep: async (ms) => {
      delays.push(ms);
    },
  });
  return { sub, updates, statuses, delays };
}

function shown(updates: Update[]): string[] {
  return updates.flatMap((u) => (u.kind === "record" ? [`${u.entry.key}@${u.entry.version}`] : []));
}

describe("Subscription", () => {
  it("resumes a dropped stream from its cursors: nothing lost, nothing twice", async () => {
    const server = new Server([
      // First connection: snapshot, synced, one live message, then the
      // server restarts.
      () => [msg("1", 1, 1, { snapshot: true }), synced({ "channel/c": 1 }), msg("2", 1, 2), unavailable],
      // The restarted server is not up yet.
      () => [{ fail: new ConnectError("fetch failed", Code.Unknown) }],
      // Up again: it sends the changes after seq 2 and, at-least-once, a
      // repeat of seq 2 (a relay republish).
      () => [msg("2", 1, 2), msg("3", 1, 3), msg("4", 1, 4), synced({ "channel/c": 4 }), msg("5", 1, 5), "hang"],
    ]);
    const { sub, updates, statuses, delays } = harness(server);
    sub.start();
    await until(() => sub.list("message/").length === 5);
    expect(server.requests.map((r) => r.scopes["channel/c"])).toEqual([0, 2, 2]);
    expect(shown(updates)).toEqual(["message/c/1@1", "message/c/2@1", "message/c/3@1", "message/c/4@1", "message/c/5@1"]);
    expect(statuses).toEqual(["live", "reconnecting", "live"]);
    // Backoff grows while failing (100·2^n, jitter 0.5 → 75%).
    expect(delays).toEqual([backoffDelay(0, { baseMs: 100, random: () => 0.5 }), backoffDelay(1, { baseMs: 100, random: () => 0.5 })]);
    expect(delays).toEqual([75, 150]);
    sub.close();
    await sub.done;
    expect(sub.status).toBe("closed");
  });

  it("resumes a stream cut by an instance that died (internal: incomplete envelope)", async () => {
    const server = new Server([
      () => [msg("1", 1, 1, { snapshot: true }), synced({ "channel/c": 1 }), msg("2", 1, 2),
        { fail: new ConnectError("protocol error: incomplete envelope: unexpected EOF", Code.Internal) }],
      () => [msg("3", 1, 3), synced({ "channel/c": 3 }), "hang"],
    ]);
    const { sub, updates } = harness(server);
    sub.start();
    await until(() => sub.list("message/").length === 3);
    expect(server.requests.map((r) => r.scopes["channel/c"])).toEqual([0, 2]);
    expect(shown(updates)).toEqual(["message/c/1@1", "message/c/2@1", "message/c/3@1"]);
    sub.close();
    await sub.done;
  });

  it("resets the backoff once a connection caught up", async () => {
    const server = new Server([
      () => [unavailable],
      () => [unavailable],
      () => [synced({ "channel/c": 0 }), unavailable],
      () => [unavailable],
      () => ["hang"],
    ]);
    const { sub, delays } = harness(server);
    sub.start();
    await until(() => server.requests.length === 5);
    expect(delays).toEqual([75, 150, 75, 150]);
    sub.close();
    await sub.done;
  });

  it("closes for good on a permanent error and rejects waiters", async () => {
    const server = new Server([() => [{ fail: new ConnectError("not found", Code.NotFound) }]]);
    const { sub, statuses } = harness(server);
    const wait = sub.waitForVersion({ key: "message/c/1", version: BigInt(1) });
    sub.start();
    await sub.done;
    expect(server.requests).toHaveLength(1);
    expect(statuses).toEqual(["closed"]);
    expect(sub.error?.code).toBe(Code.NotFound);
    await expect(wait).rejects.toMatchObject({ code: Code.NotFound });
  });

  it("waitForVersion resolves when the stream delivers the written version", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const server = new Server([() => [synced({ "channel/c": 0 }), msg("7", 1, 1), "hang"]]);
    const open = server.open;
    server.open = (req, signal) => {
      const it = open(req, signal);
      return (async function* () {
        await gate;
        yield* it;
      })();
    };
    const { sub } = harness(server);
    sub.start();
    let seen = false;
    const wait = sub.waitForVersion({ key: "message/c/7", version: BigInt(1) }).then((e) => {
      seen = true;
      return e;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(seen).toBe(false); // no optimistic state: not before the stream says so
    release();
    expect((await wait).version).toBe(BigInt(1));
    // Already held: resolves at once.
    await expect(sub.waitForVersion({ key: "message/c/7", version: BigInt(1) })).resolves.toBeDefined();
    await expect(sub.waitForVersion({ key: "message/c/7", version: BigInt(2) }, { timeoutMs: 20 })).rejects.toMatchObject({
      code: Code.DeadlineExceeded,
    });
    sub.close();
    await sub.done;
  });

  it("reopens a stream that went silent past the idle timeout", async () => {
    const server = new Server([() => [synced({ "channel/c": 0 }), "hang"], () => [heartbeat(), msg("1", 1, 1), "hang"]]);
    const { sub, statuses } = harness(server, { idleTimeoutMs: 30 });
    sub.start();
    await until(() => sub.list("message/").length === 1);
    expect(server.requests.length).toBeGreaterThanOrEqual(2);
    expect(statuses.slice(0, 2)).toEqual(["live", "reconnecting"]);
    sub.close();
    await sub.done;
  });

  it("stops when every target was revoked", async () => {
    const server = new Server([
      () => [
        synced({ "channel/c": 0 }),
        { event: { case: "revoked", value: { key: "", scope: "channel/c", reason: "access revoked" } } } as SubscribeResponse,
        "hang",
      ],
    ]);
    const { sub } = harness(server);
    sub.start();
    await sub.done;
    expect(sub.status).toBe("closed");
    expect(sub.error).toBeUndefined();
  });
});
