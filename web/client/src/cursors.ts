import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  RecordSchema,
  SubscribeRequestSchema,
  type EphemeralEvent,
  type Record as SyncRecord,
  type SubscribeRequest,
  type SubscribeResponse,
} from "./gen/sluice/sync/v1/sync_pb.js";

/** RecordCursor names a record target and the version the client holds. */
export interface RecordCursor {
  key: string;
  /** version held; 0 or absent means none. */
  version?: bigint;
}

/** ScopeCursor names a scope target and the last scope seq the client saw. */
export interface ScopeCursor {
  scope: string;
  /** afterSeq is the last seq seen; 0 or absent asks for a snapshot. */
  afterSeq?: bigint;
  /**
   * limit, above 0, is a window: the snapshot holds only the `limit`
   * records with the newest seqs (at most 1000); page older ones with
   * `History` (SyncService.List). Kept on every resumed request, so a
   * reset brings a windowed snapshot again.
   */
  limit?: number;
}

/**
 * Targets name what one stream follows: single records (`user/userA`,
 * `global-color`) and whole scopes (`channel/<id>`). A record that lies in a
 * scope the same stream follows should not be named again: the scope
 * already delivers it.
 */
export interface Targets {
  records?: Array<string | RecordCursor>;
  scopes?: Array<string | ScopeCursor>;
}

/**
 * Entry is the client's copy of one record: its latest version, or a
 * tombstone (removed) that is kept so an older version can never bring the
 * record back.
 */
export interface Entry {
  key: string;
  scope: string;
  version: bigint;
  seq: bigint;
  removed: boolean;
  /** record is the delivered record; undefined for a tombstone. */
  record?: SyncRecord;
  updatedBy: string;
  updatedAt?: Date;
}

/**
 * Update is one change of the client state, in stream order. Duplicates and
 * stale versions never produce an Update.
 */
export type Update =
  | { kind: "record"; entry: Entry; previous?: Entry; snapshot: boolean; coalesced: boolean }
  | { kind: "removed"; entry: Entry; previous?: Entry }
  /** reset: the scope's entries were dropped; a fresh snapshot follows. */
  | { kind: "reset"; scope: string; dropped: Entry[] }
  /** synced: catch-up is over (after every (re)connection). */
  | { kind: "synced" }
  /** revoked: access to a target was lost; its entries were dropped. */
  | { kind: "revoked"; key: string; scope: string; reason: string; dropped: Entry[] }
  /** history: older records of a scope, paged with List, were added (oldest first). */
  | { kind: "history"; scope: string; entries: Entry[] }
  | { kind: "ephemeral"; event: EphemeralEvent };

function normalizeRecord(t: string | RecordCursor): RecordCursor {
  return typeof t === "string" ? { key: t } : t;
}

function normalizeScope(t: string | ScopeCursor): ScopeCursor {
  return typeof t === "string" ? { scope: t } : t;
}

const zero = BigInt(0);

function toEntry(r: SyncRecord): Entry {
  return {
    key: r.key,
    scope: r.scope,
    version: r.version,
    seq: r.seq,
    removed: false,
    record: r,
    updatedBy: r.updatedBy,
    updatedAt: r.updatedAt ? timestampDate(r.updatedAt) : undefined,
  };
}

/** bySeq orders entries by scope seq (then key): commit order. */
function bySeq(a: Entry, b: Entry): number {
  return a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

function max(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

/**
 * SavedState is a SyncState written down (SyncState.save) to be restored
 * after a page reload (SyncState.restore): the targets with their cursors
 * and every entry held. Plain JSON; bigints are decimal strings, records
 * base64 protobuf.
 */
export interface SavedState {
  v: 1;
  records: Array<[key: string, version: string]>;
  scopes: Array<[scope: string, afterSeq: string, limit: number]>;
  entries: SavedEntry[];
}

/** SavedEntry is one entry of a SavedState: the record, or a tombstone's fields. */
export interface SavedEntry {
  key: string;
  scope: string;
  version: string;
  seq: string;
  updatedBy: string;
  /** updatedAt in ms since the epoch. */
  updatedAt?: number;
  /** record is the record as base64 protobuf; absent for a tombstone. */
  record?: string;
}

function toBase64(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * SyncState is the client side of the stream contract (docs/API.md, "Client
 * rules"): it keeps, per record target, the highest version held and, per
 * scope target, the last seq seen, merges every event into one map of
 * entries by key, drops duplicates and stale versions (a resumed stream or
 * an at-least-once relay may repeat a change), and builds the request that
 * resumes a dropped stream without losing or repeating an update.
 *
 * Scope cursors may move on every record or tombstone of the scope, because
 * the server sends a scope's events in seq order (snapshots and coalesced
 * re-reads included); SyncedEvent cursors are taken as well, and a
 * ResetEvent starts the scope over. It holds no timers and does no I/O: one
 * SyncState belongs to one Subscription and is not safe for concurrent
 * mutation.
 */
export class SyncState {
  private readonly recordTargets = new Map<string, bigint>();
  private readonly scopeTargets = new Map<string, bigint>();
  private readonly scopeLimits = new Map<string, number>();
  private readonly scopeEpochs = new Map<string, number>();
  private readonly entries = new Map<string, Entry>();

  constructor(targets: Targets) {
    for (const t of targets.records ?? []) {
      const r = normalizeRecord(t);
      this.recordTargets.set(r.key, max(this.recordTargets.get(r.key) ?? zero, r.version ?? zero));
    }
    for (const t of targets.scopes ?? []) {
      const s = normalizeScope(t);
      this.scopeTargets.set(s.scope, max(this.scopeTargets.get(s.scope) ?? zero, s.afterSeq ?? zero));
      if (s.limit !== undefined && s.limit > 0) this.scopeLimits.set(s.scope, s.limit);
    }
  }

  /**
   * save writes the state down: targets, cursors and entries, consistent
   * with each other (the cursors never claim more than the entries hold).
   */
  save(): SavedState {
    return {
      v: 1,
      records: [...this.recordTargets].map(([key, version]) => [key, version.toString()]),
      scopes: [...this.scopeTargets].map(([scope, seq]) => [scope, seq.toString(), this.scopeLimits.get(scope) ?? 0]),
      entries: [...this.entries.values()].map((e) => ({
        key: e.key,
        scope: e.scope,
        version: e.version.toString(),
        seq: e.seq.toString(),
        updatedBy: e.updatedBy,
        updatedAt: e.updatedAt?.getTime(),
        record: e.record ? toBase64(toBinary(RecordSchema, e.record)) : undefined,
      })),
    };
  }

  /**
   * restore returns the state saved for exactly these targets (the same
   * record keys, scopes and windows), with its entries and cursors, so a
   * stream resumes where the saved one was instead of starting over; or
   * undefined when saved is missing, malformed or for other targets.
   */
  static restore(targets: Targets, saved: unknown): SyncState | undefined {
    const want = new SyncState(targets);
    try {
      const sv = saved as SavedState;
      if (sv?.v !== 1 || !Array.isArray(sv.records) || !Array.isArray(sv.scopes) || !Array.isArray(sv.entries)) return undefined;
      const recs = new Map(sv.records.map(([k, v]) => [k, BigInt(v)]));
      const scopes = new Map(sv.scopes.map(([sc, seq, limit]) => [sc, { seq: BigInt(seq), limit }]));
      if (recs.size !== want.recordTargets.size || scopes.size !== want.scopeTargets.size) return undefined;
      for (const k of want.recordTargets.keys()) if (!recs.has(k)) return undefined;
      for (const sc of want.scopeTargets.keys()) {
        if (scopes.get(sc)?.limit !== (want.scopeLimits.get(sc) ?? 0)) return undefined;
      }
      const st = new SyncState(targets);
      for (const [k, v] of recs) st.recordTargets.set(k, max(v, st.recordTargets.get(k) ?? zero));
      for (const [sc, { seq }] of scopes) st.scopeTargets.set(sc, max(seq, st.scopeTargets.get(sc) ?? zero));
      for (const e of sv.entries) {
        if (e.record !== undefined) {
          st.entries.set(e.key, toEntry(fromBinary(RecordSchema, fromBase64(e.record))));
        } else {
          st.entries.set(e.key, {
            key: e.key,
            scope: e.scope,
            version: BigInt(e.version),
            seq: BigInt(e.seq),
            removed: true,
            updatedBy: e.updatedBy,
            updatedAt: e.updatedAt !== undefined ? new Date(e.updatedAt) : undefined,
          });
        }
      }
      return st;
    } catch {
      return undefined;
    }
  }

  /** empty reports whether no target is left (all revoked, or none given). */
  get empty(): boolean {
    return this.recordTargets.size === 0 && this.scopeTargets.size === 0;
  }

  /** request returns the SubscribeRequest that resumes from the cursors held. */
  request(): SubscribeRequest {
    return create(SubscribeRequestSchema, {
      records: [...this.recordTargets].map(([key, version]) => ({ key, version })),
      scopes: [...this.scopeTargets].map(([scope, afterSeq]) => ({ scope, afterSeq, limit: this.scopeLimits.get(scope) ?? 0 })),
    });
  }

  /** scopeCursor returns the last seq seen of a scope target. */
  scopeCursor(scope: string): bigint | undefined {
    return this.scopeTargets.get(scope);
  }

  /** following reports whether scope is one of the (not revoked) scope targets. */
  following(scope: string): boolean {
    return this.scopeTargets.has(scope);
  }

  /**
   * scopeEpoch counts the resets and revocations of a scope: a page of
   * history read before one of them belongs to state that is gone.
   */
  scopeEpoch(scope: string): number {
    return this.scopeEpochs.get(scope) ?? 0;
  }

  /**
   * oldestSeq returns the smallest seq among the entries held of a scope
   * (tombstones included), or undefined when none is held: where the
   * history before a window starts.
   */
  oldestSeq(scope: string): bigint | undefined {
    let min: bigint | undefined;
    for (const e of this.entries.values()) {
      if (e.scope === scope && (min === undefined || e.seq < min)) min = e.seq;
    }
    return min;
  }

  /**
   * merge adds records read outside the stream (a List page of a scope
   * this state follows) and returns the entries it added, oldest first.
   * A key already held at the same or a newer version, a tombstone
   * included, is left alone, so history never duplicates or resurrects
   * what the stream delivered. Cursors do not move: a page may be newer
   * than the stream's position, and skipping ahead would lose changes.
   */
  merge(records: SyncRecord[]): Entry[] {
    const added: Entry[] = [];
    for (const r of records) {
      if (!this.scopeTargets.has(r.scope)) continue;
      const held = this.entries.get(r.key);
      if (held && held.version >= r.version) continue;
      const entry = toEntry(r);
      this.entries.set(r.key, entry);
      added.push(entry);
    }
    return added.sort(bySeq);
  }

  /** recordCursor returns the version held of a record target. */
  recordCursor(key: string): bigint | undefined {
    return this.recordTargets.get(key);
  }

  /** get returns the entry of a key (a tombstone when removed). */
  get(key: string): Entry | undefined {
    return this.entries.get(key);
  }

  /**
   * list returns the live (not removed) entries whose key starts with
   * prefix, in scope seq order.
   */
  list(prefix = ""): Entry[] {
    const out: Entry[] = [];
    for (const e of this.entries.values()) {
      if (!e.removed && e.key.startsWith(prefix)) out.push(e);
    }
    return out.sort(bySeq);
  }

  /**
   * hasVersion reports whether the client holds key at version or later
   * (a tombstone counts: the write was a removal, or a later one removed it).
   */
  hasVersion(key: string, version: bigint): boolean {
    const e = this.entries.get(key);
    return e !== undefined && e.version >= version;
  }

  /** apply merges one stream event and returns what changed. */
  apply(res: SubscribeResponse): Update[] {
    const ev = res.event;
    switch (ev.case) {
      case "record": {
        const r = ev.value.record;
        if (!r) return [];
        return this.put(
          toEntry(r),
          ev.value.snapshot,
          ev.value.coalesced,
        );
      }
      case "removed": {
        const r = ev.value;
        return this.put(
          {
            key: r.key,
            scope: r.scope,
            version: r.version,
            seq: r.seq,
            removed: true,
            updatedBy: r.updatedBy,
            updatedAt: r.updatedAt ? timestampDate(r.updatedAt) : undefined,
          },
          false,
          false,
        );
      }
      case "synced": {
        for (const sc of ev.value.scopes) {
          const cur = this.scopeTargets.get(sc.scope);
          if (cur !== undefined) this.scopeTargets.set(sc.scope, max(cur, sc.afterSeq));
        }
        return [{ kind: "synced" }];
      }
      case "reset": {
        const scope = ev.value.scope;
        if (!this.scopeTargets.has(scope)) return [];
        this.scopeTargets.set(scope, zero);
        this.bumpEpoch(scope);
        return [{ kind: "reset", scope, dropped: this.dropScope(scope) }];
      }
      case "revoked": {
        const { key, scope, reason } = ev.value;
        let dropped: Entry[] = [];
        if (key !== "") {
          this.recordTargets.delete(key);
          const e = this.entries.get(key);
          if (e) {
            this.entries.delete(key);
            dropped = [e];
          }
        }
        if (scope !== "") {
          this.scopeTargets.delete(scope);
          this.scopeLimits.delete(scope);
          this.bumpEpoch(scope);
          dropped = dropped.concat(this.dropScope(scope));
        }
        return [{ kind: "revoked", key, scope, reason, dropped }];
      }
      case "ephemeral":
        return [{ kind: "ephemeral", event: ev.value }];
      default:
        // Heartbeats, and event kinds newer than this client.
        return [];
    }
  }

  private put(entry: Entry, snapshot: boolean, coalesced: boolean): Update[] {
    // The scope's events arrive in seq order, so its cursor may follow
    // them even when the record itself is a duplicate.
    const cur = this.scopeTargets.get(entry.scope);
    if (cur !== undefined) this.scopeTargets.set(entry.scope, max(cur, entry.seq));
    const rc = this.recordTargets.get(entry.key);
    if (rc !== undefined) this.recordTargets.set(entry.key, max(rc, entry.version));

    const previous = this.entries.get(entry.key);
    if (previous && previous.version >= entry.version) return [];
    this.entries.set(entry.key, entry);
    if (entry.removed) return [{ kind: "removed", entry, previous }];
    return [{ kind: "record", entry, previous, snapshot, coalesced }];
  }

  private bumpEpoch(scope: string): void {
    this.scopeEpochs.set(scope, this.scopeEpoch(scope) + 1);
  }

  private dropScope(scope: string): Entry[] {
    const dropped: Entry[] = [];
    for (const [key, e] of this.entries) {
      if (e.scope === scope) {
        dropped.push(e);
        this.entries.delete(key);
      }
    }
    return dropped;
  }
}
