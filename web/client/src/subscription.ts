import { Code, ConnectError } from "@connectrpc/connect";
import type { Record as SyncRecord, SubscribeRequest, SubscribeResponse } from "./gen/sluice/sync/v1/sync_pb.js";
import { SyncState, type Entry, type Targets, type Update } from "./cursors.js";
import type { StateStore } from "./persist.js";
import { Resumable, type AttemptHooks, type ResumeOptions } from "./resumable.js";

/**
 * OpenStream opens one SyncService.Subscribe call; the signal ends it. The
 * client passes its generated SyncService client here; tests pass a fake.
 */
export type OpenStream = (req: SubscribeRequest, signal: AbortSignal) => AsyncIterable<SubscribeResponse>;

/** SubscriptionOptions configure a Subscription. */
export interface SubscriptionOptions extends ResumeOptions {
  /**
   * onUpdate receives the state changes of each event, in order, after the
   * state was updated. Duplicates never reach it.
   */
  onUpdate?: (updates: Update[], sub: Subscription) => void;
  /**
   * store keeps the state across page reloads: the subscription starts
   * from the state saved there for the same targets (if any), so its
   * stream resumes from the saved cursors and nothing already shown is
   * delivered again, and saves the state shortly after every change and
   * when the page is hidden or unloaded.
   */
  store?: StateStore;
}

/** saveDelayMs coalesces the saves of a burst of updates. */
const saveDelayMs = 250;

/** WaitOptions bound waitForVersion. */
export interface WaitOptions {
  /** timeoutMs rejects the wait after this long. Default 10000. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Visible is a write's visibility token (RecordVersion) or any key and version. */
export interface Visible {
  key: string;
  version: bigint;
}

interface Waiter {
  key: string;
  version: bigint;
  resolve: (e: Entry) => void;
  reject: (err: unknown) => void;
}

/**
 * Subscription follows records and scopes over SyncService.Subscribe and
 * keeps them in a SyncState. When the stream drops (server restart, network
 * loss, idle timeout) it resumes with the cursors it holds, after a backoff
 * with jitter, so no update is lost or delivered twice; a permanent error
 * (unauthenticated, not_found, …) closes it. It never changes state on its
 * own: entries change only when the stream delivers them. Use it from one
 * thread (the browser's); the caller must call close().
 */
export class Subscription extends Resumable {
  /** state is the client's copy of the followed records. */
  readonly state: SyncState;
  /** synced is true once the first catch-up finished. */
  synced = false;
  /**
   * restored is true when the state was restored from opts.store: the
   * entries are there before the stream delivers anything.
   */
  readonly restored: boolean;

  private readonly waiters = new Set<Waiter>();
  private saveTimer?: ReturnType<typeof setTimeout>;
  private readonly flush = () => this.saveNow();

  constructor(
    private readonly open: OpenStream,
    targets: Targets,
    private readonly opts: SubscriptionOptions = {},
  ) {
    super(opts);
    const saved = opts.store ? SyncState.restore(targets, opts.store.load()) : undefined;
    this.restored = saved !== undefined;
    this.state = saved ?? new SyncState(targets);
    if (opts.store) globalThis.addEventListener?.("pagehide", this.flush);
  }

  /** saveNow writes the state to opts.store at once (a no-op without one). */
  saveNow(): void {
    clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    this.opts.store?.save(this.state.save());
  }

  private scheduleSave(): void {
    if (this.opts.store && this.saveTimer === undefined) this.saveTimer = setTimeout(this.flush, saveDelayMs);
  }

  protected async attempt(signal: AbortSignal, hooks: AttemptHooks): Promise<boolean> {
    if (this.state.empty) return true;
    for await (const res of this.open(this.state.request(), signal)) {
      hooks.alive();
      const updates = this.state.apply(res);
      if (res.event.case === "synced") {
        this.synced = true;
        hooks.healthy();
      }
      if (updates.length > 0) {
        this.opts.onUpdate?.(updates, this);
        this.settle();
      }
      // Cursors move on duplicates and synced markers too.
      this.scheduleSave();
      if (this.state.empty) return true;
    }
    return false;
  }

  protected onClosed(error?: ConnectError): void {
    if (this.opts.store) {
      globalThis.removeEventListener?.("pagehide", this.flush);
      this.saveNow();
    }
    const err = error ?? new ConnectError("subscription closed", Code.Canceled);
    for (const w of this.waiters) w.reject(err);
    this.waiters.clear();
  }

  /**
   * addHistory merges records of a followed scope read outside the stream
   * (a SyncService.List page; see History): keys already held at that
   * version or later are skipped, cursors do not move. The added entries
   * reach onUpdate as one `history` update; they are returned oldest first.
   */
  addHistory(scope: string, records: SyncRecord[]): Entry[] {
    const entries = this.state.merge(records.filter((r) => r.scope === scope));
    if (entries.length > 0) {
      this.opts.onUpdate?.([{ kind: "history", scope, entries }], this);
      this.settle();
      this.scheduleSave();
    }
    return entries;
  }

  /** get returns the entry of a key, if held. */
  get(key: string): Entry | undefined {
    return this.state.get(key);
  }

  /** list returns the live entries whose key starts with prefix, in seq order. */
  list(prefix = ""): Entry[] {
    return this.state.list(prefix);
  }

  /**
   * waitForVersion resolves with the entry once the stream delivered key at
   * version or later: pass the `written` RecordVersion a write RPC returned
   * to wait until this client sees its own write. It rejects after
   * timeoutMs, on the signal, or when the subscription closes.
   */
  waitForVersion(token: Visible, opts: WaitOptions = {}): Promise<Entry> {
    const held = this.state.get(token.key);
    if (held && held.version >= token.version) return Promise.resolve(held);
    if (opts.signal?.aborted) return Promise.reject(opts.signal.reason);
    if (this.closed) {
      return Promise.reject(this.error ?? new ConnectError("subscription closed", Code.Canceled));
    }
    return new Promise<Entry>((resolve, reject) => {
      const timeoutMs = opts.timeoutMs ?? 10_000;
      const cleanup = () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
        this.waiters.delete(waiter);
      };
      const waiter: Waiter = {
        key: token.key,
        version: token.version,
        resolve: (e) => {
          cleanup();
          resolve(e);
        },
        reject: (err) => {
          cleanup();
          reject(err);
        },
      };
      const onAbort = () => waiter.reject(opts.signal?.reason);
      const timer = setTimeout(
        () =>
          waiter.reject(
            new ConnectError(`${token.key} v${token.version} not seen within ${timeoutMs} ms`, Code.DeadlineExceeded),
          ),
        timeoutMs,
      );
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.add(waiter);
    });
  }

  private settle(): void {
    for (const w of [...this.waiters]) {
      const e = this.state.get(w.key);
      if (e && e.version >= w.version) w.resolve(e);
    }
  }
}
