import { test } from "node:test";
import assert from "node:assert/strict";
import { eq } from "drizzle-orm";
import { until } from "@wrenn/shared/testing/until.ts";
import { AgentPool } from "../src/agents.ts";
import { createThrottles } from "../src/auth/throttle.ts";
import type { Deps } from "../src/context.ts";
import { Quotas } from "../src/quotas.ts";
import type { Sessions } from "../src/auth/sessions.ts";
import { sandboxes } from "../src/db/schema.ts";
import { Expiry } from "../src/expiry.ts";
import { SandboxService } from "../src/sandboxes.ts";
import { Placement } from "../src/scheduler.ts";
import { DATABASES, silent, startHarness } from "./harness.ts";
import { e2bCreate } from "./e2b-helpers.ts";

for (const kind of DATABASES)
  test(
    `at its end an E2B sandbox is paused when autoPause, else killed; a timeout call moves the end (${kind})`,
    { timeout: 60_000 },
    async () => {
      const h = await startHarness(kind, { expiryIntervalMs: 100 });
      try {
        const agent = h.agents[0]!;
        const pausing = await e2bCreate(h, { timeout: 1, autoPause: true });
        const dying = await e2bCreate(h, { timeout: 1 });
        const kept = await e2bCreate(h, { timeout: 1 });
        const v1 = (await (
          await h.api("/v1/sandboxes", { method: "POST", json: { timeout_sec: 1 } })
        ).json()) as {
          sandbox_id: string;
        };
        // Moved before its end: it lives on.
        assert.equal(
          (
            await h.api(`/sandboxes/${kept.sandboxID}/timeout`, {
              method: "POST",
              json: { timeout: 60 },
            })
          ).status,
          204,
        );
        const state = async (id: string) => {
          const [row] = await h.cp.db.select().from(sandboxes).where(eq(sandboxes.id, id));
          return row?.status;
        };
        await until("the autoPause sandbox is paused", 10_000, async () =>
          (await state(pausing.sandboxID)) === "paused" ? true : undefined,
        );
        await until("the other is killed", 10_000, async () =>
          (await state(dying.sandboxID)) === "stopped" ? true : undefined,
        );
        assert.equal(agent.sandboxes.has(dying.sandboxID), false);
        assert.equal(agent.sandboxes.has(pausing.sandboxID), false);
        const info = (await (await h.api(`/sandboxes/${pausing.sandboxID}`)).json()) as {
          state: string;
        };
        assert.equal(info.state, "paused");
        assert.equal((await h.api(`/sandboxes/${dying.sandboxID}`)).status, 404);
        assert.equal(await state(kept.sandboxID), "running");
        assert.equal(await state(v1.sandbox_id), "running", "/v1 sandboxes have no E2B end");
        // Each was acted on once.
        assert.deepEqual(
          agent.calls.filter((c) => c.startsWith("pause:") || c.startsWith("destroy:")),
          [`pause:${pausing.sandboxID}`, `destroy:${dying.sandboxID}`].sort(
            (a, b) => agent.calls.indexOf(a) - agent.calls.indexOf(b),
          ),
        );
        // Resumed with a new timeout, it runs again until that one ends.
        const res = await h.api(`/v2/sandboxes/${pausing.sandboxID}/connect`, {
          method: "POST",
          json: { timeout: 1 },
        });
        assert.equal(res.status, 201);
        assert.equal(await state(pausing.sandboxID), "running");
        await until("paused again at its new end", 10_000, async () =>
          (await state(pausing.sandboxID)) === "paused" ? true : undefined,
        );
      } finally {
        await h.close();
      }
    },
  );

for (const kind of DATABASES)
  test(
    `two expiry loops on one database end a sandbox once (${kind})`,
    { timeout: 60_000 },
    async () => {
      const h = await startHarness(kind, { expiryIntervalMs: 3_600_000 });
      const pools: AgentPool[] = [];
      try {
        const agent = h.agents[0]!;
        const ids: string[] = [];
        for (let i = 0; i < 6; i++)
          ids.push((await e2bCreate(h, { timeout: 0, autoPause: i % 2 === 0 })).sandboxID);
        // Two control planes' loops: each with its own service and agent clients, one database.
        const loops = [0, 1].map(() => {
          const agents = new AgentPool();
          pools.push(agents);
          const deps: Deps = {
            db: h.cp.db,
            agents,
            log: silent,
            sessions: {} as Sessions,
            throttles: createThrottles(),
            placement: new Placement(h.cp.db),
            quotas: new Quotas(h.cp.db),
            domain: null,
          };
          return new Expiry(h.cp.db, new SandboxService(deps), silent, 3_600_000);
        });
        await Promise.all(loops.map((l) => l.runOnce()));
        await Promise.all(loops.map((l) => l.runOnce()));
        for (const [i, id] of ids.entries()) {
          const acted = agent.calls.filter((c) => c === `pause:${id}` || c === `destroy:${id}`);
          assert.deepEqual(acted, [i % 2 === 0 ? `pause:${id}` : `destroy:${id}`], id);
        }
      } finally {
        await h.close();
      }
    },
  );
