import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethodUnary,
  type DescService,
  type Message,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type Transport } from "@connectrpc/connect";
import { backoffDelay, sleep, type BackoffOptions } from "./backoff.js";
import { idempotencyHeader, isMutating, newIdempotencyKey } from "./idempotency.js";
import { isRetryableCall, retryPolicy } from "./retry.js";

/**
 * StoredCall is one queued call as the storage keeps it: plain data, so
 * IndexedDB can store it as is (structured clone).
 */
export interface StoredCall {
  /** key is the call's Idempotency-Key, sent on every attempt; also its id. */
  key: string;
  /** order is the send order: calls go out in increasing order. */
  order: number;
  /** owner is the user id the call is sent as; only that user's session sends it. */
  owner: string;
  /** procedure is `<package>.<Service>/<Method>`, e.g. `sluice.message.v1.MessageService/PostMessage`. */
  procedure: string;
  /** request is the request message in the protobuf binary format. */
  request: Uint8Array;
  /** createdAt is when the call was made (ms since the epoch). */
  createdAt: number;
  /** failed is set once the server refused the call for good. */
  failed?: { code: number; message: string };
}

/**
 * OutboxStorage keeps queued calls across reloads: IndexedDbStorage in
 * browsers, MemoryStorage in tests and where IndexedDB is missing. Every
 * method resolves once the change is stored.
 */
export interface OutboxStorage {
  /** load returns the calls of owner, in any order. */
  load(owner: string): Promise<StoredCall[]>;
  /** put adds or replaces the call with call.key. */
  put(call: StoredCall): Promise<void>;
  /** delete removes the call with key, if any. */
  delete(key: string): Promise<void>;
}

/** MemoryStorage is an OutboxStorage in memory: it survives an Outbox, not a reload. */
export class MemoryStorage implements OutboxStorage {
  readonly calls = new Map<string, StoredCall>();

  async load(owner: string): Promise<StoredCall[]> {
    return [...this.calls.values()].filter((c) => c.owner === owner).map((c) => structuredClone(c));
  }

  async put(call: StoredCall): Promise<void> {
    this.calls.set(call.key, structuredClone(call));
  }

  async delete(key: string): Promise<void> {
    this.calls.delete(key);
  }
}

/**
 * OutboxState: pending (waiting to be sent, or to be retried after a
 * retryable failure: `error` says which), sending (an attempt is in
 * flight), failed (the server refused it for good: `error`; it stays until
 * retry() or discard()).
 */
export type OutboxState = "pending" | "sending" | "failed";

/** OutboxItem is a queued call, for display and for retry() and discard(). */
export interface OutboxItem {
  readonly key: string;
  readonly method: DescMethodUnary;
  /** request is the decoded request message (e.g. a PostMessageRequest). */
  readonly request: Message;
  readonly createdAt: Date;
  state: OutboxState;
  /** error is the last failure: retryable while pending, the refusal when failed. */
  error?: ConnectError;
  /** attempts counts the attempts made by this Outbox (not those before a reload). */
  attempts: number;
}

/** OutboxEvent is what listeners are told, in order. */
export type OutboxEvent =
  /** change: the items (pending, sending, failed, in send order) changed. */
  | { kind: "change"; items: OutboxItem[] }
  /** sent: the server applied the call (or had applied it: same key); it left the outbox. */
  | { kind: "sent"; item: OutboxItem; response: Message }
  /** failed: the server refused the call; it stays in the outbox as failed. */
  | { kind: "failed"; item: OutboxItem; error: ConnectError };

/** OutboxOptions configure an Outbox. */
export interface OutboxOptions {
  storage: OutboxStorage;
  /**
   * transport sends the calls; it must add the credentials of owner. Its
   * own retries are turned off for outbox calls: the outbox retries.
   */
  transport: Transport;
  /** owner is the signed-in user: only their stored calls are loaded and sent. */
  owner: string;
  /** services lists what may be queued: stored calls are decoded with their methods. */
  services: DescService[];
  /** backoff between attempts of a call that failed retryably (default 250 ms doubling to 5 s). */
  backoff?: BackoffOptions;
  /** timeoutMs bounds each attempt. Default 15000. */
  timeoutMs?: number;
  /** sleep waits between attempts (a test seam); it rejects when signal aborts. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** newKey makes idempotency keys (a test seam). */
  newKey?: () => string;
}

/** OutboxCall is a queued call: its item, and its result. */
export interface OutboxCall<O extends DescMessage> {
  item: OutboxItem;
  /**
   * result resolves with the response once the server applied the call,
   * or rejects with the server's refusal (the item stays, failed). It does
   * not survive a reload: listen() for the calls queued before it.
   */
  result: Promise<MessageShape<O>>;
}

interface Entry {
  item: OutboxItem;
  stored: StoredCall;
  /** saved resolves once the call is in storage; it is not sent before. */
  saved: Promise<void>;
  resolve?: (res: Message) => void;
  reject?: (err: ConnectError) => void;
}

/**
 * Outbox sends mutating calls that must not be lost, even while the server
 * cannot be reached and across page reloads: each call gets an
 * Idempotency-Key and is written to storage before its first attempt;
 * calls are sent one at a time, in the order they were made, each with
 * its stored key on every attempt, so a call whose answer was lost (the
 * server died after committing it, the page reloaded) is applied once. A
 * retryable failure (a network error, unavailable, unknown,
 * deadline_exceeded, resource_exhausted, aborted) keeps the call at the
 * head of the queue and retries it with backoff, without limit; kick()
 * retries at once (call it when a stream comes back live, or on the
 * browser's `online` event). unauthenticated pauses the queue until kick()
 * (log in again first). Any other error is the server's refusal: the call
 * is marked failed, kept in storage and reported (`failed`), and the queue
 * goes on with the next call; retry() sends it again, discard() drops it.
 *
 * One Outbox per signed-in user and page; close() stops it (calls not yet
 * sent stay stored for the next session of the same user). Two tabs of
 * the same user each send the calls they load: the keys make that safe.
 */
export class Outbox {
  private readonly entries: Entry[] = [];
  private readonly methods = new Map<string, DescMethodUnary>();
  private readonly listeners = new Set<(ev: OutboxEvent) => void>();
  private readonly stop = new AbortController();
  private readonly newKey: () => string;
  private nextOrder = Date.now() * 1000;
  private paused = false;
  private wake?: AbortController;
  private waitingForWork = false;
  private kicked = false;
  /** loaded resolves once the stored calls of owner were loaded. */
  readonly loaded: Promise<void>;
  /** done resolves when the send loop stopped (after close()). */
  readonly done: Promise<void>;

  constructor(private readonly opts: OutboxOptions) {
    this.newKey = opts.newKey ?? newIdempotencyKey;
    for (const s of opts.services) {
      for (const m of s.methods) if (m.methodKind === "unary") this.methods.set(procedureOf(m), m as DescMethodUnary);
    }
    this.loaded = this.load();
    this.done = this.loaded.then(() => this.run());
  }

  /** items returns the queued calls (pending, sending, failed) in send order. */
  items(): OutboxItem[] {
    return this.entries.map((e) => e.item);
  }

  /** listen calls fn with every event; it returns the unsubscribe. */
  listen(fn: (ev: OutboxEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * enqueue queues a mutating unary call (its method must be in one of the
   * services given) and returns its item at once, pending.
   */
  enqueue<I extends DescMessage, O extends DescMessage>(method: DescMethodUnary<I, O>, request: MessageInitShape<I>): OutboxCall<O> {
    if (this.stop.signal.aborted) throw new ConnectError("outbox closed", Code.FailedPrecondition);
    if (!isMutating(method)) throw new ConnectError(`${procedureOf(method)} has no side effects: call it directly`, Code.InvalidArgument);
    if (!this.methods.has(procedureOf(method))) throw new ConnectError(`${procedureOf(method)} is not in the outbox's services`, Code.InvalidArgument);
    const msg = create(method.input, request);
    const stored: StoredCall = {
      key: this.newKey(),
      order: this.nextOrder++,
      owner: this.opts.owner,
      procedure: procedureOf(method),
      request: toBinary(method.input, msg),
      createdAt: Date.now(),
    };
    const item: OutboxItem = { key: stored.key, method, request: msg, createdAt: new Date(stored.createdAt), state: "pending", attempts: 0 };
    const entry: Entry = { item, stored, saved: quiet(this.opts.storage.put(stored)) };
    const result = new Promise<MessageShape<O>>((resolve, reject) => {
      entry.resolve = resolve as (res: Message) => void;
      entry.reject = reject;
    });
    result.catch(() => {}); // a refusal is also reported to listeners: never unhandled
    this.entries.push(entry);
    this.changed();
    this.nudge(false);
    return { item, result };
  }

  /** kick retries the call at the head of the queue now, and resumes a paused queue. */
  kick(): void {
    this.paused = false;
    this.nudge(true);
  }

  /**
   * retry sends a failed call again, with its key, in its original place
   * in the order (after the pending calls made before it).
   */
  async retry(key: string): Promise<void> {
    const e = this.entries.find((x) => x.item.key === key);
    if (!e || e.item.state !== "failed") return;
    delete e.stored.failed;
    e.item.state = "pending";
    e.item.error = undefined;
    e.saved = quiet(this.opts.storage.put(e.stored));
    this.changed();
    this.nudge(false);
    await e.saved;
  }

  /** discard drops a call that is not being sent (failed, or pending) from the outbox and storage. */
  async discard(key: string): Promise<void> {
    const i = this.entries.findIndex((x) => x.item.key === key);
    if (i < 0 || this.entries[i].item.state === "sending") return;
    const [e] = this.entries.splice(i, 1);
    e.reject?.(new ConnectError("discarded", Code.Canceled));
    this.changed();
    await e.saved.catch(() => {});
    await this.opts.storage.delete(key);
  }

  /** close stops sending; queued calls stay stored. A call in flight is abandoned (its key makes resending it safe). */
  close(): void {
    if (this.stop.signal.aborted) return;
    this.stop.abort(new ConnectError("outbox closed", Code.Canceled));
    this.wake?.abort();
  }

  get closed(): boolean {
    return this.stop.signal.aborted;
  }

  private async load(): Promise<void> {
    let stored: StoredCall[] = [];
    try {
      stored = await this.opts.storage.load(this.opts.owner);
    } catch (err) {
      console.error("outbox: cannot load stored calls", err);
    }
    stored.sort((a, b) => a.order - b.order);
    const loaded: Entry[] = [];
    for (const s of stored) {
      if (s.owner !== this.opts.owner || this.entries.some((e) => e.stored.key === s.key)) continue;
      this.nextOrder = Math.max(this.nextOrder, s.order + 1);
      const method = this.methods.get(s.procedure);
      let request: Message | undefined;
      try {
        request = method ? fromBinary(method.input, s.request) : undefined;
      } catch {
        request = undefined;
      }
      if (!method || !request) {
        // Made by another version of the app: kept in storage, neither sent nor shown.
        console.warn(`outbox: leaving stored call ${s.key} of ${s.procedure} alone: unknown here`);
        continue;
      }
      const item: OutboxItem = {
        key: s.key,
        method,
        request,
        createdAt: new Date(s.createdAt),
        state: s.failed ? "failed" : "pending",
        error: s.failed ? new ConnectError(s.failed.message, s.failed.code as Code) : undefined,
        attempts: 0,
      };
      loaded.push({ item, stored: s, saved: Promise.resolve() });
    }
    if (loaded.length === 0) return;
    // Stored calls were made before anything queued since this page loaded.
    this.entries.unshift(...loaded);
    this.entries.sort((a, b) => a.stored.order - b.stored.order);
    this.changed();
  }

  private async run(): Promise<void> {
    const wait = this.opts.sleep ?? sleep;
    let failures = 0;
    while (!this.stop.signal.aborted) {
      const e = this.paused ? undefined : this.entries.find((x) => x.item.state === "pending");
      if (!e) {
        await this.idle(undefined, wait);
        continue;
      }
      try {
        await e.saved;
      } catch (err) {
        // Not stored (quota, private mode): sent anyway, but would not survive a reload.
        console.error("outbox: cannot store a call", err);
        e.saved = Promise.resolve();
      }
      if (this.stop.signal.aborted) break;
      e.item.state = "sending";
      e.item.attempts++;
      this.changed();
      let response: Message;
      try {
        const res = await this.opts.transport.unary(
          e.item.method,
          this.stop.signal,
          this.opts.timeoutMs ?? 15_000,
          { [idempotencyHeader]: e.stored.key },
          e.item.request as MessageInitShape<DescMessage>,
          createContextValues().set(retryPolicy, { maxAttempts: 1 }),
        );
        response = res.message;
      } catch (raw) {
        if (this.stop.signal.aborted) {
          e.item.state = "pending";
          break;
        }
        const err = ConnectError.from(raw);
        if (!this.entries.includes(e)) continue;
        if (isRetryableCall(raw) || err.code === Code.Unauthenticated) {
          e.item.state = "pending";
          e.item.error = err;
          this.changed();
          if (err.code === Code.Unauthenticated) {
            this.paused = true;
            continue;
          }
          await this.idle(backoffDelay(failures++, this.opts.backoff), wait);
          continue;
        }
        failures = 0;
        e.item.state = "failed";
        e.item.error = err;
        e.stored.failed = { code: err.code, message: err.rawMessage };
        e.saved = quiet(this.opts.storage.put(e.stored));
        this.emit({ kind: "failed", item: e.item, error: err });
        this.changed();
        e.reject?.(err);
        continue;
      }
      failures = 0;
      this.kicked = false;
      const i = this.entries.indexOf(e);
      if (i >= 0) this.entries.splice(i, 1);
      e.item.error = undefined;
      try {
        await this.opts.storage.delete(e.stored.key);
      } catch (err) {
        console.error("outbox: cannot delete a sent call", err);
      }
      this.emit({ kind: "sent", item: e.item, response });
      this.changed();
      e.resolve?.(response);
    }
  }

  /**
   * idle waits for ms (a backoff, which only kick() and close() end early;
   * skipped once when kick() came while a call was in flight), or, without
   * ms, for anything to do (enqueue, retry, kick, close).
   */
  private async idle(ms: number | undefined, wait: (ms: number, signal: AbortSignal) => Promise<void>): Promise<void> {
    if (ms !== undefined && this.kicked) {
      this.kicked = false;
      return;
    }
    const ctl = new AbortController();
    this.wake = ctl;
    this.waitingForWork = ms === undefined;
    try {
      if (ms !== undefined) await wait(ms, ctl.signal);
      else await new Promise<void>((resolve) => ctl.signal.addEventListener("abort", () => resolve(), { once: true }));
    } catch {
      // woken early
    } finally {
      this.wake = undefined;
      this.kicked = false;
    }
  }

  /** nudge wakes the loop: from a backoff only when urgent (kick), from waiting for work always. */
  private nudge(urgent: boolean): void {
    if (urgent) this.kicked = true;
    if (this.wake && (urgent || this.waitingForWork)) this.wake.abort();
  }

  private changed(): void {
    this.emit({ kind: "change", items: this.items() });
  }

  private emit(ev: OutboxEvent): void {
    for (const fn of [...this.listeners]) {
      try {
        fn(ev);
      } catch (err) {
        console.error("outbox listener", err);
      }
    }
  }
}

/**
 * quiet marks a storage promise as handled (the loop awaits it later, or
 * the caller does) and returns it unchanged.
 */
function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

/** procedureOf names a method as StoredCall.procedure does. */
export function procedureOf(m: { parent: DescService; name: string }): string {
  return `${m.parent.typeName}/${m.name}`;
}
