// The Sluice web client: typed clients over Connect, the session in an
// HttpOnly cookie (same origin; resumed after a reload) or the token in
// memory, live subscriptions that resume without losing or repeating an
// update (across page reloads too), history paging for windowed scopes,
// idempotency keys and retries on every mutating call, an offline outbox,
// live permission answers, and typed payload decoding.
export { Sluice, services, type OpenOutboxOptions, type Session, type SluiceOptions, type SubscribeOptions } from "./client";
export { Subscription, type OpenStream, type SubscriptionOptions, type Visible, type WaitOptions } from "./subscription";
export { SyncState, type Entry, type RecordCursor, type SavedEntry, type SavedState, type ScopeCursor, type Targets, type Update } from "./cursors";
export { SessionStateStore, clearSavedStreams, type StateStore } from "./persist";
export { AccessWatch, type AccessWatchOptions, type OpenWatch, type Question } from "./access";
export { isRetryable, type ResumeOptions, type StreamStatus } from "./resumable";
export { backoffDelay, type BackoffOptions } from "./backoff";
export { History, type HistoryOptions, type ListPage } from "./history";
export { idempotencyHeader, idempotencyInterceptor, isMutating, newIdempotencyKey } from "./idempotency";
export { isNetworkError, isRetryableCall, retryInterceptor, retryPolicy, type RetryOptions } from "./retry";
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
} from "./outbox";
export { IndexedDbStorage } from "./idb";
export { decodePayload, payloadAs, payloadRegistry } from "./registry";
