// GET /v1/sandboxes/{id}/logs over the fake agent's console: offsets, paging,
// bad input and other teams.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startHarness } from "./harness.ts";
import { otherTeamKey } from "./e2b-helpers.ts";

interface Logs {
  text: string;
  offset: number;
  next_offset: number;
}

test(
  "/v1 sandbox logs: read by offset, page with limit, errors with codes",
  { timeout: 60_000 },
  async () => {
    const h = await startHarness("pglite");
    try {
      const created = (await (
        await h.api("/v1/sandboxes", { method: "POST", json: {} })
      ).json()) as { sandbox_id: string };
      const id = created.sandbox_id;
      const logs = async (query = "") => {
        const res = await h.api(`/v1/sandboxes/${id}/logs${query}`);
        return {
          status: res.status,
          body: (await res.json()) as Logs & { error?: { code: string } },
        };
      };
      assert.deepEqual((await logs()).body, { text: "", offset: 0, next_offset: 0 });
      h.agents[0]!.consoles.set(id, "0123456789abcdefghij\n");
      assert.deepEqual((await logs("?limit=10")).body, {
        text: "0123456789",
        offset: 0,
        next_offset: 10,
      });
      assert.deepEqual((await logs("?offset=10")).body, {
        text: "abcdefghij\n",
        offset: 10,
        next_offset: 21,
      });
      for (const q of ["?offset=-1", "?limit=0", `?limit=${(1 << 20) + 1}`, "?offset=x"]) {
        const r = await logs(q);
        assert.equal(r.status, 400, q);
        assert.equal(r.body.error?.code, "invalid_argument", q);
      }
      const otherKey = await otherTeamKey(h);
      assert.equal(typeof otherKey, "string", "another team's key");
      const other = await h.api(`/v1/sandboxes/${id}/logs`, { key: otherKey });
      assert.equal(other.status, 404);
      await h.api(`/v1/sandboxes/${id}/pause`, { method: "POST" });
      const paused = await logs();
      assert.equal(paused.status, 409);
      assert.equal(paused.body.error?.code, "failed_precondition");
    } finally {
      await h.close();
    }
  },
);
