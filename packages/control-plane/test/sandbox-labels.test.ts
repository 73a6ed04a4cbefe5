// /v1's sandboxes carry metadata (set on create, as E2B's do) and their end
// time, which the dashboard's time-left column counts down. Fake agent.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startHarness } from "./harness.ts";
import { e2bCreate } from "./e2b-helpers.ts";

interface V1Sandbox {
  sandbox_id: string;
  metadata: Record<string, string>;
  end_at: string | null;
}

test(
  "/v1 sandboxes: metadata on create and in every answer; end_at for E2B lifetimes",
  { timeout: 60_000 },
  async () => {
    const h = await startHarness("pglite");
    try {
      const res = await h.api("/v1/sandboxes", {
        method: "POST",
        json: { template: "minimal", metadata: { owner: "labels-test", "odd key": "a=b" } },
      });
      const created = (await res.json()) as V1Sandbox;
      assert.equal(res.status, 201, JSON.stringify(created));
      assert.deepEqual(created.metadata, { owner: "labels-test", "odd key": "a=b" });
      assert.equal(created.end_at, null, "a /v1 sandbox is paused when idle, it has no end time");

      const plain = (await (
        await h.api("/v1/sandboxes", { method: "POST", json: {} })
      ).json()) as V1Sandbox;
      assert.deepEqual(plain.metadata, {});

      // An E2B sandbox's lifetime shows through /v1 too.
      const before = Date.now();
      const e2b = await e2bCreate(h, { timeout: 120, metadata: { via: "e2b" } });
      const one = (await (await h.api(`/v1/sandboxes/${e2b.sandboxID}`)).json()) as V1Sandbox;
      assert.deepEqual(one.metadata, { via: "e2b" });
      assert.ok(one.end_at, "an E2B sandbox has an end time");
      const left = Date.parse(one.end_at) - before;
      assert.ok(left > 110_000 && left <= 125_000, `ends ${left} ms after create`);

      const list = (await (await h.api("/v1/sandboxes")).json()) as V1Sandbox[];
      const byId = new Map(list.map((s) => [s.sandbox_id, s]));
      assert.deepEqual(byId.get(created.sandbox_id)?.metadata, created.metadata);
      assert.equal(byId.get(e2b.sandboxID)?.end_at, one.end_at);

      for (const metadata of [
        { n: 5 },
        Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"])),
        { ["k".repeat(300)]: "v" },
      ]) {
        const bad = await h.api("/v1/sandboxes", { method: "POST", json: { metadata } });
        const body = (await bad.json()) as { error: { code: string; message: string } };
        assert.equal(bad.status, 400, JSON.stringify(body));
        assert.equal(body.error.code, "invalid_argument");
        assert.match(body.error.message, /metadata/);
      }
    } finally {
      await h.close();
    }
  },
);
