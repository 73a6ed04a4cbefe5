/**
 * The control plane driving a real host agent (a separate `wrenn host-agent`
 * process, as in production) that boots QEMU VMs from the `minimal` image:
 * REST create → exec → files → pause → resume → snapshot → create from it →
 * delete. Needs root, QEMU and the image (`./wrenn image build`); skips
 * loudly without them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startPlatform } from "./dashboard-platform.ts";
import { realAgentSkipReason } from "./harness.ts";

type Json = Record<string, unknown>;

test(
  "sandbox lifecycle through a real host agent",
  { skip: realAgentSkipReason("control plane ↔ real host agent test"), timeout: 900_000 },
  async () => {
    // A separate `wrenn host-agent` process with its own prefix, data dir and secret.
    const platform = await startPlatform("cpe");
    const h = platform.h;
    try {
      const bases = (await (await h.api("/v1/snapshots?type=base")).json()) as Json[];
      assert.ok(
        bases.some((t) => t.name === "minimal"),
        JSON.stringify(bases),
      );

      const t0 = performance.now();
      const created = await h.api("/v1/sandboxes", {
        method: "POST",
        json: { vcpus: 1, memory_mb: 512, timeout_sec: 600 },
      });
      assert.equal(created.status, 201, await created.clone().text());
      const id = String(((await created.json()) as Json).sandbox_id);
      const exec = async (cmd: string) =>
        (await (
          await h.api(`/v1/sandboxes/${id}/exec`, {
            method: "POST",
            json: { cmd: "/bin/sh", args: ["-c", cmd] },
          })
        ).json()) as Json;
      const hello = await exec("echo hello");
      console.log(`REST create → first exec: ${Math.round(performance.now() - t0)} ms`);
      assert.equal(hello.stdout, "hello\n");
      assert.equal(hello.exit_code, 0);

      const form = new FormData();
      form.set("path", "/tmp/note.txt");
      form.set("file", new Blob(["written through REST"]));
      const written = await h.api(`/v1/sandboxes/${id}/files/write`, {
        method: "POST",
        body: form,
      });
      assert.equal(written.status, 200, await written.clone().text());
      const read = await h.api(`/v1/sandboxes/${id}/files/read`, {
        method: "POST",
        json: { path: "/tmp/note.txt" },
      });
      assert.equal(await read.text(), "written through REST");
      // The file's bytes as the body (as the SDK sends them), forwarded to envd as they are.
      const raw = await h.api(`/v1/sandboxes/${id}/files/write?path=/tmp/raw.bin`, {
        method: "POST",
        headers: { "content-type": "application/octet-stream" },
        body: Buffer.alloc(3 << 20, 0x5a),
      });
      assert.deepEqual(await raw.json(), { path: "/tmp/raw.bin", size: 3 << 20 });
      const rawCheck = await exec("wc -c < /tmp/raw.bin; tr -d Z < /tmp/raw.bin | wc -c");
      assert.equal(rawCheck.stdout, `${3 << 20}\n0\n`);

      assert.equal((await h.api(`/v1/sandboxes/${id}/pause`, { method: "POST" })).status, 200);
      assert.equal(
        (await h.api(`/v1/sandboxes/${id}/exec`, { method: "POST", json: { cmd: "true" } })).status,
        409,
      );
      await h.cp.reconciler.runOnce();
      assert.equal(((await (await h.api(`/v1/sandboxes/${id}`)).json()) as Json).status, "paused");
      assert.equal((await h.api(`/v1/sandboxes/${id}/resume`, { method: "POST" })).status, 200);
      assert.equal((await exec("cat /tmp/note.txt")).stdout, "written through REST");

      const snap = await h.api("/v1/snapshots", {
        method: "POST",
        json: { sandbox_id: id, name: "cp-e2e-snap" },
      });
      assert.equal(snap.status, 201, await snap.clone().text());
      const child = await h.api("/v1/sandboxes", {
        method: "POST",
        json: { template: "cp-e2e-snap" },
      });
      assert.equal(child.status, 201, await child.clone().text());
      const childId = String(((await child.json()) as Json).sandbox_id);
      const fromSnap = (await (
        await h.api(`/v1/sandboxes/${childId}/exec`, {
          method: "POST",
          json: { cmd: "cat", args: ["/tmp/note.txt"] },
        })
      ).json()) as Json;
      assert.equal(fromSnap.stdout, "written through REST");

      for (const sid of [childId, id]) {
        assert.equal((await h.api(`/v1/sandboxes/${sid}`, { method: "DELETE" })).status, 204);
      }
      assert.equal((await h.api("/v1/snapshots/cp-e2e-snap", { method: "DELETE" })).status, 204);
    } finally {
      // Whatever failed above, destroy what this test made before stopping the agent.
      const live = (await (
        await h.api("/v1/sandboxes?limit=1000")
      )
        .json()
        .catch(() => [])) as Json[];
      for (const s of Array.isArray(live) ? live : []) {
        await h.api(`/v1/sandboxes/${String(s.sandbox_id)}`, { method: "DELETE" }).catch(() => {});
      }
      await h.api("/v1/snapshots/cp-e2e-snap", { method: "DELETE" }).catch(() => {});
      // Stops both; asserts that no namespace, link, host table or VM outlived them.
      await platform.close();
    }
  },
);
