import type { ListResponse } from "./gen/sluice/sync/v1/sync_pb.js";
import type { Entry } from "./cursors.js";
import type { Subscription } from "./subscription.js";

/** ListPage makes one SyncService.List call; the client passes its SyncService client, tests a fake. */
export type ListPage = (req: { scope: string; beforeSeq: bigint; limit: number }, signal?: AbortSignal) => Promise<ListResponse>;

/** HistoryOptions configure a History. */
export interface HistoryOptions {
  /** pageSize is the List page size (1–500). Default 50. */
  pageSize?: number;
}

const zero = BigInt(0);

/**
 * History pages back through a scope that a Subscription follows with a
 * window (`{ scope, limit: 50 }`): each loadOlder() asks SyncService.List
 * for the page of records just before the oldest one held and merges it
 * into the subscription (a `history` update, oldest first), so the stream
 * and the pages make one list in seq order, each key once (a key the stream
 * already delivered, at that version or later, is skipped; a later edit or
 * removal from the stream wins over an older page).
 *
 * The first page starts before the oldest seq held once the window arrived
 * (`synced`; from the newest when nothing is held); each next one at the `nextBeforeSeq` the last page returned;
 * `exhausted` turns true when it is 0. A reset or revocation of the scope
 * drops the pages with the rest of the scope's state: History starts over
 * from the fresh window, and a page that was in flight meanwhile is
 * discarded. Errors (not_found once the scope became unreadable, a network
 * error) reject loadOlder and leave the position unchanged, so calling it
 * again retries the same page.
 */
export class History {
  private before?: bigint;
  private done = false;
  private epoch: number;
  private inflight?: Promise<Entry[]>;
  private readonly pageSize: number;

  constructor(
    private readonly list: ListPage,
    private readonly sub: Subscription,
    readonly scope: string,
    opts: HistoryOptions = {},
  ) {
    this.pageSize = opts.pageSize ?? 50;
    this.epoch = sub.state.scopeEpoch(scope);
  }

  /** exhausted reports whether the oldest page was loaded (nothing older is left). */
  get exhausted(): boolean {
    this.follow();
    return this.done;
  }

  /** loading reports whether a page is being read. */
  get loading(): boolean {
    return this.inflight !== undefined;
  }

  /**
   * loadOlder reads the next older page and resolves with the entries it
   * added, oldest first (none when exhausted, before the window arrived,
   * or when every record was already held). Concurrent calls share one
   * request.
   */
  loadOlder(signal?: AbortSignal): Promise<Entry[]> {
    if (!this.inflight) {
      this.inflight = this.load(signal).finally(() => (this.inflight = undefined));
    }
    return this.inflight;
  }

  /** follow starts over when the scope was reset or revoked since the last page. */
  private follow(): void {
    const epoch = this.sub.state.scopeEpoch(this.scope);
    if (epoch === this.epoch) return;
    this.epoch = epoch;
    this.before = undefined;
    this.done = false;
  }

  private async load(signal?: AbortSignal): Promise<Entry[]> {
    this.follow();
    const state = this.sub.state;
    if (this.done || !this.sub.synced || !state.following(this.scope)) return [];
    // Nothing held (an empty scope, or a reset whose snapshot has not
    // arrived yet): start from the newest page; what the stream delivers
    // too is merged once.
    const before = this.before ?? state.oldestSeq(this.scope) ?? zero;
    const epoch = this.epoch;
    const res = await this.list({ scope: this.scope, beforeSeq: before, limit: this.pageSize }, signal);
    if (state.scopeEpoch(this.scope) !== epoch || !state.following(this.scope)) return [];
    this.before = res.nextBeforeSeq;
    if (res.nextBeforeSeq <= zero) this.done = true;
    return this.sub.addHistory(this.scope, res.records);
  }
}
