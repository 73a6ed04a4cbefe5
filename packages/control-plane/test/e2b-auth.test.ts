import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { eq } from "drizzle-orm";
import { sha256 } from "../src/auth/tokens.ts";
import { apiKeys } from "../src/db/schema.ts";
import { startHarness } from "./harness.ts";

test(
  "issued keys are e2b_ + 40 hex; older wrn_ keys keep working by X-API-Key and Bearer",
  { timeout: 60_000 },
  async () => {
    const h = await startHarness("pglite", { agents: 0 });
    try {
      assert.match(h.key, /^e2b_[0-9a-f]{40}$/, "the SDKs' key shape");
      // A key issued before the switch: only its hash is stored, like any other.
      const [issued] = await h.cp.db.select().from(apiKeys);
      assert.ok(issued);
      const old = `wrn_${randomBytes(16).toString("hex")}`;
      await h.cp.db.insert(apiKeys).values({
        teamId: issued.teamId,
        createdBy: issued.createdBy,
        name: "old",
        prefix: old.slice(0, 12),
        keyHash: sha256(old),
      });
      for (const key of [h.key, old]) {
        assert.equal((await h.api("/v1/me", { key })).status, 200, key.slice(0, 4));
        assert.equal((await h.api("/v2/sandboxes", { key })).status, 200, key.slice(0, 4));
        const bearer = await h.api("/v2/sandboxes", {
          key: null,
          headers: { authorization: `Bearer ${key}` },
        });
        assert.equal(bearer.status, 200, `${key.slice(0, 4)} as a bearer token`);
      }
      // Near misses: wrong length, upper case, the other kind's length, a revoked key.
      for (const key of [
        `e2b_${"a".repeat(39)}`,
        `e2b_${"A".repeat(40)}`,
        `wrn_${"a".repeat(40)}`,
        `e2b_${"a".repeat(32)}`,
      ]) {
        const res = await h.api("/v2/sandboxes", { key });
        assert.equal(res.status, 401, key);
        assert.deepEqual(Object.keys((await res.json()) as object).sort(), ["code", "message"]);
      }
      await h.cp.db.update(apiKeys).set({ revokedAt: new Date() }).where(eq(apiKeys.name, "old"));
      assert.equal((await h.api("/v2/sandboxes", { key: old })).status, 401);
      // The dashboard's session works on E2B's paths as on /v1.
      const session = await h.api("/v2/sandboxes", {
        key: null,
        headers: { authorization: `Bearer ${h.token}` },
      });
      assert.equal(session.status, 200);
      const none = await h.api("/v2/sandboxes", { key: null });
      assert.equal(none.status, 401);
      assert.deepEqual(await none.json(), {
        code: 401,
        message: "send an API key in X-API-Key, or a session token in Authorization: Bearer",
      });
    } finally {
      await h.close();
    }
  },
);
