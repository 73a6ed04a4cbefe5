import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { SandboxMetricSchema } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { startHarness } from "./harness.ts";
import { e2bCreate, expectError, type Json } from "./e2b-helpers.ts";

test(
  "E2B metrics from the agent's samples with start/end; network updates reach the agent, running or paused",
  { timeout: 60_000 },
  async () => {
    const h = await startHarness("pglite");
    try {
      const agent = h.agents[0]!;
      const { sandboxID: id } = await e2bCreate(h);
      const t = Date.UTC(2026, 0, 1, 0, 0, 0);
      agent.metrics.set(
        id,
        [0, 5_000, 10_000].map((d, i) =>
          create(SandboxMetricSchema, {
            timestampMs: BigInt(t + d),
            cpuCount: 2,
            cpuUsedPct: 12.5 * (i + 1),
            memUsedBytes: 100n << 20n,
            memTotalBytes: 512n << 20n,
            diskUsedBytes: 1n << 30n,
            diskTotalBytes: 20n << 30n,
          }),
        ),
      );
      const all = (await (await h.api(`/sandboxes/${id}/metrics`)).json()) as Json[];
      assert.equal(all.length, 3);
      assert.deepEqual(all[0], {
        timestamp: new Date(t).toISOString(),
        timestampUnix: t / 1000,
        cpuCount: 2,
        cpuUsedPct: 12.5,
        memUsed: 100 * 2 ** 20,
        memTotal: 512 * 2 ** 20,
        memCache: 0,
        diskUsed: 2 ** 30,
        diskTotal: 20 * 2 ** 30,
      });
      const window = (await (
        await h.api(`/sandboxes/${id}/metrics?start=${t / 1000 + 5}&end=${t / 1000 + 5}`)
      ).json()) as Json[];
      assert.deepEqual(
        window.map((m) => m.cpuUsedPct),
        [25],
      );
      await expectError(await h.api(`/sandboxes/${id}/metrics?start=soon`), 400);
      // Several at once: the latest sample each; unknown ids are left out.
      const many = (await (
        await h.api(`/sandboxes/metrics?sandbox_ids=${id},nosuchsandbox`)
      ).json()) as { sandboxes: Record<string, Json> };
      assert.deepEqual(Object.keys(many.sandboxes), [id]);
      assert.equal(many.sandboxes[id]!.cpuUsedPct, 37.5);
      await expectError(await h.api("/sandboxes/metrics?sandbox_ids=a,B-C"), 400);
      await expectError(await h.api("/sandboxes/metrics"), 400);
      // A path E2B has and Wrenn does not: a 404 in E2B's shape too.
      await expectError(await h.api(`/sandboxes/${id}/logs`), 404, /no route/);

      // Egress rules: stored, sent to the agent; omitted fields clear them.
      const put = (json: unknown) => h.api(`/sandboxes/${id}/network`, { method: "PUT", json });
      assert.equal(
        (await put({ allowOut: ["1.1.1.1"], allow_internet_access: false })).status,
        204,
      );
      assert.deepEqual(agent.networks.get(id), { allowOut: ["1.1.1.1"], denyOut: ["0.0.0.0/0"] });
      let detail = (await (await h.api(`/sandboxes/${id}`)).json()) as Json;
      assert.deepEqual(detail.network, {
        allowOut: ["1.1.1.1"],
        denyOut: ["0.0.0.0/0"],
        allowPublicTraffic: true,
      });
      assert.equal(detail.allowInternetAccess, false);
      assert.equal((await put({ denyOut: ["10.0.0.0/8"] })).status, 204);
      assert.deepEqual(agent.networks.get(id), { allowOut: [], denyOut: ["10.0.0.0/8"] });
      for (const bad of [
        { denyOut: ["evil.example.com"] },
        { allowOut: "1.1.1.1" },
        { allowOut: ["300.1.1.1/8"] },
        { egressProxy: { address: "proxy:1080" } },
        { rules: { "*.example.com": [{ transform: { headers: { a: "b" } } }] } },
      ]) {
        await expectError(await put(bad), 400);
      }
      // Paused: the agent keeps them for the resume.
      assert.equal((await h.api(`/sandboxes/${id}/pause`, { method: "POST" })).status, 204);
      assert.deepEqual(await (await h.api(`/sandboxes/${id}/metrics`)).json(), []);
      assert.equal((await put({})).status, 204);
      assert.deepEqual(agent.networks.get(id), { allowOut: [], denyOut: [] });
      detail = (await (await h.api(`/sandboxes/${id}`)).json()) as Json;
      assert.deepEqual(detail.network, { allowPublicTraffic: true });
      assert.equal(detail.allowInternetAccess, null);
    } finally {
      await h.close();
    }
  },
);

test(
  "E2B snapshots (the sandbox keeps running), sandboxes from them, list and delete; fork; templates and aliases",
  { timeout: 60_000 },
  async () => {
    const h = await startHarness("pglite");
    try {
      const agent = h.agents[0]!;
      const src = await e2bCreate(h, { timeout: 600, metadata: { role: "source" } });
      const id = src.sandboxID;
      const info = async (sid: string) => (await (await h.api(`/sandboxes/${sid}`)).json()) as Json;
      const endBefore = (await info(id)).endAt;

      const snap = await h.api(`/sandboxes/${id}/snapshots`, {
        method: "POST",
        json: { name: "snap-one" },
      });
      assert.equal(snap.status, 201);
      assert.deepEqual(await snap.json(), { snapshotID: "snap-one", names: ["snap-one"] });
      assert.equal((await info(id)).state, "running", "E2B's snapshot keeps the sandbox running");
      assert.equal((await info(id)).endAt, endBefore, "and its end");
      // Unnamed, and the same name again: replaced.
      const unnamed = (await (
        await h.api(`/sandboxes/${id}/snapshots`, { method: "POST", json: {} })
      ).json()) as {
        snapshotID: string;
      };
      assert.match(unnamed.snapshotID, new RegExp(`^snap-${id}-`));
      assert.equal(
        (await h.api(`/sandboxes/${id}/snapshots`, { method: "POST", json: { name: "snap-one" } }))
          .status,
        201,
      );
      await expectError(
        await h.api(`/sandboxes/${id}/snapshots`, { method: "POST", json: { name: "../x" } }),
        400,
      );
      await expectError(
        await h.api(`/sandboxes/${id}/snapshots`, { method: "POST", json: { name: "minimal" } }),
        409,
        /taken/,
      );

      const listed = (await (await h.api("/snapshots")).json()) as Array<{ snapshotID: string }>;
      assert.deepEqual(
        listed.map((s) => s.snapshotID).sort(),
        ["snap-one", unnamed.snapshotID].sort(),
      );
      const bySource = (await (
        await h.api(`/snapshots?sandboxID=${id}&name=snap-one`)
      ).json()) as Json[];
      assert.equal(bySource.length, 1);
      const page = await h.api("/snapshots?limit=1");
      assert.equal(((await page.json()) as Json[]).length, 1);
      const next = page.headers.get("x-next-token");
      assert.ok(next);
      const rest = (await (await h.api(`/snapshots?limit=1&nextToken=${next}`)).json()) as Json[];
      assert.equal(rest.length, 1);

      const child = await e2bCreate(h, { templateID: "snap-one" });
      assert.equal(child.templateID, "snap-one");
      assert.equal(agent.createRequests.get(child.sandboxID)?.template, "snap-one");

      // Fork: N new sandboxes from the running one's state; it keeps running, same end.
      const fork = await h.api(`/sandboxes/${id}/fork`, {
        method: "POST",
        json: { count: 2, timeout: 60 },
      });
      assert.equal(fork.status, 201);
      const forks = (await fork.json()) as Array<{ sandbox?: Json; error?: Json }>;
      assert.equal(forks.length, 2);
      for (const f of forks) {
        assert.ok(f.sandbox, JSON.stringify(f));
        const d = await info(f.sandbox.sandboxID as string);
        assert.equal(d.state, "running");
        assert.deepEqual(d.metadata, { role: "source" });
        assert.notEqual(
          f.sandbox.envdAccessToken,
          src.envdAccessToken,
          "each fork has its own token",
        );
      }
      assert.equal((await info(id)).state, "running");
      assert.equal((await info(id)).endAt, endBefore);
      assert.equal((await h.api(`/sandboxes/${id}/pause`, { method: "POST" })).status, 204);
      await expectError(
        await h.api(`/sandboxes/${id}/fork`, { method: "POST", json: {} }),
        409,
        /paused/,
      );
      await expectError(
        await h.api(`/sandboxes/${id}/fork`, { method: "POST", json: { count: 0 } }),
        400,
      );

      // Templates: the platform's base (public) and the team's snapshots; `base` resolves.
      const templates = (await (await h.api("/templates")).json()) as Json[];
      const names = templates.map((t) => t.templateID);
      assert.ok(names.includes("minimal") && names.includes("snap-one"), names.join());
      const minimal = templates.find((t) => t.templateID === "minimal")!;
      assert.equal(minimal.public, true);
      assert.equal(minimal.buildStatus, "ready");
      assert.deepEqual(await (await h.api("/templates/aliases/base")).json(), {
        templateID: "minimal",
        public: true,
      });
      assert.deepEqual(await (await h.api("/templates/aliases/snap-one")).json(), {
        templateID: "snap-one",
        public: false,
      });
      await expectError(await h.api("/templates/aliases/nope"), 404);

      assert.equal(
        (await h.api(`/templates/${unnamed.snapshotID}`, { method: "DELETE" })).status,
        204,
      );
      await expectError(await h.api(`/templates/${unnamed.snapshotID}`, { method: "DELETE" }), 404);
      await expectError(await h.api("/templates/minimal", { method: "DELETE" }), 403);
      assert.ok(!agent.templates.has(unnamed.snapshotID), "deleted on its host too");
    } finally {
      await h.close();
    }
  },
);

test(
  "a fork none of whose sandboxes start leaves no snapshot behind",
  { timeout: 60_000 },
  async () => {
    const h = await startHarness("pglite");
    try {
      const agent = h.agents[0]!;
      const { sandboxID: id } = await e2bCreate(h);
      // No room for a fork: every create fails, each with its own error entry.
      agent.capacity.totalMemoryMb = 512;
      await h.cp.reconciler.runOnce();
      const res = await h.api(`/sandboxes/${id}/fork`, { method: "POST", json: { count: 2 } });
      assert.equal(res.status, 201);
      const results = (await res.json()) as Array<{ sandbox?: Json; error?: { code: number } }>;
      assert.equal(results.length, 2);
      for (const r of results) {
        assert.equal(r.sandbox, undefined);
        assert.equal(r.error?.code, 503);
      }
      assert.deepEqual(await (await h.api("/snapshots")).json(), []);
      assert.deepEqual([...agent.templates.keys()], ["minimal"]);
      const src = (await (await h.api(`/sandboxes/${id}`)).json()) as Json;
      assert.equal(src.state, "running");
    } finally {
      await h.close();
    }
  },
);
