import { describe, expect, it } from "vitest";
import { Sluice } from "../src/client.js";
import { FakeServer } from "./fakefetch.js";

const who = { userId: "userA", roles: ["user"], sessionExpiresAt: "2030-01-01T00:00:00Z" };

function server(): FakeServer {
  const s = new FakeServer();
  s.handler = (procedure) =>
    procedure.endsWith("/Login")
      ? { ok: { token: "", userId: "userA" } }
      : procedure.endsWith("/WhoAmI")
        ? { ok: who }
        : { ok: {} };
  return s;
}

describe("Sluice sessions", () => {
  it("with a cookie session asks Login for the cookie and sends no bearer token", async () => {
    const s = server();
    const sluice = new Sluice({ baseUrl: "http://sluice.test", fetch: s.fetch, useBinaryFormat: false, session: "cookie" });
    expect(sluice.cookie).toBe(true);
    await sluice.login("userA", "usera-pass");
    expect(s.attempts[0]).toMatchObject({ procedure: "sluice.auth.v1.AuthService/Login", body: { cookie: true } });
    expect(sluice.signedIn).toBe(true);
    expect(sluice.session?.userId).toBe("userA");
    expect(s.attempts.every((a) => a.authorization === null)).toBe(true);
    await sluice.logout();
    expect(s.attempts.at(-1)?.procedure).toBe("sluice.auth.v1.AuthService/Logout");
    expect(sluice.signedIn).toBe(false);
  });

  it("resumes a cookie session with WhoAmI, and finds none when the server says unauthenticated", async () => {
    const s = server();
    const sluice = new Sluice({ baseUrl: "http://sluice.test", fetch: s.fetch, useBinaryFormat: false, session: "cookie" });
    expect((await sluice.resume())?.userId).toBe("userA");
    expect(sluice.signedIn).toBe(true);

    const gone = server();
    gone.script = [{ code: "unauthenticated" }];
    const fresh = new Sluice({ baseUrl: "http://sluice.test", fetch: gone.fetch, useBinaryFormat: false, session: "cookie" });
    expect(await fresh.resume()).toBeUndefined();
    expect(fresh.signedIn).toBe(false);

    const down = server();
    down.down = true;
    const offline = new Sluice({ baseUrl: "http://sluice.test", fetch: down.fetch, useBinaryFormat: false, session: "cookie" });
    await expect(offline.resume()).rejects.toThrow(/fetch/);
    expect(offline.signedIn).toBe(false);
  });

  it("keeps the token in memory and sends it as a bearer token elsewhere (no page origin)", async () => {
    const s = server();
    s.handler = (procedure) => (procedure.endsWith("/Login") ? { ok: { token: "slc_x", userId: "userA" } } : { ok: who });
    const sluice = new Sluice({ baseUrl: "http://sluice.test", fetch: s.fetch, useBinaryFormat: false });
    expect(sluice.cookie).toBe(false);
    expect(await sluice.resume()).toBeUndefined();
    await sluice.login("userA", "usera-pass");
    expect(s.attempts[0].body).not.toHaveProperty("cookie", true);
    expect(s.attempts.at(-1)).toMatchObject({ procedure: "sluice.auth.v1.AuthService/WhoAmI", authorization: "Bearer slc_x" });
  });
});
