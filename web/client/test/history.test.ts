import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ListResponseSchema, type ListResponse, type Record as SyncRecord, type SubscribeRequest, type SubscribeResponse } from "../src/gen/sluice/sync/v1/sync_pb.js";
import type { Update } from "../src/cursors.js";
import { History } from "../src/history.js";
import { Subscription } from "../src/subscription.js";
import { msg, removed, reset, synced } from "./events.js";
import { until } from "./fakefetch.js";

/** rec is message/c/<id> at version, seq, as List returns it. */
function rec(id: string, version: number, seq: number): SyncRecord {
  const ev = msg(id, version, seq);
  if (ev.event.case !== "record") throw new Error("not a record");
  return ev.event.value.record!;
}

/** page is a List answer, newest first. */
function page(records: SyncRecord[], nextBeforeSeq: number, scopeSeq = 100): ListResponse {
  return create(ListResponseSchema, { records, nextBeforeSeq: BigInt(nextBeforeSeq), scopeSeq: BigInt(scopeSeq) });
}

/**
 * stream plays events on one connection and then stays open; push() adds
 * live events later. requests records each SubscribeRequest.
 */
function stream(events: SubscribeResponse[]) {
  const requests: SubscribeRequest[] = [];
  const queue = [...events];
  let wake: (() => void) | undefined;
  const open = (req: SubscribeRequest, signal: AbortSignal): AsyncIterable<SubscribeResponse> => {
    requests.push(req);
    return (async function* () {
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        await new Promise<void>((resolve, reject) => {
          wake = resolve;
          signal.addEventListener("abort", () => reject(new ConnectError("closed", Code.Canceled)), { once: true });
        });
      }
    })();
  };
  const push = (...evs: SubscribeResponse[]) => {
    queue.push(...evs);
    wake?.();
  };
  return { open, push, requests };
}

function setup(events: SubscribeResponse[], pages: Array<ListResponse | Error | Promise<ListResponse>>) {
  const s = stream(events);
  const updates: Update[] = [];
  const sub = new Subscription(s.open, { scopes: [{ scope: "channel/c", limit: 3 }] }, { onUpdate: (us) => updates.push(...us) }).start();
  const calls: Array<{ scope: string; beforeSeq: number; limit: number }> = [];
  const history = new History(
    async (req) => {
      calls.push({ scope: req.scope, beforeSeq: Number(req.beforeSeq), limit: req.limit });
      const next = pages.shift();
      if (!next) throw new Error("no more pages scripted");
      if (next instanceof Error) throw next;
      return next;
    },
    sub,
    "channel/c",
  );
  const shown = () => sub.list("message/").map((e) => `${e.key.split("/").pop()}@${e.version}`);
  return { sub, history, calls, updates, shown, push: s.push, requests: s.requests };
}

// The newest three of a channel whose messages 1..9 are at seqs 1..9.
const window = [msg("7", 1, 7, { snapshot: true }), msg("8", 1, 8, { snapshot: true }), msg("9", 1, 9, { snapshot: true }), synced({ "channel/c": 9 })];

describe("History", () => {
  it("opens with a window, then pages older records in before it, oldest first, until nextBeforeSeq is 0", async () => {
    const t = setup(window, [page([rec("6", 1, 6), rec("5", 1, 5), rec("4", 1, 4)], 4), page([rec("3", 1, 3), rec("2", 1, 2), rec("1", 1, 1)], 0)]);
    await until(() => t.sub.synced);
    expect(t.requests[0].scopes.map((s) => [s.scope, s.limit])).toEqual([["channel/c", 3]]);
    expect(t.shown()).toEqual(["7@1", "8@1", "9@1"]);

    const first = await t.history.loadOlder();
    expect(first.map((e) => e.key)).toEqual(["message/c/4", "message/c/5", "message/c/6"]);
    expect(t.calls).toEqual([{ scope: "channel/c", beforeSeq: 7, limit: 50 }]);
    expect(t.updates.at(-1)).toMatchObject({ kind: "history", scope: "channel/c" });
    expect(t.history.exhausted).toBe(false);

    await t.history.loadOlder();
    expect(t.calls[1].beforeSeq).toBe(4);
    expect(t.history.exhausted).toBe(true);
    expect(t.shown()).toEqual(["1@1", "2@1", "3@1", "4@1", "5@1", "6@1", "7@1", "8@1", "9@1"]);
    expect(await t.history.loadOlder()).toEqual([]);
    expect(t.calls).toHaveLength(2);

    // Live messages keep arriving after the window; pages never move the stream's cursor.
    t.push(msg("10", 1, 10));
    await until(() => t.shown().length === 10);
    expect(Number(t.sub.state.scopeCursor("channel/c"))).toBe(10);
    t.sub.close();
  });

  it("never duplicates or resurrects what the stream delivered", async () => {
    const t = setup(window, [
      // 8 was edited (v2 at seq 11) and 6 deleted (seq 12) after the page was read.
      page([rec("8", 1, 8), rec("7", 1, 7), rec("6", 1, 6), rec("5", 1, 5)], 5),
    ]);
    await until(() => t.sub.synced);
    t.push(msg("8", 2, 11), removed("message/c/6", "channel/c", 2, 12));
    await until(() => t.sub.get("message/c/6") !== undefined);
    const added = await t.history.loadOlder();
    expect(added.map((e) => e.key)).toEqual(["message/c/5"]);
    expect(t.shown()).toEqual(["5@1", "7@1", "9@1", "8@2"]);
    t.sub.close();
  });

  it("takes a page newer than the stream, and the stream's copy later adds nothing", async () => {
    const t = setup(window, [page([rec("6", 2, 10), rec("5", 1, 5)], 5)]);
    await until(() => t.sub.synced);
    await t.history.loadOlder();
    expect(t.shown()).toEqual(["5@1", "7@1", "8@1", "9@1", "6@2"]);
    const before = t.updates.length;
    t.push(msg("6", 2, 10), msg("11", 1, 11));
    await until(() => t.shown().length === 6);
    expect(t.updates.slice(before).map((u) => u.kind === "record" && u.entry.key)).toEqual(["message/c/11"]);
    expect(t.shown()).toEqual(["5@1", "7@1", "8@1", "9@1", "6@2", "11@1"]);
    t.sub.close();
  });

  it("shares one request between concurrent calls and retries the same page after an error", async () => {
    let release!: (p: ListResponse) => void;
    const pending = new Promise<ListResponse>((r) => (release = r));
    const t = setup(window, [pending, new Error("network"), page([rec("3", 1, 3)], 0)]);
    await until(() => t.sub.synced);
    const a = t.history.loadOlder();
    const b = t.history.loadOlder();
    expect(t.history.loading).toBe(true);
    release(page([rec("6", 1, 6)], 6));
    expect(await a).toEqual(await b);
    expect(t.calls).toHaveLength(1);
    await expect(t.history.loadOlder()).rejects.toThrow("network");
    await t.history.loadOlder();
    expect(t.calls.map((c) => c.beforeSeq)).toEqual([7, 6, 6]);
    expect(t.history.exhausted).toBe(true);
    t.sub.close();
  });

  it("starts over from the fresh window after a reset, discarding a page read before it", async () => {
    let release!: (p: ListResponse) => void;
    const pending = new Promise<ListResponse>((r) => (release = r));
    const t = setup(window, [pending, page([rec("18", 1, 28)], 0)]);
    await until(() => t.sub.synced);
    const stale = t.history.loadOlder();
    // The history behind the cursor was pruned: reset, a fresh window.
    t.push(reset("channel/c", 25), msg("19", 1, 29, { snapshot: true }), msg("20", 1, 30, { snapshot: true }), synced({ "channel/c": 30 }));
    await until(() => t.shown().join() === "19@1,20@1");
    release(page([rec("6", 1, 6)], 6));
    expect(await stale).toEqual([]);
    expect(t.shown()).toEqual(["19@1", "20@1"]);
    await t.history.loadOlder();
    expect(t.calls.map((c) => c.beforeSeq)).toEqual([7, 29]);
    expect(t.shown()).toEqual(["18@1", "19@1", "20@1"]);
    expect(t.history.exhausted).toBe(true);
    t.sub.close();
  });

  it("does nothing before the window arrived", async () => {
    const t = setup([], []);
    expect(await t.history.loadOlder()).toEqual([]);
    expect(t.calls).toEqual([]);
    t.sub.close();
  });
});
