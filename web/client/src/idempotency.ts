import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import type { DescMethod } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";

/** idempotencyHeader carries the key of one logical mutating call. */
export const idempotencyHeader = "Idempotency-Key";

/**
 * isMutating reports whether a method may change state: every unary method
 * not declared `option idempotency_level = NO_SIDE_EFFECTS` in its proto
 * (Get, List, WhoAmI, ListChannels, … are; PostMessage, SetColor, Login,
 * Logout, SendTyping, … are not). Streams are never mutating calls here.
 */
export function isMutating(method: DescMethod): boolean {
  return method.methodKind === "unary" && method.idempotency !== MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS;
}

/**
 * newIdempotencyKey returns a random (version 4) UUID. It uses
 * crypto.getRandomValues, which, unlike crypto.randomUUID, also exists on
 * pages served over plain http from a non-local host.
 */
export function newIdempotencyKey(): string {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * idempotencyInterceptor gives every mutating unary call an
 * `Idempotency-Key` header: a fresh random UUID per logical call, unless
 * the caller set one (the outbox sets the key it stored). Put it before
 * the retry interceptor (outermost first) so every retry of the call sends
 * the same key: the server then applies the call at most once and answers
 * a retry with the first attempt's result.
 */
export function idempotencyInterceptor(newKey: () => string = newIdempotencyKey): Interceptor {
  return (next) => (req) => {
    if (!req.stream && isMutating(req.method) && !req.header.has(idempotencyHeader)) {
      req.header.set(idempotencyHeader, newKey());
    }
    return next(req);
  };
}
