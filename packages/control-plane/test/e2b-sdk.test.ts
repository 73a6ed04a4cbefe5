import { test } from "node:test";
import assert from "node:assert/strict";
import { AuthenticationError, Sandbox, SandboxNotFoundError } from "e2b";
import { startHarness } from "./harness.ts";
import { e2bCreate } from "./e2b-helpers.ts";

// The REST half through the real `e2b` SDK (the root's pinned 2.x). Sandbox.create
// also needs envd through the traffic proxy: the lead's end-to-end test covers it.
test(
  "the e2b SDK lists, inspects, times out, pauses, snapshots and kills through the control plane",
  { timeout: 60_000 },
  async () => {
    const h = await startHarness("pglite", { domain: "wrenn.test" });
    try {
      const opts = { apiUrl: h.cp.url, apiKey: h.key, domain: "wrenn.test" };
      const a = await e2bCreate(h, { metadata: { app: "sdk", n: "1" }, timeout: 300 });
      const b = await e2bCreate(h, { metadata: { app: "sdk", n: "2" } });
      await e2bCreate(h, { metadata: { app: "other" } });

      const paginator = Sandbox.list({ ...opts, query: { metadata: { app: "sdk" } }, limit: 1 });
      const seen: string[] = [];
      while (paginator.hasNext) seen.push(...(await paginator.nextItems()).map((s) => s.sandboxId));
      assert.deepEqual(seen, [b.sandboxID, a.sandboxID]);

      const info = await Sandbox.getInfo(a.sandboxID, opts);
      assert.equal(info.sandboxId, a.sandboxID);
      assert.equal(info.templateId, "minimal");
      assert.deepEqual(info.metadata, { app: "sdk", n: "1" });
      assert.equal(info.state, "running");
      assert.equal(info.sandboxDomain, "wrenn.test");
      assert.ok(info.endAt.getTime() > Date.now() + 250_000);

      await Sandbox.setTimeout(a.sandboxID, 30_000, opts);
      const after = await Sandbox.getInfo(a.sandboxID, opts);
      assert.ok(Math.abs(after.endAt.getTime() - (Date.now() + 30_000)) < 3_000);

      assert.deepEqual(await Sandbox.getMetrics(a.sandboxID, opts), []);

      const snap = await Sandbox.createSnapshot(a.sandboxID, { ...opts, name: "sdk-snap" });
      assert.equal(snap.snapshotId, "sdk-snap");
      const snaps = Sandbox.listSnapshots(opts);
      assert.deepEqual(
        (await snaps.nextItems()).map((s) => s.snapshotId),
        ["sdk-snap"],
      );
      assert.equal(await Sandbox.deleteSnapshot("sdk-snap", opts), true);
      assert.equal(await Sandbox.deleteSnapshot("sdk-snap", opts), false);

      assert.equal(await Sandbox.pause(a.sandboxID, opts), true);
      assert.equal(await Sandbox.pause(a.sandboxID, opts), false, "already paused: 409");
      const paused = Sandbox.list({ ...opts, query: { state: ["paused"] } });
      assert.deepEqual(
        (await paused.nextItems()).map((s) => s.sandboxId),
        [a.sandboxID],
      );

      // connect resumes it (the SDK's only way back from a pause).
      const connected = await Sandbox.connect(a.sandboxID, { ...opts, timeoutMs: 60_000 });
      assert.equal(connected.sandboxId, a.sandboxID);
      assert.equal((await Sandbox.getInfo(a.sandboxID, opts)).state, "running");
      const forks = await Sandbox.fork(a.sandboxID, { ...opts, count: 2, timeoutMs: 60_000 });
      assert.equal(forks.length, 2);
      for (const f of forks) {
        assert.ok(f instanceof Sandbox, String(f));
        assert.equal((await Sandbox.getInfo(f.sandboxId, opts)).state, "running");
      }

      assert.equal(await Sandbox.kill(a.sandboxID, opts), true);
      assert.equal(await Sandbox.kill(a.sandboxID, opts), false, "unknown: 404");
      await assert.rejects(Sandbox.getInfo(a.sandboxID, opts), SandboxNotFoundError);
      await assert.rejects(
        Sandbox.getInfo(b.sandboxID, { ...opts, apiKey: `e2b_${"0".repeat(40)}` }),
        AuthenticationError,
      );
    } finally {
      await h.close();
    }
  },
);
