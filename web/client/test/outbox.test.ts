import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { SyncService } from "../src/gen/sluice/sync/v1/sync_pb.js";
import { ColorService } from "../src/gen/sluice/color/v1/color_pb.js";
import { MessageService, type PostMessageRequest } from "../src/gen/sluice/message/v1/message_pb.js";
import { Sluice } from "../src/client.js";
import { MemoryStorage, type Outbox, type OutboxEvent } from "../src/outbox.js";
import { FakeServer, until, uuid } from "./fakefetch.js";

const postMessage = MessageService.method.postMessage;

/** session logs a Sluice client in against the fake server as user. */
async function session(server: FakeServer, user = "userA") {
  const sluice = new Sluice({ baseUrl: "http://sluice.test", fetch: server.fetch, useBinaryFormat: false });
  const handler = server.handler;
  server.handler = (procedure, body) =>
    procedure.endsWith("/Login")
      ? { ok: { token: `token-${user}` } }
      : procedure.endsWith("/WhoAmI")
        ? { ok: { userId: user } }
        : handler(procedure, body);
  await sluice.login(user, "pw");
  server.handler = handler;
  server.attempts.length = 0;
  for (const [k, v] of server.applied) if (v.procedure.endsWith("/Login")) server.applied.delete(k);
  return sluice;
}

function open(sluice: Sluice, storage: MemoryStorage) {
  const events: OutboxEvent[] = [];
  const delays: number[] = [];
  const outbox = sluice.openOutbox({
    storage,
    backoff: { random: () => 0.5 },
    // Backoffs are instant unless kick() is awaited: the loop yields once.
    sleep: async (ms, signal) => {
      delays.push(ms);
      await new Promise((r) => setTimeout(r, 5));
      if (signal.aborted) throw signal.reason;
    },
  });
  outbox.listen((ev) => events.push(ev));
  return { outbox, events, delays };
}

function texts(outbox: Outbox): string[] {
  return outbox.items().map((i) => (i.request as PostMessageRequest).text);
}

function posts(server: FakeServer) {
  return server.attempts.filter((a) => a.procedure.endsWith("/PostMessage"));
}

describe("Outbox", () => {
  it("stores calls made while the server is unreachable and sends them in order, with their keys, once it is back", async () => {
    const server = new FakeServer();
    const sluice = await session(server);
    const storage = new MemoryStorage();
    const { outbox, events } = open(sluice, storage);
    server.down = true;
    const calls = ["one", "two", "three"].map((text) => outbox.enqueue(postMessage, { channelId: "c", text }));
    expect(texts(outbox)).toEqual(["one", "two", "three"]);
    for (const c of calls) expect(c.item.key).toMatch(uuid);
    await until(() => posts(server).length >= 3);
    // Stored before the first attempt, in order; the head is retried, the rest wait.
    expect([...storage.calls.values()].sort((a, b) => a.order - b.order).map((c) => c.key)).toEqual(calls.map((c) => c.item.key));
    expect(new Set(posts(server).map((a) => a.key))).toEqual(new Set([calls[0].item.key]));
    expect(outbox.items().every((i) => i.state !== "failed")).toBe(true);

    server.down = false;
    outbox.kick();
    const results = await Promise.all(calls.map((c) => c.result));
    expect(results.map((r) => r.written?.key)).toEqual(["message/c/1", "message/c/2", "message/c/3"]);
    expect([...server.applied.values()].map((a) => (a.body as { text: string }).text)).toEqual(["one", "two", "three"]);
    expect([...server.applied.keys()]).toEqual(calls.map((c) => c.item.key));
    expect(posts(server).every((a) => a.authorization === "Bearer token-userA")).toBe(true);
    expect(storage.calls.size).toBe(0);
    expect(outbox.items()).toEqual([]);
    expect(events.filter((e) => e.kind === "sent").map((e) => e.kind === "sent" && e.item.key)).toEqual(calls.map((c) => c.item.key));
    outbox.close();
    await outbox.done;
  });

  it("survives a reload: a new Outbox of the same user sends the stored calls with the stored keys", async () => {
    const server = new FakeServer();
    const storage = new MemoryStorage();
    const first = open(await session(server), storage);
    server.down = true;
    const keys = ["a", "b"].map((text) => first.outbox.enqueue(postMessage, { channelId: "c", text }).item.key);
    await until(() => posts(server).length >= 1);
    first.outbox.close(); // the page goes away
    await first.outbox.done;
    expect(storage.calls.size).toBe(2);

    server.down = false;
    const second = open(await session(server), storage); // after the reload, logged in again
    await second.outbox.loaded;
    expect(texts(second.outbox)).toEqual(["a", "b"]);
    await until(() => storage.calls.size === 0);
    expect([...server.applied.keys()]).toEqual(keys);
    expect(posts(server).map((a) => a.key)).toEqual(keys);
    // Calls queued after the reload go after the stored ones.
    const later = second.outbox.enqueue(postMessage, { channelId: "c", text: "c" });
    await later.result;
    expect([...server.applied.values()].map((a) => (a.body as { text: string }).text)).toEqual(["a", "b", "c"]);
    second.outbox.close();
  });

  it("applies a call once when the server committed it but the answer was lost", async () => {
    const server = new FakeServer();
    const { outbox } = open(await session(server), new MemoryStorage());
    server.script = ["lost", "network", { code: "unavailable", message: "commit outcome unknown" }];
    const call = outbox.enqueue(postMessage, { channelId: "c", text: "once" });
    const res = await call.result;
    expect(res.written?.key).toBe("message/c/1");
    expect(posts(server)).toHaveLength(4);
    expect(new Set(posts(server).map((a) => a.key))).toEqual(new Set([call.item.key]));
    expect(server.applied.size).toBe(1);
    outbox.close();
  });

  it("keeps a refused call as failed, reports it, goes on with the next, and can retry or discard it", async () => {
    const server = new FakeServer();
    const storage = new MemoryStorage();
    const sluice = await session(server);
    const { outbox, events } = open(sluice, storage);
    server.script = [{ code: "permission_denied", message: "not a member" }];
    const refused = outbox.enqueue(postMessage, { channelId: "c", text: "refused" });
    const next = outbox.enqueue(postMessage, { channelId: "c", text: "next" });
    await expect(refused.result).rejects.toMatchObject({ code: Code.PermissionDenied, rawMessage: "not a member" });
    await next.result;
    expect(outbox.items().map((i) => [(i.request as PostMessageRequest).text, i.state, i.error?.code])).toEqual([
      ["refused", "failed", Code.PermissionDenied],
    ]);
    expect(events.some((e) => e.kind === "failed" && e.item.key === refused.item.key)).toBe(true);
    expect(storage.calls.get(refused.item.key)?.failed).toEqual({ code: Code.PermissionDenied, message: "not a member" });
    outbox.close();

    // Still there after a reload, still failed: never sent again on its own.
    const again = open(await session(server), storage);
    await again.outbox.loaded;
    await new Promise((r) => setTimeout(r, 20));
    expect(again.outbox.items().map((i) => [i.key, i.state])).toEqual([[refused.item.key, "failed"]]);
    expect(posts(server)).toHaveLength(0);
    // retry sends it with its key; this time the server takes it.
    await again.outbox.retry(refused.item.key);
    await until(() => storage.calls.size === 0);
    expect(posts(server).map((a) => a.key)).toEqual([refused.item.key]);

    server.script = [{ code: "invalid_argument", message: "text: too long" }];
    const bad = again.outbox.enqueue(postMessage, { channelId: "c", text: "x" });
    await bad.result.catch(() => {});
    await again.outbox.discard(bad.item.key);
    expect(again.outbox.items()).toEqual([]);
    expect(storage.calls.size).toBe(0);
    again.outbox.close();
  });

  it("pauses on unauthenticated until kicked, keeping the call pending", async () => {
    const server = new FakeServer();
    const { outbox } = open(await session(server), new MemoryStorage());
    server.script = [{ code: "unauthenticated", message: "session expired" }];
    const call = outbox.enqueue(postMessage, { channelId: "c", text: "later" });
    await until(() => posts(server).length === 1 && outbox.items()[0]?.state === "pending");
    await new Promise((r) => setTimeout(r, 30));
    expect(posts(server)).toHaveLength(1);
    expect(outbox.items()[0].error?.code).toBe(Code.Unauthenticated);
    outbox.kick(); // logged in again
    await call.result;
    expect(posts(server)).toHaveLength(2);
    outbox.close();
  });

  it("backs off exponentially while the server stays down, and kick() retries at once", async () => {
    const server = new FakeServer();
    const { outbox, delays } = open(await session(server), new MemoryStorage());
    server.down = true;
    const call = outbox.enqueue(postMessage, { channelId: "c", text: "x" });
    await until(() => delays.length >= 5);
    expect(delays.slice(0, 5)).toEqual([187.5, 375, 750, 1500, 3000]);
    server.down = false;
    outbox.kick();
    await call.result;
    outbox.close();
  });

  it("keeps each user's calls to that user", async () => {
    const server = new FakeServer();
    const storage = new MemoryStorage();
    const a = open(await session(server, "userA"), storage);
    server.down = true;
    a.outbox.enqueue(postMessage, { channelId: "c", text: "from A" });
    await until(() => storage.calls.size === 1);
    a.outbox.close();
    server.down = false;
    const b = open(await session(server, "userB"), storage);
    await b.outbox.loaded;
    await new Promise((r) => setTimeout(r, 20));
    expect(b.outbox.items()).toEqual([]);
    expect(posts(server)).toHaveLength(0);
    expect(storage.calls.size).toBe(1);
    b.outbox.close();
  });

  it("takes only mutating calls of the given services", async () => {
    const server = new FakeServer();
    const { outbox } = open(await session(server), new MemoryStorage());
    expect(() => outbox.enqueue(SyncService.method.list, { scope: "channel/c" })).toThrow(ConnectError);
    expect(() => outbox.enqueue(ColorService.method.setColor, {})).not.toThrow();
    outbox.close();
  });
});
