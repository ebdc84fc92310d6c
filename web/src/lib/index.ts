// The Sluice web client: typed clients over Connect, the session token in
// memory, live subscriptions that resume without losing or repeating an
// update, live permission answers, and typed payload decoding.
export { Sluice, type Session, type SluiceOptions } from "./client";
export { Subscription, type OpenStream, type SubscriptionOptions, type Visible, type WaitOptions } from "./subscription";
export { SyncState, type Entry, type RecordCursor, type ScopeCursor, type Targets, type Update } from "./cursors";
export { AccessWatch, type AccessWatchOptions, type OpenWatch, type Question } from "./access";
export { isRetryable, type ResumeOptions, type StreamStatus } from "./resumable";
export { backoffDelay, type BackoffOptions } from "./backoff";
export { decodePayload, payloadAs, payloadRegistry } from "./registry";
