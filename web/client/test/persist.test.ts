import { describe, expect, it } from "vitest";
import { SyncState, type SavedState } from "../src/cursors.js";
import type { StateStore } from "../src/persist.js";
import { payloadAs } from "../src/registry.js";
import { Subscription } from "../src/subscription.js";
import { MessageSchema } from "../src/gen/sluice/message/v1/message_pb.js";
import type { SubscribeRequest, SubscribeResponse } from "../src/gen/sluice/sync/v1/sync_pb.js";
import { msg, record, removed, synced } from "./events.js";

const targets = { scopes: [{ scope: "channel/c", limit: 50 }], records: ["global-color"] };

/** roundTrip saves a state through JSON, as sessionStorage does. */
function roundTrip(s: SyncState): unknown {
  return JSON.parse(JSON.stringify(s.save()));
}

describe("SyncState save and restore", () => {
  it("restores entries, tombstones and cursors, so the resumed request continues where the saved one was", () => {
    const s = new SyncState(targets);
    s.apply(record("global-color", "global-color", 3, 3, { snapshot: true }));
    s.apply(msg("1", 1, 4, { snapshot: true }));
    s.apply(msg("2", 2, 7, { snapshot: true, text: "hello" }));
    s.apply(synced({ "channel/c": 9 }));
    s.apply(removed("message/c/1", "channel/c", 2, 10));

    const r = SyncState.restore(targets, roundTrip(s));
    expect(r).toBeDefined();
    const req = r!.request();
    expect(req.records.map((t) => [t.key, t.version])).toEqual([["global-color", BigInt(3)]]);
    expect(req.scopes.map((t) => [t.scope, t.afterSeq, t.limit])).toEqual([["channel/c", BigInt(10), 50]]);
    expect(r!.list("message/").map((e) => e.key)).toEqual(["message/c/2"]);
    expect(payloadAs(r!.get("message/c/2"), MessageSchema)?.text).toBe("hello");
    // The tombstone came along: an old version cannot bring it back, and a
    // duplicate of what was held is no update.
    expect(r!.get("message/c/1")?.removed).toBe(true);
    expect(r!.apply(msg("1", 1, 4))).toEqual([]);
    expect(r!.apply(msg("2", 2, 7))).toEqual([]);
    expect(r!.apply(msg("3", 1, 11)).map((u) => u.kind)).toEqual(["record"]);
  });

  it("refuses a saved state of other targets or another window, and garbage", () => {
    const s = new SyncState(targets);
    s.apply(msg("1", 1, 4));
    const saved = roundTrip(s);
    expect(SyncState.restore({ scopes: [{ scope: "channel/c", limit: 50 }] }, saved)).toBeUndefined();
    expect(SyncState.restore({ ...targets, scopes: [{ scope: "channel/c", limit: 20 }] }, saved)).toBeUndefined();
    expect(SyncState.restore({ ...targets, scopes: [{ scope: "channel/d", limit: 50 }] }, saved)).toBeUndefined();
    expect(SyncState.restore(targets, undefined)).toBeUndefined();
    expect(SyncState.restore(targets, { v: 2 })).toBeUndefined();
    expect(SyncState.restore(targets, { ...(saved as SavedState), scopes: [["channel/c", "x", 50]] })).toBeUndefined();
  });
});

describe("Subscription with a store", () => {
  it("starts from the saved state, resumes from its cursors and saves as it goes", async () => {
    const first = new SyncState(targets);
    first.apply(record("global-color", "global-color", 2, 2));
    first.apply(msg("1", 1, 5));
    first.apply(synced({ "channel/c": 6 }));
    let saved: unknown = roundTrip(first);
    const store: StateStore = { load: () => saved, save: (st) => (saved = JSON.parse(JSON.stringify(st))) };

    const requests: SubscribeRequest[] = [];
    async function* open(req: SubscribeRequest): AsyncIterable<SubscribeResponse> {
      requests.push(req);
      yield msg("1", 1, 5); // a repeat: not shown again
      yield msg("2", 1, 7);
      yield synced({ "channel/c": 7 });
      await new Promise(() => {}); // stays open
    }
    const seen: string[] = [];
    const sub = new Subscription(open, targets, {
      store,
      onUpdate: (us) => us.forEach((u) => u.kind === "record" && seen.push(u.entry.key)),
    });
    expect(sub.restored).toBe(true);
    expect(sub.list("message/").map((e) => e.key)).toEqual(["message/c/1"]);
    sub.start();
    await expect.poll(() => sub.synced).toBe(true);
    expect(requests[0].scopes[0].afterSeq).toBe(BigInt(6));
    expect(requests[0].records[0].version).toBe(BigInt(2));
    expect(seen).toEqual(["message/c/2"]);
    sub.saveNow();
    expect(SyncState.restore(targets, saved)!.request().scopes[0].afterSeq).toBe(BigInt(7));
    sub.close();
  });
});
