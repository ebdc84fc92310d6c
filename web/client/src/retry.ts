import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { backoffDelay, sleep, type BackoffOptions } from "./backoff.js";
import { isMutating } from "./idempotency.js";

/** RetryOptions bound the retries of one mutating call. */
export interface RetryOptions {
  /** maxAttempts counts the first attempt: 1 never retries. Default 5. */
  maxAttempts?: number;
  /** backoff shapes the delays (backoff.ts: 250 ms doubling to 5 s, jittered). */
  backoff?: BackoffOptions;
  /** sleep waits between attempts (a test seam). */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** onRetry is told each failed attempt that will be retried (logging, tests). */
  onRetry?: (err: ConnectError, attempt: number, delayMs: number) => void;
}

/**
 * retryPolicy overrides the client's RetryOptions for one call:
 * `client.message.postMessage(req, { contextValues:
 * createContextValues().set(retryPolicy, { maxAttempts: 1 }) })`.
 */
export const retryPolicy = createContextKey<RetryOptions | undefined>(undefined, { description: "sluice retry policy" });

/**
 * retryCodes are the answers after which a mutating call may have failed
 * for a passing reason, or whose outcome is unknown: the server restarting
 * or overloaded (unavailable, resource_exhausted), a conflict (aborted), a
 * server-side deadline or a cut connection (deadline_exceeded, unknown).
 * Retrying with the same Idempotency-Key is safe for all of them.
 */
const retryCodes = new Set<Code>([Code.Unavailable, Code.Unknown, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Aborted]);

/**
 * isNetworkError reports whether a failure never got a Connect answer:
 * fetch rejected (connection refused or reset, offline) or the response
 * body broke off. Such a call may or may not have been applied.
 */
export function isNetworkError(err: unknown): boolean {
  return !(err instanceof ConnectError) && !(err instanceof DOMException && err.name === "AbortError");
}

/**
 * isRetryableCall reports whether a mutating call that failed with err
 * should be tried again with the same key: a network error, or one of
 * unavailable, unknown, deadline_exceeded, resource_exhausted, aborted.
 * Every other code (invalid_argument, permission_denied, not_found,
 * failed_precondition, unauthenticated, internal, …) is the answer.
 */
export function isRetryableCall(err: unknown): boolean {
  if (isNetworkError(err)) return true;
  return err instanceof ConnectError && retryCodes.has(err.code);
}

/**
 * retryInterceptor retries a failed mutating unary call (isMutating) with
 * exponential backoff and jitter, up to maxAttempts in all; the caller's
 * promise settles once, with the first success or the last error. A
 * permanent error is returned at once, and a call the caller cancelled or
 * whose own deadline passed is not retried. Read-only calls and streams
 * pass through (Subscription resumes streams itself).
 *
 * Place it after idempotencyInterceptor, so every attempt carries the
 * same Idempotency-Key, and before the interceptor that adds credentials,
 * so each attempt has the current token.
 */
export function retryInterceptor(defaults: RetryOptions = {}): Interceptor {
  return (next) => async (req) => {
    if (req.stream || !isMutating(req.method)) return next(req);
    const opts = { ...defaults, ...req.contextValues.get(retryPolicy) };
    const maxAttempts = Math.max(1, opts.maxAttempts ?? 5);
    const wait = opts.sleep ?? sleep;
    for (let attempt = 1; ; attempt++) {
      try {
        return await next(req);
      } catch (e) {
        if (req.signal.aborted || attempt >= maxAttempts || !isRetryableCall(e)) throw e;
        const err = ConnectError.from(e);
        const delay = backoffDelay(attempt - 1, opts.backoff);
        opts.onRetry?.(err, attempt, delay);
        try {
          await wait(delay, req.signal);
        } catch {
          // Cancelled, or past its deadline, while waiting.
          throw req.signal.aborted ? ConnectError.from(req.signal.reason) : e;
        }
      }
    }
  };
}
