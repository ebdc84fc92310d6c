import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { DescService } from "@bufbuild/protobuf";
import { createClient, createContextValues, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AccessService } from "./gen/sluice/access/v1/access_pb.js";
import { AuthService } from "./gen/sluice/auth/v1/auth_pb.js";
import { ChannelService } from "./gen/sluice/channel/v1/channel_pb.js";
import { ColorService } from "./gen/sluice/color/v1/color_pb.js";
import { MessageService } from "./gen/sluice/message/v1/message_pb.js";
import { OrgService } from "./gen/sluice/org/v1/org_pb.js";
import { SyncService } from "./gen/sluice/sync/v1/sync_pb.js";
import { UserService } from "./gen/sluice/user/v1/user_pb.js";
import { AccessWatch, type AccessWatchOptions, type Question } from "./access.js";
import type { Targets } from "./cursors.js";
import { History, type HistoryOptions } from "./history.js";
import { idempotencyInterceptor } from "./idempotency.js";
import { IndexedDbStorage } from "./idb.js";
import { MemoryStorage, Outbox, type OutboxOptions, type OutboxStorage } from "./outbox.js";
import type { Resumable } from "./resumable.js";
import { retryInterceptor, retryPolicy, type RetryOptions } from "./retry.js";
import { Subscription, type SubscriptionOptions } from "./subscription.js";

/** SluiceOptions configure a Sluice client. Every field is optional. */
export interface SluiceOptions {
  /** baseUrl of the server; default the page's origin. */
  baseUrl?: string;
  /** fetch replaces the global fetch (tests, Node). */
  fetch?: typeof globalThis.fetch;
  /** useBinaryFormat: protobuf on the wire (default) or JSON (readable in devtools). */
  useBinaryFormat?: boolean;
  /**
   * retry bounds the automatic retries of mutating calls (5 attempts in
   * all by default; `{ maxAttempts: 1 }` turns them off).
   */
  retry?: RetryOptions;
  /** interceptors run before the client's own (outermost first). */
  interceptors?: Interceptor[];
}

/** OpenOutboxOptions configure Sluice.openOutbox. */
export type OpenOutboxOptions = Partial<Omit<OutboxOptions, "transport" | "owner" | "services">>;

/** services are the Sluice services, for the outbox to decode stored calls. */
export const services: DescService[] = [AuthService, UserService, SyncService, AccessService, ColorService, OrgService, ChannelService, MessageService];

/** Session is the signed-in user, as the server describes it. */
export interface Session {
  userId: string;
  roles: string[];
  expiresAt?: Date;
}

/**
 * Sluice is a client of one Sluice server: typed clients for every service,
 * the session token (held in memory only, never in storage), and the live
 * streams opened through it. Every call carries `Authorization: Bearer
 * <token>` once logged in. Use it from one thread (the browser's).
 */
export class Sluice {
  readonly transport: Transport;
  readonly auth: Client<typeof AuthService>;
  readonly user: Client<typeof UserService>;
  readonly sync: Client<typeof SyncService>;
  readonly access: Client<typeof AccessService>;
  readonly color: Client<typeof ColorService>;
  readonly org: Client<typeof OrgService>;
  readonly channel: Client<typeof ChannelService>;
  readonly message: Client<typeof MessageService>;

  /** session is the signed-in user; undefined before login and after logout. */
  session?: Session;

  private token?: string;
  private readonly streams = new Set<Resumable>();
  private readonly outboxes = new Set<Outbox>();

  constructor(opts: SluiceOptions = {}) {
    const bearer: Interceptor = (next) => (req) => {
      if (this.token !== undefined) req.header.set("Authorization", `Bearer ${this.token}`);
      return next(req);
    };
    this.transport = createConnectTransport({
      baseUrl: opts.baseUrl ?? globalThis.location?.origin ?? "",
      useBinaryFormat: opts.useBinaryFormat ?? true,
      fetch: opts.fetch,
      // Outermost first: the key is set once per logical call, so every
      // retry sends the same one, and each attempt gets the current token.
      interceptors: [...(opts.interceptors ?? []), idempotencyInterceptor(), retryInterceptor(opts.retry), bearer],
    });
    this.auth = createClient(AuthService, this.transport);
    this.user = createClient(UserService, this.transport);
    this.sync = createClient(SyncService, this.transport);
    this.access = createClient(AccessService, this.transport);
    this.color = createClient(ColorService, this.transport);
    this.org = createClient(OrgService, this.transport);
    this.channel = createClient(ChannelService, this.transport);
    this.message = createClient(MessageService, this.transport);
  }

  /**
   * login opens a session and keeps its token in memory. It rejects with
   * ConnectError unauthenticated for a wrong username or password.
   */
  async login(username: string, password: string): Promise<Session> {
    const res = await this.auth.login({ username, password });
    this.token = res.token;
    try {
      const who = await this.auth.whoAmI({});
      this.session = {
        userId: who.userId,
        roles: who.roles,
        expiresAt: who.sessionExpiresAt ? timestampDate(who.sessionExpiresAt) : undefined,
      };
    } catch (err) {
      this.token = undefined;
      throw err;
    }
    return this.session;
  }

  /**
   * logout closes every stream and outbox opened through this client,
   * revokes the session on the server (best effort: one attempt of at most
   * 5 s) and forgets the token. Calls still in an outbox stay stored for
   * the user's next session.
   */
  async logout(): Promise<void> {
    this.closeStreams();
    for (const o of [...this.outboxes]) o.close();
    try {
      if (this.token !== undefined) {
        await this.auth.logout({}, { timeoutMs: 5000, contextValues: createContextValues().set(retryPolicy, { maxAttempts: 1 }) });
      }
    } finally {
      this.token = undefined;
      this.session = undefined;
    }
  }

  /** signedIn reports whether a token is held. */
  get signedIn(): boolean {
    return this.token !== undefined;
  }

  /**
   * subscribe follows targets live and returns the started Subscription;
   * the caller must close() it (logout closes it too).
   */
  subscribe(targets: Targets, opts: SubscriptionOptions = {}): Subscription {
    const sub = new Subscription((req, signal) => this.sync.subscribe(req, { signal }), targets, opts);
    return this.track(sub).start();
  }

  /**
   * watchAccess keeps live answers to questions (AccessService.Watch) and
   * returns the started AccessWatch; the caller must close() it.
   */
  watchAccess(questions: Question[], opts: AccessWatchOptions = {}): AccessWatch {
    const w = new AccessWatch((req, signal) => this.access.watch(req, { signal }), questions, opts);
    return this.track(w).start();
  }

  /**
   * history pages back through a scope that sub follows with a window
   * (SyncService.List, pages merged into sub; see History).
   */
  history(sub: Subscription, scope: string, opts: HistoryOptions = {}): History {
    return new History((req, signal) => this.sync.list(req, { signal }), sub, scope, opts);
  }

  /**
   * openOutbox starts the signed-in user's outbox: calls queued with
   * enqueue() are stored (IndexedDB in browsers, else memory) before they
   * are sent, survive reloads, and are sent in order with their keys (see
   * Outbox). Calls the user queued in an earlier session are loaded and
   * sent too. logout closes it.
   */
  openOutbox(opts: OpenOutboxOptions = {}): Outbox {
    const owner = this.session?.userId;
    if (owner === undefined) throw new Error("openOutbox: log in first");
    const storage: OutboxStorage = opts.storage ?? (IndexedDbStorage.available ? new IndexedDbStorage() : new MemoryStorage());
    const outbox = new Outbox({ ...opts, storage, transport: this.transport, owner, services });
    this.outboxes.add(outbox);
    void outbox.done.then(() => this.outboxes.delete(outbox));
    return outbox;
  }

  /** closeStreams closes every stream opened through this client. */
  closeStreams(): void {
    for (const s of [...this.streams]) s.close();
  }

  private track<T extends Resumable>(s: T): T {
    this.streams.add(s);
    void s.done.then(() => this.streams.delete(s));
    return s;
  }
}
