import { Code, ConnectError, createContextValues } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { AuthService } from "../src/gen/sluice/auth/v1/auth_pb.js";
import { ChannelService } from "../src/gen/sluice/channel/v1/channel_pb.js";
import { ColorService } from "../src/gen/sluice/color/v1/color_pb.js";
import { MessageService } from "../src/gen/sluice/message/v1/message_pb.js";
import { OrgService } from "../src/gen/sluice/org/v1/org_pb.js";
import { SyncService } from "../src/gen/sluice/sync/v1/sync_pb.js";
import { Sluice, services } from "../src/client.js";
import { isMutating, newIdempotencyKey } from "../src/idempotency.js";
import { retryPolicy, type RetryOptions } from "../src/retry.js";
import { FakeServer, uuid } from "./fakefetch.js";

function client(server: FakeServer, retry: RetryOptions = {}) {
  const delays: number[] = [];
  const sluice = new Sluice({
    baseUrl: "http://sluice.test",
    fetch: server.fetch,
    useBinaryFormat: false,
    retry: {
      backoff: { random: () => 0.5 },
      sleep: async (ms, signal) => {
        delays.push(ms);
        if (signal.aborted) throw signal.reason;
      },
      ...retry,
    },
  });
  return { sluice, delays };
}

const post = { channelId: "c", text: "hi" };

describe("isMutating", () => {
  it("follows the idempotency_level of each method in the protos", () => {
    const readOnly = services
      .flatMap((s) => s.methods)
      .filter((m) => m.methodKind === "unary" && !isMutating(m))
      .map((m) => `${m.parent.name}.${m.name}`)
      .sort();
    expect(readOnly).toEqual([
      "AccessService.Check",
      "AuthService.WhoAmI",
      "ChannelService.ListChannels",
      "MessageService.ListMessages",
      "OrgService.ListMyOrgs",
      "SyncService.Get",
      "SyncService.List",
    ]);
    for (const m of [
      MessageService.method.postMessage,
      MessageService.method.sendTyping,
      ColorService.method.setColor,
      ChannelService.method.joinChannel,
      OrgService.method.createOrg,
      AuthService.method.login,
      AuthService.method.logout,
    ]) {
      expect(isMutating(m), m.name).toBe(true);
    }
    expect(isMutating(SyncService.method.subscribe)).toBe(false); // a stream
  });

  it("makes random version 4 UUIDs", () => {
    const keys = new Set(Array.from({ length: 100 }, () => newIdempotencyKey()));
    expect(keys.size).toBe(100);
    for (const k of keys) expect(k).toMatch(uuid);
  });
});

describe("idempotency keys", () => {
  it("adds a fresh key to every mutating call and none to read-only calls", async () => {
    const server = new FakeServer();
    const { sluice } = client(server);
    await sluice.message.postMessage(post);
    await sluice.message.postMessage(post);
    await sluice.color.setColor({});
    await sluice.sync.list({ scope: "channel/c" });
    await sluice.auth.whoAmI({});
    const [a, b, c, list, who] = server.attempts;
    for (const m of [a, b, c]) expect(m.key).toMatch(uuid);
    expect(new Set([a.key, b.key, c.key]).size).toBe(3);
    expect(list.key).toBeNull();
    expect(who.key).toBeNull();
  });

  it("keeps a key the caller set", async () => {
    const server = new FakeServer();
    const { sluice } = client(server);
    await sluice.message.postMessage(post, { headers: { "Idempotency-Key": "mine-1" } });
    expect(server.attempts[0].key).toBe("mine-1");
  });
});

describe("retries of mutating calls", () => {
  it("retries retryable failures with backoff and the same key; the promise settles once, with the success", async () => {
    const server = new FakeServer();
    server.script = [
      "network",
      { code: "unavailable", message: "commit outcome unknown: retry with the same Idempotency-Key" },
      { code: "unknown" },
      { code: "deadline_exceeded" },
      { code: "resource_exhausted" },
      { code: "aborted" },
    ];
    const { sluice, delays } = client(server, { maxAttempts: 10 });
    let settled = 0;
    const res = await sluice.message.postMessage(post).finally(() => settled++);
    expect(res.written?.key).toBe("message/c/1");
    expect(settled).toBe(1);
    expect(server.attempts).toHaveLength(7);
    expect(new Set(server.attempts.map((a) => a.key)).size).toBe(1);
    expect(server.attempts[0].key).toMatch(uuid);
    expect(server.applied.size).toBe(1);
    // Exponential: 250 ms doubling, capped at 5 s, jittered to 3/4 here.
    expect(delays).toEqual([187.5, 375, 750, 1500, 3000, 3750]);
  });

  it("returns the first attempt's result when only the answer was lost", async () => {
    const server = new FakeServer();
    // "lost" commits the first attempt, then the connection breaks: the
    // retry with the same key gets the first result, nothing is written twice.
    server.script = ["lost"];
    const { sluice } = client(server);
    const res = await sluice.message.postMessage(post);
    expect(res.written?.key).toBe("message/c/1");
    expect(server.attempts).toHaveLength(2);
    expect(server.applied.size).toBe(1);
  });

  it("surfaces permanent errors at once", async () => {
    for (const code of ["permission_denied", "invalid_argument", "not_found", "failed_precondition", "unauthenticated", "internal", "already_exists"]) {
      const server = new FakeServer();
      server.script = [{ code, message: `no: ${code}` }];
      const { sluice, delays } = client(server);
      const err = await sluice.message.postMessage(post).then(
        () => undefined,
        (e) => ConnectError.from(e),
      );
      expect(err?.rawMessage, code).toBe(`no: ${code}`);
      expect(server.attempts, code).toHaveLength(1);
      expect(delays, code).toEqual([]);
    }
  });

  it("gives up after maxAttempts with the last error", async () => {
    const server = new FakeServer();
    server.down = true;
    const { sluice, delays } = client(server);
    await expect(sluice.message.postMessage(post)).rejects.toMatchObject({ code: Code.Unknown });
    expect(server.attempts).toHaveLength(5);
    expect(new Set(server.attempts.map((a) => a.key)).size).toBe(1);
    expect(delays).toHaveLength(4);
  });

  it("does not retry read-only calls or the calls told not to", async () => {
    const server = new FakeServer();
    server.script = [{ code: "unavailable" }, { code: "unavailable" }];
    const { sluice } = client(server);
    await expect(sluice.sync.list({ scope: "channel/c" })).rejects.toMatchObject({ code: Code.Unavailable });
    await expect(
      sluice.message.postMessage(post, { contextValues: createContextValues().set(retryPolicy, { maxAttempts: 1 }) }),
    ).rejects.toMatchObject({ code: Code.Unavailable });
    expect(server.attempts).toHaveLength(2);
  });

  it("stops retrying when the caller cancels", async () => {
    const server = new FakeServer();
    server.down = true;
    const ctl = new AbortController();
    const sluice = new Sluice({
      baseUrl: "http://sluice.test",
      fetch: server.fetch,
      useBinaryFormat: false,
      retry: {
        maxAttempts: 100,
        sleep: (_ms, signal) =>
          new Promise((_, reject) => {
            ctl.abort(new ConnectError("user left", Code.Canceled));
            if (signal.aborted) reject(signal.reason);
            signal.addEventListener("abort", () => reject(signal.reason), { once: true });
          }),
      },
    });
    await expect(sluice.message.postMessage(post, { signal: ctl.signal })).rejects.toMatchObject({ code: Code.Canceled });
    expect(server.attempts).toHaveLength(1);
  });
});

