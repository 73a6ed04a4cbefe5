/**
 * What is stored for credentials and what sessions and ids look like:
 * passwords under a memory-hard hash, API keys only as a hash and a display
 * prefix, sessions that expire and cannot be forged, sandbox ids that fit a
 * host name.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { eq } from "drizzle-orm";
import { SignJWT } from "jose";
import { hashPassword, verifyPassword } from "../src/auth/passwords.ts";
import { createSessions } from "../src/auth/sessions.ts";
import { newSandboxId, sha256 } from "../src/auth/tokens.ts";
import { apiKeys, users } from "../src/db/schema.ts";
import { DATABASES, startHarness } from "./harness.ts";

test("passwords: scrypt with 16 MiB per hash, salted, verified", async () => {
  const a = await hashPassword("correct horse battery");
  const b = await hashPassword("correct horse battery");
  const [scheme, n, r, p, salt, hash] = a.split("$");
  assert.equal(scheme, "scrypt");
  // Memory per hash is 128 * N * r bytes: the memory-hard part.
  assert.equal(128 * Number(n) * Number(r), 16 << 20);
  assert.equal(p, "1");
  assert.equal(Buffer.from(salt ?? "", "base64").length, 16);
  assert.equal(Buffer.from(hash ?? "", "base64").length, 32);
  assert.notEqual(a, b, "a fresh salt every time");
  assert.equal(await verifyPassword("correct horse battery", a), true);
  assert.equal(await verifyPassword("correct horse batterY", a), false);
  assert.equal(await verifyPassword("correct horse battery", "md5$abc"), false);
});

test("sessions: HS256 JWTs that expire and fail under another key", async () => {
  const db = undefined as never; // a given secret never touches the database
  const sessions = await createSessions(db, { secret: "one-secret-for-the-test" });
  const { token, expiresAt } = await sessions.issue("user-1");
  assert.equal(await sessions.verify(token), "user-1");
  assert.ok(expiresAt.getTime() > Date.now() + 6 * 24 * 3600_000, "a week by default");
  const [header] = token.split(".");
  assert.deepEqual(JSON.parse(Buffer.from(header ?? "", "base64url").toString()), {
    alg: "HS256",
  });
  const expired = await createSessions(db, { secret: "one-secret-for-the-test", ttlSec: -60 });
  await assert.rejects(
    sessions.verify((await expired.issue("user-1")).token),
    /invalid or expired/,
  );
  const other = await createSessions(db, { secret: "another-secret" });
  await assert.rejects(other.verify(token), /invalid or expired/);
  // An unsigned token ("alg": "none") is refused.
  const [, payload] = token.split(".");
  const none = `${Buffer.from('{"alg":"none"}').toString("base64url")}.${payload}.`;
  await assert.rejects(sessions.verify(none), /invalid or expired/);
  // A token for another audience (signed with the same key) is refused.
  const foreign = await new SignJWT({})
    .setProtectedHeader({ alg: "HS256" })
    .setSubject("user-1")
    .setIssuer("wrenn")
    .setAudience("someone-else")
    .setExpirationTime("1h")
    .sign(new TextEncoder().encode("one-secret-for-the-test"));
  await assert.rejects(sessions.verify(foreign), /invalid or expired/);
});

test("sandbox ids: 16 lowercase letters and digits, no '-', evenly spread", () => {
  const seen = new Set<string>();
  const counts = new Map<string, number>();
  for (let i = 0; i < 5000; i++) {
    const id = newSandboxId();
    assert.match(id, /^[a-z0-9]{16}$/);
    seen.add(id);
    for (const ch of id) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  }
  assert.equal(seen.size, 5000);
  assert.equal(counts.size, 36, "every letter and digit occurs");
  // 80 000 characters over 36 symbols: 2222 ± 47 each; a plain `byte % 36` would give
  // four of them 2500 (8/256 instead of 7/256).
  for (const [ch, n] of counts) assert.ok(n > 1990 && n < 2455, `${ch}: ${n}`);
});

for (const kind of DATABASES) {
  test(`the database holds no password and no API key, only their hashes (${kind})`, async () => {
    const h = await startHarness(kind);
    try {
      const password = "a password to look for";
      const signup = await h.api("/v1/auth/signup", {
        method: "POST",
        key: null,
        json: { email: "stored@example.com", password },
      });
      assert.equal(signup.status, 201);
      const [user] = await h.cp.db
        .select()
        .from(users)
        .where(eq(users.email, "stored@example.com"));
      assert.ok(user);
      assert.ok(!user.passwordHash.includes(password));
      assert.equal(await verifyPassword(password, user.passwordHash), true);

      const created = (await (
        await h.api("/v1/api-keys", { method: "POST", json: { name: "look" } })
      ).json()) as { id: string; key: string; prefix: string };
      const [row] = await h.cp.db.select().from(apiKeys).where(eq(apiKeys.id, created.id));
      assert.ok(row);
      assert.equal(row.keyHash, sha256(created.key));
      assert.equal(
        row.prefix,
        created.key.slice(0, 12),
        "e2b_ and 8 hex digits to tell keys apart",
      );
      assert.equal(created.prefix, row.prefix);
      assert.ok(!JSON.stringify(row).includes(created.key), "the key itself is nowhere");
      // The key works by X-API-Key and as a bearer token, and not with one digit changed.
      assert.equal((await h.api("/v1/me", { key: created.key })).status, 200);
      const bearer = await h.api("/v1/me", {
        key: null,
        headers: { authorization: `Bearer ${created.key}` },
      });
      assert.equal(bearer.status, 200);
      const last = created.key.at(-1) === "0" ? "1" : "0";
      const wrong = `${created.key.slice(0, -1)}${last}`;
      assert.equal((await h.api("/v1/me", { key: wrong })).status, 401);
    } finally {
      await h.close();
    }
  });
}
