import { Code, ConnectError } from "@connectrpc/connect";
import { backoffDelay, sleep, type BackoffOptions } from "./backoff.js";

/**
 * StreamStatus is where a resumable stream stands: connecting (first
 * attempt), live (caught up), reconnecting (dropped; waiting or catching up
 * again), closed (by close(), or for good after a permanent error).
 */
export type StreamStatus = "connecting" | "live" | "reconnecting" | "closed";

/** ResumeOptions configure reconnection. Every field is optional. */
export interface ResumeOptions {
  backoff?: BackoffOptions;
  /**
   * idleTimeoutMs: a stream that delivers nothing, heartbeats included, for
   * this long is presumed dead (a proxy or network silently dropped it) and
   * is reopened. Default 45000 (three server heartbeats).
   */
  idleTimeoutMs?: number;
  /** onStatus is told every status change; error is set for a permanent one. */
  onStatus?: (status: StreamStatus, error?: ConnectError) => void;
  /** sleep waits between attempts (a test seam). */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/**
 * permanentCodes are the errors a retry cannot fix: the request is wrong, or
 * the caller may not (any more) read a target, or must log in again. Every
 * other end of a stream (unavailable on a server restart, a network error,
 * an idle timeout) is resumed.
 */
const permanentCodes = new Set<Code>([
  Code.InvalidArgument,
  Code.NotFound,
  Code.PermissionDenied,
  Code.Unauthenticated,
  Code.FailedPrecondition,
  Code.Unimplemented,
  Code.OutOfRange,
  Code.AlreadyExists,
]);

/** isRetryable reports whether a stream that ended with err should be resumed. */
export function isRetryable(err: ConnectError): boolean {
  return !permanentCodes.has(err.code);
}

/** Attempt is what one connection reports back to the loop. */
export interface AttemptHooks {
  /** alive: an event arrived; restarts the idle timer. */
  alive(): void;
  /** healthy: the stream caught up; resets the backoff and reports live. */
  healthy(): void;
}

/**
 * Resumable runs one logical stream as a sequence of connections: it calls
 * attempt, and when a connection ends it waits (exponential backoff with
 * jitter, reset once a connection caught up) and calls attempt again, until
 * close() or a permanent error. The subclass's attempt builds its request
 * from the cursors it holds, so a resumed connection continues where the
 * last one stopped.
 */
export abstract class Resumable {
  /** status is the current status. */
  status: StreamStatus = "connecting";
  /** error is the permanent error that closed the stream, if any. */
  error?: ConnectError;
  /** done resolves when the stream is closed for good. */
  readonly done: Promise<void>;

  private readonly stop = new AbortController();
  private resolveDone!: () => void;
  private started = false;

  protected constructor(protected readonly resume: ResumeOptions = {}) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  /**
   * attempt runs one connection until it ends. It returns true when there
   * is nothing left to follow (the stream is finished), false or throws to
   * be resumed.
   */
  protected abstract attempt(signal: AbortSignal, hooks: AttemptHooks): Promise<boolean>;

  /** onClosed runs once when the stream is closed for good. */
  protected onClosed(_error?: ConnectError): void {}

  /** start begins the loop; it returns this. Calling it twice is a no-op. */
  start(): this {
    if (!this.started) {
      this.started = true;
      void this.loop();
    }
    return this;
  }

  /** close ends the stream and stops resuming. Safe to call more than once. */
  close(): void {
    if (this.stop.signal.aborted) return;
    this.stop.abort(new ConnectError("closed by the client", Code.Canceled));
    if (!this.started) this.finish();
  }

  /** closed reports whether close() was called or the stream ended for good. */
  get closed(): boolean {
    return this.stop.signal.aborted || this.status === "closed";
  }

  protected setStatus(status: StreamStatus, error?: ConnectError): void {
    if (this.status === status && error === undefined) return;
    this.status = status;
    this.resume.onStatus?.(status, error);
  }

  private finish(error?: ConnectError): void {
    this.error = error;
    this.setStatus("closed", error);
    this.onClosed(error);
    this.resolveDone();
  }

  private async loop(): Promise<void> {
    const stop = this.stop.signal;
    const idleMs = this.resume.idleTimeoutMs ?? 45_000;
    const wait = this.resume.sleep ?? sleep;
    let failures = 0;
    while (!stop.aborted) {
      const conn = new AbortController();
      const onStop = () => conn.abort(stop.reason);
      stop.addEventListener("abort", onStop);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const alive = () => {
        clearTimeout(timer);
        timer = setTimeout(
          () => conn.abort(new ConnectError(`no event for ${idleMs} ms`, Code.DeadlineExceeded)),
          idleMs,
        );
      };
      let err: ConnectError;
      try {
        alive();
        const finished = await this.attempt(conn.signal, {
          alive,
          healthy: () => {
            failures = 0;
            this.setStatus("live");
          },
        });
        if (finished) {
          stop.removeEventListener("abort", onStop);
          clearTimeout(timer);
          this.finish();
          return;
        }
        err = new ConnectError("stream ended", Code.Unavailable);
      } catch (e) {
        err = ConnectError.from(e);
      } finally {
        clearTimeout(timer);
        stop.removeEventListener("abort", onStop);
      }
      if (stop.aborted) break;
      if (!isRetryable(err) && !conn.signal.aborted) {
        this.finish(err);
        return;
      }
      this.setStatus("reconnecting");
      try {
        await wait(backoffDelay(failures++, this.resume.backoff), stop);
      } catch {
        break; // closed while waiting
      }
    }
    this.finish();
  }
}
