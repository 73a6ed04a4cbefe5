import { test } from "node:test";
import assert from "node:assert/strict";
import { DATABASES, startHarness } from "./harness.ts";
import { startFakeAgent } from "./fake-agent.ts";
import { hosts, sandboxes } from "../src/db/schema.ts";

type Json = Record<string, unknown>;

for (const kind of DATABASES) {
  test(`host registration is one-time, heartbeats need the host secret (${kind})`, async () => {
    const h = await startHarness(kind, { agents: 0 });
    try {
      const agent = await startFakeAgent();
      h.agents.push(agent);
      const tok = (await (
        await h.api("/v1/admin/host-tokens", { method: "POST", json: {} })
      ).json()) as { token: string };
      const reg = await h.api("/v1/hosts/register", {
        method: "POST",
        key: null,
        json: { token: tok.token, address: agent.address },
      });
      assert.equal(reg.status, 201);
      const { host_id, secret } = (await reg.json()) as { host_id: string; secret: string };
      const reuse = await h.api("/v1/hosts/register", {
        method: "POST",
        key: null,
        json: { token: tok.token, address: "10.9.9.9:1" },
      });
      assert.equal(reuse.status, 401);
      const hosts = (await (await h.api("/v1/admin/hosts")).json()) as Json[];
      assert.equal(hosts.length, 1);
      assert.equal(hosts[0]!.status, "ready");
      assert.equal(hosts[0]!.total_vcpus, 8, "registration polls the agent's capacity");
      assert.equal(hosts[0]!.usage, null, "an agent that does not measure shows no usage");
      assert.equal(hosts[0]!.warm_sandboxes, 0);
      // Base templates the agent has become platform templates.
      const tpls = (await (await h.api("/v1/snapshots?type=base")).json()) as Json[];
      assert.deepEqual(
        tpls.map((t) => t.name),
        ["minimal"],
      );

      const beat = { total_vcpus: 3, total_memory_mb: 2048, free_disk_mb: 5000 };
      const wrong = await h.api(`/v1/hosts/${host_id}/heartbeat`, {
        method: "POST",
        key: null,
        headers: { authorization: "Bearer wrs_nope" },
        json: beat,
      });
      assert.equal(wrong.status, 401);
      const ok = await h.api(`/v1/hosts/${host_id}/heartbeat`, {
        method: "POST",
        key: null,
        headers: { authorization: `Bearer ${secret}` },
        json: beat,
      });
      assert.equal(ok.status, 204);
      const after = (await (await h.api("/v1/admin/hosts")).json()) as Json[];
      assert.equal(after[0]!.total_vcpus, 3);
    } finally {
      await h.close();
    }
  });

  test(`host secrets: the control plane sends each host's secret; a wrong one leaves it unreachable (${kind})`, async () => {
    const h = await startHarness(kind, { agents: 0, hostTimeoutMs: 0 });
    try {
      const secret = "s3cret-of-host-a-0123456789";
      const [a, b, c, d] = await Promise.all([
        startFakeAgent({ secret }),
        startFakeAgent({ secret: "the-secret-b-was-started-with" }),
        startFakeAgent(),
        startFakeAgent({ secret: "operator-given-secret-d" }),
      ]);
      h.agents.push(a, b, c, d);
      const register = async (address: string, body: Json) => {
        const tok = (await (
          await h.api("/v1/admin/host-tokens", { method: "POST", json: {} })
        ).json()) as { token: string };
        return h.api("/v1/hosts/register", {
          method: "POST",
          key: null,
          json: { token: tok.token, address, ...body },
        });
      };
      const regA = await register(a.address, { secret });
      assert.equal(regA.status, 201);
      assert.equal(((await regA.json()) as Json).secret, secret);
      const regB = await register(b.address, { secret: "not-the-secret-of-host-b" });
      assert.equal(regB.status, 201);
      // No secret given: one is made, returned, and sent (an agent without --secret ignores it).
      const regC = await register(c.address, {});
      const made = String(((await regC.json()) as Json).secret);
      assert.match(made, /^wrs_[0-9a-f]{48}$/);
      await h.cp.addHost(d.address, { secret: "operator-given-secret-d" });
      for (const bad of ["short", "has spaces in the secret"]) {
        const res = await register("10.1.1.1:1", { secret: bad });
        assert.equal(res.status, 400);
        await assert.rejects(h.cp.addHost("10.1.1.1:1", { secret: bad }), /16-256 printable/);
      }

      await h.cp.reconciler.runOnce();
      const hosts = (await (await h.api("/v1/admin/hosts")).json()) as Json[];
      const statusOf = (address: string) => hosts.find((x) => x.address === address)?.status;
      assert.equal(statusOf(a.address), "ready");
      assert.equal(statusOf(b.address), "unreachable", "a wrong secret is refused");
      assert.equal(statusOf(c.address), "ready");
      assert.equal(statusOf(d.address), "ready");
      assert.ok(a.authorizations.length > 0);
      assert.ok(a.authorizations.every((x) => x === `Bearer ${secret}`));
      assert.ok(c.authorizations.every((x) => x === `Bearer ${made}`));
      assert.ok(d.authorizations.every((x) => x === "Bearer operator-given-secret-d"));
      // Sandbox calls carry it too.
      const created = await h.api("/v1/sandboxes", { method: "POST", json: {} });
      assert.equal(created.status, 201);
      const id = String(((await created.json()) as Json).sandbox_id);
      const exec = await h.api(`/v1/sandboxes/${id}/exec`, {
        method: "POST",
        json: { cmd: "echo", args: ["hi"] },
      });
      assert.equal(exec.status, 200);
    } finally {
      await h.close();
    }
  });

  test(`placement: least loaded host with room; snapshots resume where they live (${kind})`, async () => {
    const h = await startHarness(kind, { agents: 2, overcommit: { cpu: 1, memory: 1, disk: 1 } });
    try {
      const [a, b] = h.agents as [
        NonNullable<(typeof h.agents)[0]>,
        NonNullable<(typeof h.agents)[0]>,
      ];
      const hostOf = new Map<string, string>();
      const hostList = (await (await h.api("/v1/admin/hosts")).json()) as Json[];
      for (const host of hostList) hostOf.set(String(host.id), String(host.address));
      const place = async (body: Json) => {
        const res = await h.api("/v1/sandboxes", {
          method: "POST",
          json: { memory_mb: 4096, disk_size_mb: 1024, ...body },
        });
        const json = (await res.json()) as Json;
        return { status: res.status, json, address: hostOf.get(String(json.host_id)) };
      };
      // Capacity: 8 vCPUs, 16 GiB each. Four 4 GiB sandboxes alternate hosts.
      const placed = [];
      for (let i = 0; i < 4; i++) placed.push((await place({})).address);
      assert.deepEqual(placed.filter((x) => x === a.address).length, 2);
      assert.deepEqual(placed.filter((x) => x === b.address).length, 2);
      // Fill host A's memory; the next one must go to B, and when both are full: 503.
      a.capacity.totalMemoryMb = 8192;
      await h.cp.reconciler.runOnce();
      const next = await place({});
      assert.equal(next.address, b.address);
      const big = await place({ memory_mb: 8192 });
      assert.equal(big.status, 503, JSON.stringify(big.json));
      assert.equal((big.json as { error: { code: string } }).error.code, "resource_exhausted");
      const disk = await place({ memory_mb: 128, disk_size_mb: 200_000 });
      assert.equal(disk.status, 503);

      // A snapshot template lives on one host: sandboxes from it go there.
      const list = (await (await h.api("/v1/sandboxes?limit=1000")).json()) as Json[];
      const onB = list.find((s) => hostOf.get(String(s.host_id)) === b.address)!;
      const snap = await h.api("/v1/snapshots", {
        method: "POST",
        json: { sandbox_id: onB.sandbox_id, name: "tpl-b" },
      });
      assert.equal(snap.status, 201, await snap.clone().text());
      a.capacity.totalMemoryMb = 65536;
      b.capacity.totalMemoryMb = 65536;
      await h.cp.reconciler.runOnce();
      for (let i = 0; i < 3; i++) {
        const fromTpl = await place({ template: "tpl-b", memory_mb: 128 });
        assert.equal(fromTpl.status, 201);
        assert.equal(fromTpl.address, b.address);
        assert.equal(fromTpl.json.memory_mb, 4096, "a snapshot keeps its machine shape");
      }
    } finally {
      await h.close();
    }
  });

  test(`placement: vCPUs count as room; a paused sandbox resumes on the host with its snapshot (${kind})`, async () => {
    const h = await startHarness(kind, { agents: 2, overcommit: { cpu: 1, memory: 1, disk: 1 } });
    try {
      const [a, b] = h.agents as [
        NonNullable<(typeof h.agents)[0]>,
        NonNullable<(typeof h.agents)[0]>,
      ];
      const create = async (vcpus: number) => {
        const res = await h.api("/v1/sandboxes", {
          method: "POST",
          json: { vcpus, memory_mb: 128, disk_size_mb: 1024 },
        });
        return { status: res.status, json: (await res.json()) as Json };
      };
      const agentOf = (id: unknown) =>
        [a, b].find((x) => x.sandboxes.has(String(id))) ?? assert.fail(`no agent has ${id}`);
      // 8 vCPUs per host: one 8-vCPU sandbox fills a host, the next goes to the other.
      const first = await create(8);
      const second = await create(8);
      assert.equal(first.status, 201);
      assert.equal(second.status, 201);
      assert.notEqual(first.json.host_id, second.json.host_id);
      const full = await create(1);
      assert.equal(full.status, 503, "no host has a vCPU left");
      // Paused, a sandbox holds no vCPUs: its host takes another.
      const host = agentOf(first.json.sandbox_id);
      await h.api(`/v1/sandboxes/${String(first.json.sandbox_id)}/pause`, { method: "POST" });
      const third = await create(8);
      assert.equal(third.json.host_id, first.json.host_id);
      // It resumes only where its snapshot is; that host is full now, so not yet.
      const resume = () =>
        h.api(`/v1/sandboxes/${String(first.json.sandbox_id)}/resume`, { method: "POST" });
      const refused = await resume();
      assert.equal(refused.status, 503);
      const status = (
        (await (await h.api(`/v1/sandboxes/${String(first.json.sandbox_id)}`)).json()) as Json
      ).status;
      assert.equal(status, "paused", "a refused resume leaves it paused");
      // When its own host has room again, it resumes there.
      await h.api(`/v1/sandboxes/${String(third.json.sandbox_id)}`, { method: "DELETE" });
      const resumed = await resume();
      assert.equal(resumed.status, 200);
      const json = (await resumed.json()) as Json;
      assert.equal(json.host_id, first.json.host_id);
      assert.equal(agentOf(first.json.sandbox_id), host, "resumed by the agent that paused it");
    } finally {
      await h.close();
    }
  });

  test(`placement: concurrent creates see each other's load and spread (${kind})`, async () => {
    const h = await startHarness(kind, { agents: 2 });
    try {
      const created = await Promise.all(
        Array.from({ length: 6 }, () =>
          h.api("/v1/sandboxes", { method: "POST", json: { memory_mb: 256 } }),
        ),
      );
      const perHost = new Map<string, number>();
      for (const res of created) {
        assert.equal(res.status, 201);
        const hostId = String(((await res.json()) as Json).host_id);
        perHost.set(hostId, (perHost.get(hostId) ?? 0) + 1);
      }
      assert.deepEqual([...perHost.values()], [3, 3]);
    } finally {
      await h.close();
    }
  });

  test(`reconciler: vanished VMs become paused or stopped; silent hosts turn unreachable, their sandboxes unknown (${kind})`, async () => {
    const h = await startHarness(kind, { agents: 1, hostTimeoutMs: 200 });
    try {
      const agent = h.agents[0]!;
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) {
        const res = await h.api("/v1/sandboxes", { method: "POST", json: {} });
        ids.push(String(((await res.json()) as Json).sandbox_id));
      }
      const [autoPaused, vanished, paused, kept] = ids as [string, string, string, string];
      await h.api(`/v1/sandboxes/${paused}/pause`, { method: "POST" });
      agent.sandboxes.delete(autoPaused);
      agent.autoPaused.add(autoPaused);
      agent.sandboxes.delete(vanished);
      await h.cp.reconciler.runOnce();
      const status = async (id: string) =>
        ((await (await h.api(`/v1/sandboxes/${id}`)).json()) as Json).status;
      assert.equal(await status(autoPaused), "paused");
      assert.equal(await status(vanished), "stopped");
      assert.equal(await status(paused), "paused", "paused sandboxes are expected to be absent");
      assert.equal(await status(kept), "running");
      // The auto-paused one resumes normally.
      const resumed = await h.api(`/v1/sandboxes/${autoPaused}/resume`, { method: "POST" });
      assert.equal(((await resumed.json()) as Json).status, "running");

      await agent.close();
      await new Promise((r) => setTimeout(r, 300));
      await h.cp.reconciler.runOnce();
      const hosts = (await (await h.api("/v1/admin/hosts")).json()) as Json[];
      assert.equal(hosts[0]!.status, "unreachable");
      // Running sandboxes may have died with their host: unknown; paused ones are on its disk.
      assert.equal(await status(kept), "unknown");
      assert.equal(await status(autoPaused), "unknown");
      assert.equal(await status(paused), "paused");
      const listed = (await (await h.api("/v1/sandboxes")).json()) as Json[];
      assert.ok(listed.some((s) => s.sandbox_id === kept && s.status === "unknown"));
      for (const [path, json] of [
        [`/v1/sandboxes/${kept}/exec`, { cmd: "true" }],
        [`/v1/sandboxes/${kept}/pause`, undefined],
        [`/v1/sandboxes/${paused}/resume`, undefined],
        ["/v1/snapshots", { sandbox_id: kept, name: "from-unknown" }],
      ] as const) {
        const res = await h.api(path, { method: "POST", json });
        assert.equal(res.status, 502, path);
        const body = (await res.json()) as { error: { code: string; message: string } };
        assert.equal(body.error.code, "unavailable");
        assert.match(body.error.message, /unreachable/);
      }
      const create = await h.api("/v1/sandboxes", { method: "POST", json: {} });
      assert.equal(create.status, 503);

      // The host answers again: what it reports settles its unknown sandboxes.
      agent.sandboxes.delete(autoPaused);
      await agent.reopen();
      await h.cp.reconciler.runOnce();
      const back = (await (await h.api("/v1/admin/hosts")).json()) as Json[];
      assert.equal(back[0]!.status, "ready");
      assert.equal(await status(kept), "running");
      assert.equal(await status(autoPaused), "paused", "auto-paused while unknown");
      assert.equal(await status(paused), "paused");
      const again = await h.api(`/v1/sandboxes/${kept}/exec`, {
        method: "POST",
        json: { cmd: "true" },
      });
      assert.equal(again.status, 200);
    } finally {
      await h.close();
    }
  });

  test(`reconciler: a pending row orphaned mid-create becomes error (${kind})`, async () => {
    const h = await startHarness(kind, { agents: 1, pendingGraceMs: 0 });
    try {
      const res = await h.api("/v1/sandboxes", { method: "POST", json: {} });
      const live = String(((await res.json()) as Json).sandbox_id);
      const [host] = await h.cp.db.select().from(hosts);
      const team = String(((await (await h.api("/v1/me")).json()) as Json).team_id);
      await h.cp.db.insert(sandboxes).values({
        id: "orphan1",
        teamId: team,
        hostId: host!.id,
        template: "minimal",
        status: "pending",
        vcpus: 1,
        memoryMb: 512,
        diskSizeMb: 1024,
        timeoutSec: 60,
      });
      await h.cp.reconciler.runOnce();
      const orphan = (await (await h.api("/v1/sandboxes/orphan1")).json()) as Json;
      assert.equal(orphan.status, "error");
      assert.match(String(orphan.error), /interrupted/);
      const kept = (await (await h.api(`/v1/sandboxes/${live}`)).json()) as Json;
      assert.equal(kept.status, "running");
    } finally {
      await h.close();
    }
  });

  test(`reconciler runs on its own interval (${kind})`, async () => {
    const h = await startHarness(kind, { agents: 1, reconcileIntervalMs: 100 });
    try {
      const res = await h.api("/v1/sandboxes", { method: "POST", json: {} });
      const id = String(((await res.json()) as Json).sandbox_id);
      h.agents[0]!.sandboxes.delete(id);
      let status: unknown;
      for (let i = 0; i < 100 && status !== "stopped"; i++) {
        await new Promise((r) => setTimeout(r, 100));
        status = ((await (await h.api(`/v1/sandboxes/${id}`)).json()) as Json).status;
      }
      assert.equal(status, "stopped");
    } finally {
      await h.close();
    }
  });
}
