import { mock, test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { Throttle, clientKey } from "../src/auth/throttle.ts";
import { startHarness } from "./harness.ts";

type ErrorJson = { error: { code: string; message: string } };

test("a token bucket: burst, then refusals naming the wait, refilled with time; keys apart", () => {
  mock.timers.enable({ apis: ["Date"], now: 1_000_000 });
  try {
    const t = new Throttle("tries", { burst: 2, perMinute: 30 });
    t.take("a");
    t.take("a");
    assert.throws(
      () => t.take("a"),
      (err: Error & { limit?: string; retryAfterSec?: number }) =>
        err.limit === "rate_limited" &&
        err.retryAfterSec === 2 &&
        /too many tries/.test(err.message),
    );
    t.take("b");
    mock.timers.tick(1_999);
    assert.throws(() => t.check("a"));
    mock.timers.tick(1);
    t.take("a");
    assert.throws(() => t.take("a"));
  } finally {
    mock.timers.reset();
  }
});

test("a bucket map stays bounded: the least recently used key goes first", () => {
  const t = new Throttle("tries", { burst: 1, perMinute: 1 }, 3);
  for (const k of ["a", "b", "c", "d"]) t.take(k);
  t.take("a"); // forgotten, so full again
  assert.throws(() => t.take("d"));
});

test("client keys: IPv4 as is, IPv4-mapped as IPv4, IPv6 by /64", () => {
  assert.equal(clientKey("10.1.2.3"), "10.1.2.3");
  assert.equal(clientKey("::ffff:127.0.0.1"), "127.0.0.1");
  assert.equal(clientKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  assert.equal(clientKey("2001:db8:1:2:bbbb:cccc:dddd:eeee"), "2001:db8:1:2::/64");
  assert.equal(clientKey("::1"), "0:0:0:0::/64");
  assert.equal(clientKey(undefined), "unknown");
});

test(
  "sign-up, login (per address and per account) and refused credentials answer 429 with Retry-After past their limits",
  {
    timeout: 120_000,
  },
  async () => {
    const h = await startHarness("pglite", {
      rateLimits: {
        // The harness's own admin sign-up is the first of three.
        signup: { burst: 3, perMinute: 1 },
        login: { burst: 6, perMinute: 1 },
        loginFailures: { burst: 3, perMinute: 1 },
        badCredentials: { burst: 4, perMinute: 1 },
      },
    });
    try {
      const signup = (email: string, password = "a long password") =>
        h.api("/v1/auth/signup", { method: "POST", key: null, json: { email, password } });
      const login = (email: string, password: string) =>
        h.api("/v1/auth/login", { method: "POST", key: null, json: { email, password } });
      const limited = async (res: Response, what: string) => {
        assert.equal(res.status, 429, what);
        const retry = Number(res.headers.get("retry-after"));
        assert.ok(retry >= 1 && retry <= 60, `${what}: Retry-After ${retry}`);
        return res;
      };

      assert.equal((await signup("alice@example.com")).status, 201);
      assert.equal((await signup("bob@example.com")).status, 201);
      assert.equal((await signup("junk", "x")).status, 400, "bad input is refused before counting");
      const third = await limited(await signup("carol@example.com"), "the fourth sign-up");
      const body = (await third.json()) as ErrorJson;
      assert.equal(body.error.code, "rate_limited");
      assert.match(body.error.message, /too many sign-ups from this address; try again in \d+ s/);

      // Failed logins per account: Alice's account is closed for a while, even to her password.
      for (let i = 0; i < 3; i++) {
        assert.equal((await login("alice@example.com", "wrong password")).status, 401);
      }
      const locked = await limited(await login("alice@example.com", "a long password"), "alice");
      assert.match(
        ((await locked.json()) as ErrorJson).error.message,
        /failed logins for this account/,
      );
      assert.equal(
        (await login("bob@example.com", "a long password")).status,
        200,
        "others log in",
      );
      assert.equal((await login("bob@example.com", "a long password")).status, 200);
      // Six logins from this address so far: the seventh is refused whoever it is for.
      const seventh = await limited(await login("bob@example.com", "a long password"), "7th login");
      assert.match(((await seventh.json()) as ErrorJson).error.message, /logins from this address/);

      // Accepted keys are not counted; refused ones are, and then no credential is looked up.
      for (let i = 0; i < 10; i++) assert.equal((await h.api("/v1/sandboxes")).status, 200);
      const badKey = `e2b_${"0".repeat(40)}`;
      for (let i = 0; i < 4; i++)
        assert.equal((await h.api("/v1/sandboxes", { key: badKey })).status, 401);
      assert.equal(
        (await h.api("/v1/sandboxes", { key: null })).status,
        401,
        "no credentials: not counted",
      );
      const blocked = await limited(
        await h.api("/v1/sandboxes"),
        "a good key from a blocked address",
      );
      assert.equal(((await blocked.json()) as ErrorJson).error.code, "rate_limited");
      const e2b = await limited(await h.api("/sandboxes"), "E2B's list");
      assert.deepEqual(Object.keys((await e2b.json()) as object).sort(), ["code", "message"]);
      const ws = new WebSocket(`${h.cp.url.replace("http", "ws")}/v1/sandboxes/x/exec/stream`, {
        headers: { "x-api-key": h.key },
      });
      const wsStatus = await new Promise<number>((resolve) => {
        ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        ws.on("open", () => resolve(101));
        ws.on("error", () => {});
      });
      ws.terminate();
      assert.equal(wsStatus, 429, "the exec WebSocket's handshake too");
    } finally {
      await h.close();
    }
  },
);
