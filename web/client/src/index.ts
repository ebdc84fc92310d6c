// The Sluice web client: typed clients over Connect, the session in an
// HttpOnly cookie (same origin; resumed after a reload) or the token in
// memory, live subscriptions that resume without losing or repeating an
// update (across page reloads too), history paging for windowed scopes,
// idempotency keys and retries on every mutating call, an offline outbox,
// live permission answers, and typed payload decoding.
export { Sluice, services, type OpenOutboxOptions, type Session, type SluiceOptions, type SubscribeOptions } from "./client.js";
export { Subscription, type OpenStream, type SubscriptionOptions, type Visible, type WaitOptions } from "./subscription.js";
export { SyncState, type Entry, type RecordCursor, type SavedEntry, type SavedState, type ScopeCursor, type Targets, type Update } from "./cursors.js";
export { SessionStateStore, clearSavedStreams, type StateStore } from "./persist.js";
export { AccessWatch, type AccessWatchOptions, type OpenWatch, type Question } from "./access.js";
export { isRetryable, type ResumeOptions, type StreamStatus } from "./resumable.js";
export { backoffDelay, type BackoffOptions } from "./backoff.js";
export { History, type HistoryOptions, type ListPage } from "./history.js";
export { idempotencyHeader, idempotencyInterceptor, isMutating, newIdempotencyKey } from "./idempotency.js";
export { isNetworkError, isRetryableCall, retryInterceptor, retryPolicy, type RetryOptions } from "./retry.js";
export {
  MemoryStorage,
  Outbox,
  procedureOf,
  type OutboxCall,
  type OutboxEvent,
  type OutboxItem,
  type OutboxOptions,
  type OutboxState,
  type OutboxStorage,
  type StoredCall,
} from "./outbox.js";
export { IndexedDbStorage } from "./idb.js";
export { decodePayload, payloadAs, payloadRegistry } from "./registry.js";
