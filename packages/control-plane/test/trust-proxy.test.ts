import { test } from "node:test";
import assert from "node:assert/strict";
import { ClientAddresses } from "../src/auth/client-address.ts";
import { startHarness, type Harness } from "./harness.ts";

test("client address: the peer's unless it is a trusted proxy; then the rightmost untrusted hop", () => {
  const none = new ClientAddresses();
  assert.equal(none.of("10.0.0.5", "203.0.113.9"), "10.0.0.5", "no proxy trusted: headers ignored");

  const c = new ClientAddresses(["10.0.0.0/8", "::1", "192.0.2.7"]);
  assert.equal(c.of("10.0.0.5", "203.0.113.9"), "203.0.113.9");
  assert.equal(c.of("::ffff:10.0.0.5", "203.0.113.9"), "203.0.113.9", "IPv4-mapped peer");
  assert.equal(c.of("::1", "2001:db8::1"), "2001:db8::1");
  // The client wrote the leftmost hops itself; the proxy appended what it saw.
  assert.equal(c.of("10.0.0.5", "1.1.1.1, 203.0.113.9"), "203.0.113.9");
  // Two trusted proxies in a row: skip both.
  assert.equal(c.of("10.0.0.5", "6.6.6.6, 203.0.113.9, 192.0.2.7"), "203.0.113.9");
  assert.equal(c.of("10.0.0.5", ["6.6.6.6, 203.0.113.9", "10.1.1.1"]), "203.0.113.9");
  // A peer outside the list: its header is anyone's to write.
  assert.equal(c.of("198.51.100.1", "203.0.113.9"), "198.51.100.1");
  // A trusted peer without the header, or with only trusted hops.
  assert.equal(c.of("10.0.0.5", undefined), "10.0.0.5");
  assert.equal(c.of("10.0.0.5", "10.2.2.2"), "10.2.2.2");
  assert.equal(c.of("10.0.0.5", ""), "10.0.0.5");
  // Junk in the hop the proxy vouches for is what the proxy saw: kept, bounded.
  assert.equal(c.of("10.0.0.5", "x".repeat(500)).length, 64);

  for (const bad of ["10.0.0.0/33", "nonsense", "10.0.0.0/8/1", "::1/129", ""]) {
    assert.throws(() => new ClientAddresses([bad]), /--trust-proxy takes addresses or CIDRs/, bad);
  }
});

async function signups(h: Harness, n: number, forwardedFor: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const res = await h.api("/v1/auth/signup", {
      method: "POST",
      key: null,
      headers: { "x-forwarded-for": forwardedFor },
      json: {
        email: `u${Math.random().toString(36).slice(2)}@example.com`,
        password: "a long password",
      },
    });
    await res.body?.cancel();
    out.push(res.status);
  }
  return out;
}

test(
  "--trust-proxy: behind a trusted proxy each forwarded client has its own rate limit; otherwise the header counts for nothing",
  { timeout: 180_000 },
  async () => {
    // The test's requests come from 127.0.0.1: here that is the trusted proxy.
    const trusted = await startHarness("pglite", {
      agents: 0,
      trustProxy: ["127.0.0.0/8"],
      rateLimits: { signup: { burst: 2, perMinute: 1 } },
    });
    try {
      // The harness's admin signed up as 127.0.0.1 (no header): one of its two.
      assert.deepEqual(await signups(trusted, 3, "203.0.113.1"), [201, 201, 429]);
      // Another client behind the same proxy is counted apart.
      assert.deepEqual(await signups(trusted, 1, "203.0.113.2"), [201]);
      // Forging the leftmost hop does not make a new client: the proxy's hop is the rightmost.
      assert.deepEqual(await signups(trusted, 1, "198.51.100.77, 203.0.113.1"), [429]);
    } finally {
      await trusted.close();
    }

    // Trusting some other proxy: 127.0.0.1 is a client like any, its header ignored.
    const other = await startHarness("pglite", {
      agents: 0,
      trustProxy: ["10.0.0.0/8"],
      rateLimits: { signup: { burst: 2, perMinute: 1 } },
    });
    try {
      assert.deepEqual(await signups(other, 1, "203.0.113.1"), [201]);
      assert.deepEqual(await signups(other, 1, "203.0.113.2"), [429]);
    } finally {
      await other.close();
    }
  },
);
