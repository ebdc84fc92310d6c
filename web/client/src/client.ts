import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createContextValues, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
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
import { clearSavedStreams, SessionStateStore } from "./persist.js";
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
  /**
   * session is where the session token lives. "cookie": in an HttpOnly
   * cookie the server sets at login, out of reach of every script, so
   * the session survives page reloads (resume()); only for a page served
   * by the Sluice server itself (same origin). "memory": in this object,
   * sent as `Authorization: Bearer`; a reload loses it. Default "cookie"
   * in a browser page talking to its own origin, else "memory".
   */
  session?: "cookie" | "memory";
}

/** OpenOutboxOptions configure Sluice.openOutbox. */
export type OpenOutboxOptions = Partial<Omit<OutboxOptions, "transport" | "owner" | "services">>;

/** services are the Sluice services, for the outbox to decode stored calls. */
export const services: DescService[] = [AuthService, UserService, SyncService, AccessService, ColorService, OrgService, ChannelService, MessageService];

/** Session is the signed-in user, as the server describes it. */
export interface Session {
  userId: string;
  roles: string[];
  /** expiresAt is the absolute end of the session; an idle session ends sooner. */
  expiresAt?: Date;
}

/** sameOrigin reports whether baseUrl (default: the page's origin) is the page's own origin. */
function sameOrigin(baseUrl?: string): boolean {
  const here = globalThis.location?.origin;
  if (here === undefined || here === "null") return false;
  if (baseUrl === undefined) return true;
  try {
    return new URL(baseUrl, here).origin === here;
  } catch {
    return false;
  }
}

/** SubscribeOptions configure Sluice.subscribe. */
export interface SubscribeOptions extends SubscriptionOptions {
  /**
   * persist names the stream for keeping its state across page reloads
   * (sessionStorage, per signed-in user; see SessionStateStore): the
   * reloaded page shows what it held at once, and its stream resumes from
   * the saved cursors. Give each persistent stream its own name.
   * logout() removes every saved state.
   */
  persist?: string;
}

/**
 * Sluice is a client of one Sluice server: typed clients for every service,
 * the session, and the live streams opened through it. In a page served by
 * the server itself the session is an HttpOnly cookie that no script can
 * read, and resume() picks it up again after a reload; elsewhere (another
 * origin, Node) the token is held in memory only, never in storage, and
 * every call carries `Authorization: Bearer <token>` (SluiceOptions.session).
 * Use it from one thread (the browser's).
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

  /** cookie: the session is the HttpOnly cookie (SluiceOptions.session). */
  readonly cookie: boolean;

  private token?: string;
  private cookieSession = false;
  private readonly stores = new Set<SessionStateStore>();
  private readonly streams = new Set<Resumable>();
  private readonly outboxes = new Set<Outbox>();

  constructor(opts: SluiceOptions = {}) {
    this.cookie = (opts.session ?? (sameOrigin(opts.baseUrl) ? "cookie" : "memory")) === "cookie";
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
   * login opens a session: in the HttpOnly cookie the server sets, or with
   * its token kept in memory (SluiceOptions.session). It rejects with
   * ConnectError unauthenticated for a wrong username or password.
   */
  async login(username: string, password: string): Promise<Session> {
    const res = await this.auth.login({ username, password, cookie: this.cookie });
    if (this.cookie) this.cookieSession = true;
    else this.token = res.token;
    try {
      return await this.whoAmI();
    } catch (err) {
      this.token = undefined;
      this.cookieSession = false;
      throw err;
    }
  }

  /**
   * resume picks up the session of an earlier page load: with a cookie
   * session, it asks the server who the cookie belongs to (WhoAmI). It
   * resolves with the session, or undefined when there is none to resume
   * (no cookie, or it expired or was logged out; saved stream states are
   * then removed). Other errors (the server is unreachable) reject.
   */
  async resume(): Promise<Session | undefined> {
    if (this.signedIn) return this.session;
    if (!this.cookie) return undefined;
    this.cookieSession = true;
    try {
      return await this.whoAmI();
    } catch (err) {
      this.cookieSession = false;
      if (ConnectError.from(err).code === Code.Unauthenticated) {
        clearSavedStreams();
        return undefined;
      }
      throw err;
    }
  }

  private async whoAmI(): Promise<Session> {
    const who = await this.auth.whoAmI({});
    this.session = {
      userId: who.userId,
      roles: who.roles,
      expiresAt: who.sessionExpiresAt ? timestampDate(who.sessionExpiresAt) : undefined,
    };
    return this.session;
  }

  /**
   * logout closes every stream and outbox opened through this client,
   * removes the stream states saved for reloads, revokes the session on
   * the server (best effort: one attempt of at most 5 s; the server also
   * clears the cookie) and forgets the token. Calls still in an outbox stay
   * stored for the user's next session.
   */
  async logout(): Promise<void> {
    this.closeStreams();
    for (const o of [...this.outboxes]) o.close();
    for (const s of this.stores) s.discard();
    this.stores.clear();
    clearSavedStreams();
    try {
      if (this.signedIn) {
        await this.auth.logout({}, { timeoutMs: 5000, contextValues: createContextValues().set(retryPolicy, { maxAttempts: 1 }) });
      }
    } finally {
      this.token = undefined;
      this.cookieSession = false;
      this.session = undefined;
    }
  }

  /** signedIn reports whether a session is held (a token, or the cookie). */
  get signedIn(): boolean {
    return this.token !== undefined || this.cookieSession;
  }

  /**
   * subscribe follows targets live and returns the started Subscription;
   * the caller must close() it (logout closes it too). With opts.persist
   * its state is kept across page reloads.
   */
  subscribe(targets: Targets, opts: SubscribeOptions = {}): Subscription {
    const { persist, ...rest } = opts;
    const owner = this.session?.userId;
    if (persist !== undefined && owner !== undefined && rest.store === undefined && SessionStateStore.available) {
      const store = new SessionStateStore(owner, persist);
      this.stores.add(store);
      rest.store = store;
    }
    const sub = new Subscription((req, signal) => this.sync.subscribe(req, { signal }), targets, rest);
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
