/**
 * BackoffOptions shape the delays between reconnection attempts.
 */
export interface BackoffOptions {
  /** baseMs is the ceiling of the first delay. Default 250. */
  baseMs?: number;
  /** maxMs caps every delay. Default 5000. */
  maxMs?: number;
  /** random returns a number in [0, 1); Math.random by default (a test seam). */
  random?: () => number;
}

/**
 * backoffDelay returns how long to wait before reconnection attempt number
 * `attempt` (0 for the first retry): an exponential ceiling
 * min(maxMs, baseMs·2^attempt) with "equal jitter", a uniformly random delay
 * between half the ceiling and the ceiling. The jitter spreads the clients a
 * restarted server loses so they do not all come back in the same instant;
 * the fixed half keeps a client from hammering a server that is still down.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}): number {
  const base = opts.baseMs ?? 250;
  const max = opts.maxMs ?? 5000;
  const random = opts.random ?? Math.random;
  const ceiling = Math.min(max, base * 2 ** Math.min(Math.max(attempt, 0), 30));
  return ceiling / 2 + random() * (ceiling / 2);
}

/**
 * sleep resolves after ms, or rejects with the signal's reason as soon as
 * the signal aborts.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
