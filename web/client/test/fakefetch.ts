// A fake Sluice server behind `fetch`, speaking the Connect protocol with
// JSON, for testing the client's interceptors and outbox through the real
// connect-web transport: every attempt is recorded with its headers, and
// each answer is scripted (a response, a Connect error, a network error,
// or a commit whose response is lost).

/** Attempt is one HTTP request the client made. */
export interface Attempt {
  procedure: string;
  key: string | null;
  authorization: string | null;
  body: unknown;
}

/**
 * Answer scripts one attempt: a JSON response body, a Connect error
 * (`{ code }`), a network error (fetch rejects: `"network"`), or `"lost"`:
 * the call is handed to `apply` (the server commits it) and then the
 * connection breaks before the answer arrives.
 */
export type Answer = { ok: unknown } | { code: string; message?: string } | "network" | "lost";

const httpStatus: Record<string, number> = {
  canceled: 499,
  unknown: 500,
  invalid_argument: 400,
  deadline_exceeded: 504,
  not_found: 404,
  already_exists: 409,
  permission_denied: 403,
  resource_exhausted: 429,
  failed_precondition: 400,
  aborted: 409,
  out_of_range: 400,
  unimplemented: 501,
  internal: 500,
  unavailable: 503,
  data_loss: 500,
  unauthenticated: 401,
};

export class FakeServer {
  readonly attempts: Attempt[] = [];
  /** down: every attempt is a network error (the server cannot be reached). */
  down = false;
  /** script answers attempts in order; when empty, `apply` answers. */
  script: Answer[] = [];
  /** applied records each call applied, by key: a key is applied once, as the real server does. */
  readonly applied = new Map<string, { procedure: string; body: unknown; response: unknown }>();

  /**
   * handler answers a call that reaches the server (after `script` and
   * `down`); a call with a key is applied once: a repeat of the key gets
   * the first success. By default PostMessage gets a visibility token
   * `message/c/<n>` and every other call `{}`.
   */
  handler: (procedure: string, body: unknown) => Answer = (procedure) =>
    procedure.endsWith("/PostMessage")
      ? { ok: { written: { key: `message/c/${this.applied.size + 1}`, scope: "channel/c", version: "1" } } }
      : { ok: {} };

  fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input));
    const procedure = url.pathname.replace(/^\//, "");
    const headers = new Headers(init?.headers);
    const body = init?.body ? JSON.parse(new TextDecoder().decode(init.body as Uint8Array)) : {};
    const attempt: Attempt = { procedure, key: headers.get("Idempotency-Key"), authorization: headers.get("Authorization"), body };
    this.attempts.push(attempt);
    await Promise.resolve();
    if (init?.signal?.aborted) throw new DOMException("aborted", "AbortError");
    if (this.down) throw new TypeError("Failed to fetch");
    const answer = this.script.length > 0 ? this.script.shift()! : this.commit(attempt);
    if (answer === "network") throw new TypeError("Failed to fetch");
    if (answer === "lost") {
      this.commit(attempt);
      throw new TypeError("network error: connection reset");
    }
    if ("ok" in answer) return json(200, answer.ok);
    return json(httpStatus[answer.code] ?? 500, { code: answer.code, message: answer.message ?? answer.code });
  };

  /** commit applies a call once per key and returns its (first) answer. */
  private commit(a: Attempt): Answer {
    if (a.key !== null) {
      const done = this.applied.get(a.key);
      if (done) return { ok: done.response };
    }
    const answer = this.handler(a.procedure, a.body);
    if (a.key !== null && typeof answer === "object" && "ok" in answer) {
      this.applied.set(a.key, { procedure: a.procedure, body: a.body, response: answer.ok });
    }
    return answer;
  }
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

/** until waits for cond, polling every millisecond, for at most ms. */
export function until(cond: () => boolean, ms = 2000): Promise<void> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const tick = () => {
      if (cond()) resolve();
      else if (Date.now() - start > ms) reject(new Error("condition not met in time"));
      else setTimeout(tick, 1);
    };
    tick();
  });
}

export const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
