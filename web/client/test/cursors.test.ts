import { describe, expect, it } from "vitest";
import { SyncState, type Update } from "../src/cursors.js";
import { payloadAs } from "../src/registry.js";
import { MessageSchema } from "../src/gen/sluice/message/v1/message_pb.js";
import { heartbeat, msg, record, removed, reset, revoked, synced, typing } from "./events.js";

function cursors(s: SyncState) {
  const req = s.request();
  return {
    records: Object.fromEntries(req.records.map((r) => [r.key, Number(r.version)])),
    scopes: Object.fromEntries(req.scopes.map((r) => [r.scope, Number(r.afterSeq)])),
  };
}

function kinds(us: Update[]) {
  return us.map((u) => u.kind);
}

describe("SyncState", () => {
  it("asks for a snapshot first, then resumes after the synced cursor", () => {
    const s = new SyncState({ scopes: ["channel/c"], records: ["global-color"] });
    expect(cursors(s)).toEqual({ records: { "global-color": 0 }, scopes: { "channel/c": 0 } });

    expect(kinds(s.apply(record("global-color", "global-color", 3, 3, { snapshot: true })))).toEqual(["record"]);
    expect(kinds(s.apply(msg("1", 1, 4, { snapshot: true })))).toEqual(["record"]);
    expect(kinds(s.apply(msg("2", 2, 7, { snapshot: true })))).toEqual(["record"]);
    // The scope's newest change (seq 9) was a deletion, absent from the
    // snapshot: only the synced cursor tells the client it is at 9.
    expect(kinds(s.apply(synced({ "channel/c": 9 })))).toEqual(["synced"]);
    expect(cursors(s)).toEqual({ records: { "global-color": 3 }, scopes: { "channel/c": 9 } });
    expect(s.list("message/").map((e) => e.key)).toEqual(["message/c/1", "message/c/2"]);
  });

  it("moves a scope cursor with every event of the scope, so a drop mid-catch-up resumes where it stopped", () => {
    const s = new SyncState({ scopes: [{ scope: "channel/c", afterSeq: BigInt(4) }] });
    s.apply(msg("1", 2, 5));
    s.apply(msg("2", 1, 6));
    // Dropped here, before synced: resume after 6, not 4 (that would repeat
    // 5 and 6) and not the server's final cursor (unknown yet).
    expect(cursors(s).scopes).toEqual({ "channel/c": 6 });
  });

  it("drops duplicates and stale versions, and reports each version once", () => {
    const s = new SyncState({ scopes: ["channel/c"] });
    expect(kinds(s.apply(msg("1", 1, 1)))).toEqual(["record"]);
    expect(s.apply(msg("1", 1, 1))).toEqual([]); // at-least-once repeat
    expect(kinds(s.apply(msg("1", 3, 3, { coalesced: true })))).toEqual(["record"]); // v2 skipped
    expect(s.apply(msg("1", 2, 2))).toEqual([]); // late, older
    expect(s.get("message/c/1")?.version).toBe(BigInt(3));
    expect(payloadAs(s.get("message/c/1"), MessageSchema)?.text).toBe("message/c/1 v3");
  });

  it("keeps a tombstone so an older version cannot bring a removed record back", () => {
    const s = new SyncState({ scopes: ["channel/c"] });
    s.apply(msg("1", 1, 1));
    const u = s.apply(removed("message/c/1", "channel/c", 2, 2));
    expect(kinds(u)).toEqual(["removed"]);
    expect(s.apply(msg("1", 1, 1))).toEqual([]);
    expect(s.list("message/")).toEqual([]);
    expect(s.hasVersion("message/c/1", BigInt(2))).toBe(true);
    expect(cursors(s).scopes).toEqual({ "channel/c": 2 });
  });

  it("never moves a cursor backwards on a synced event", () => {
    const s = new SyncState({ scopes: [{ scope: "channel/c", afterSeq: BigInt(10) }] });
    s.apply(msg("1", 1, 11));
    s.apply(synced({ "channel/c": 8 }));
    expect(cursors(s).scopes).toEqual({ "channel/c": 11 });
  });

  it("on reset drops the scope's entries and takes the snapshot that follows", () => {
    const s = new SyncState({ scopes: [{ scope: "channel/c", afterSeq: BigInt(3) }], records: ["global-color"] });
    s.apply(record("global-color", "global-color", 1, 1));
    s.apply(msg("1", 1, 4));
    s.apply(msg("2", 1, 5));
    const u = s.apply(reset("channel/c", 100));
    expect(u).toHaveLength(1);
    expect(u[0].kind).toBe("reset");
    if (u[0].kind === "reset") expect(u[0].dropped.map((e) => e.key).sort()).toEqual(["message/c/1", "message/c/2"]);
    expect(cursors(s).scopes).toEqual({ "channel/c": 0 });
    expect(s.list("message/")).toEqual([]);
    expect(s.get("global-color")).toBeDefined(); // other scopes untouched
    // The fresh snapshot may hold the same version again: it is taken.
    expect(kinds(s.apply(msg("2", 1, 5, { snapshot: true })))).toEqual(["record"]);
    expect(kinds(s.apply(msg("9", 1, 120, { snapshot: true })))).toEqual(["record"]);
    s.apply(synced({ "channel/c": 121 }));
    expect(cursors(s).scopes).toEqual({ "channel/c": 121 });
    expect(s.list("message/").map((e) => e.key)).toEqual(["message/c/2", "message/c/9"]);
  });

  it("ignores a reset of a scope it does not follow", () => {
    const s = new SyncState({ records: ["global-color"] });
    expect(s.apply(reset("channel/c", 1))).toEqual([]);
  });

  it("forgets a revoked target: its entries go and the next request leaves it out", () => {
    const s = new SyncState({ scopes: ["channel/c", "channel/d"], records: ["permissions/userA"] });
    s.apply(msg("1", 1, 1));
    s.apply(record("permissions/userA", "permissions/userA", 2, 2));
    const u = s.apply(revoked({ scope: "channel/c" }));
    expect(u[0].kind).toBe("revoked");
    if (u[0].kind === "revoked") expect(u[0].dropped.map((e) => e.key)).toEqual(["message/c/1"]);
    s.apply(revoked({ key: "permissions/userA" }));
    expect(cursors(s)).toEqual({ records: {}, scopes: { "channel/d": 0 } });
    expect(s.empty).toBe(false);
    s.apply(revoked({ scope: "channel/d" }));
    expect(s.empty).toBe(true);
  });

  it("passes ephemeral events through and ignores heartbeats", () => {
    const s = new SyncState({ scopes: ["channel/c"] });
    expect(s.apply(heartbeat())).toEqual([]);
    const u = s.apply(typing("userB"));
    expect(u).toHaveLength(1);
    expect(u[0].kind === "ephemeral" && u[0].event.from).toBe("userB");
    expect(cursors(s).scopes).toEqual({ "channel/c": 0 });
  });

  it("keeps record cursors at the highest version seen, tombstones included", () => {
    const s = new SyncState({ records: [{ key: "user/userA", version: BigInt(2) }, "user/userB"] });
    s.apply(record("user/userA", "user/userA", 5, 5));
    s.apply(record("user/userA", "user/userA", 4, 4));
    s.apply(removed("user/userB", "user/userB", 7, 7));
    expect(cursors(s).records).toEqual({ "user/userA": 5, "user/userB": 7 });
  });

  it("merges duplicate targets into one, keeping the furthest cursor", () => {
    const s = new SyncState({ scopes: [{ scope: "channel/c", afterSeq: BigInt(4) }, "channel/c"], records: ["a", { key: "a", version: BigInt(3) }] });
    expect(cursors(s)).toEqual({ records: { a: 3 }, scopes: { "channel/c": 4 } });
  });

  it("keeps a window's limit on every request, resumed or reset", () => {
    const s = new SyncState({ scopes: [{ scope: "channel/c", limit: 50 }, "channel/d"] });
    const limits = () => Object.fromEntries(s.request().scopes.map((t) => [t.scope, [Number(t.afterSeq), t.limit]]));
    expect(limits()).toEqual({ "channel/c": [0, 50], "channel/d": [0, 0] });
    s.apply(msg("1", 1, 7, { snapshot: true }));
    s.apply(synced({ "channel/c": 7 }));
    expect(limits()["channel/c"]).toEqual([7, 50]);
    s.apply(reset("channel/c", 100));
    expect(limits()["channel/c"]).toEqual([0, 50]);
  });

  it("merges history without moving cursors, duplicating, or resurrecting", () => {
    const s = new SyncState({ scopes: [{ scope: "channel/c", limit: 2 }] });
    s.apply(msg("5", 1, 5, { snapshot: true }));
    s.apply(msg("6", 1, 6, { snapshot: true }));
    s.apply(synced({ "channel/c": 6 }));
    s.apply(removed("message/c/4", "channel/c", 2, 7));
    expect(s.oldestSeq("channel/c")).toBe(BigInt(5));
    const rec = (id: string, v: number, seq: number) => {
      const ev = msg(id, v, seq);
      return ev.event.case === "record" ? ev.event.value.record! : undefined!;
    };
    const added = s.merge([rec("9", 1, 9), rec("6", 1, 6), rec("4", 1, 4), rec("3", 1, 3), rec("2", 1, 2)]);
    expect(added.map((e) => e.key)).toEqual(["message/c/2", "message/c/3", "message/c/9"]);
    expect(s.list("message/").map((e) => e.key)).toEqual(["message/c/2", "message/c/3", "message/c/5", "message/c/6", "message/c/9"]);
    expect(cursors(s).scopes).toEqual({ "channel/c": 7 });
    expect(s.merge([{ ...rec("1", 1, 1), scope: "channel/other" }])).toEqual([]);
  });
});
