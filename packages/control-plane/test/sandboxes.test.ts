import { test } from "node:test";
import assert from "node:assert/strict";
import { DATABASES, startHarness } from "./harness.ts";

for (const kind of DATABASES) {
  test(`sandbox lifecycle through an agent (${kind})`, async () => {
    const h = await startHarness(kind);
    try {
      const created = await h.api("/v1/sandboxes", {
        method: "POST",
        json: { vcpus: 1, memory_mb: 256 },
      });
      assert.equal(created.status, 201, await created.clone().text());
      const sb = (await created.json()) as {
        sandbox_id: string;
        status: string;
        disk_size_mb: number;
        template: string;
      };
      assert.match(sb.sandbox_id, /^[a-z0-9]+$/);
      assert.equal(sb.status, "running");
      assert.equal(sb.template, "minimal");
      assert.equal(sb.disk_size_mb, 20480);

      const exec = await h.api(`/v1/sandboxes/${sb.sandbox_id}/exec`, {
        method: "POST",
        json: { cmd: "echo", args: ["hi"] },
      });
      assert.deepEqual(await exec.json(), {
        stdout: "echo hi\n",
        stderr: "",
        exit_code: 0,
        duration_ms: 3,
        encoding: "utf-8",
        stdout_truncated: false,
        stderr_truncated: false,
      });
      // Past the agent's cap: said so, and a character the cut split is dropped (text stays text).
      const cut = await h.api(`/v1/sandboxes/${sb.sandbox_id}/exec`, {
        method: "POST",
        json: { cmd: "truncated" },
      });
      const cutBody = (await cut.json()) as Record<string, unknown>;
      assert.equal(cutBody.stdout, "ab");
      assert.equal(cutBody.encoding, "utf-8");
      assert.equal(cutBody.stdout_truncated, true);
      assert.equal(cutBody.stderr_truncated, false);
      const bin = await h.api(`/v1/sandboxes/${sb.sandbox_id}/exec`, {
        method: "POST",
        json: { cmd: "binary" },
      });
      const binBody = (await bin.json()) as { stdout: string; encoding: string };
      assert.equal(binBody.encoding, "base64");
      assert.deepEqual([...Buffer.from(binBody.stdout, "base64")], [0xff, 0xfe, 0x00]);

      assert.equal(
        (await h.api(`/v1/sandboxes/${sb.sandbox_id}/ping`, { method: "POST" })).status,
        204,
      );
      assert.equal(
        (await h.api(`/v1/sandboxes/${sb.sandbox_id}/resume`, { method: "POST" })).status,
        409,
      );
      const paused = await h.api(`/v1/sandboxes/${sb.sandbox_id}/pause`, { method: "POST" });
      assert.equal(((await paused.json()) as { status: string }).status, "paused");
      const again = await h.api(`/v1/sandboxes/${sb.sandbox_id}/pause`, { method: "POST" });
      assert.equal(again.status, 409);
      assert.equal(
        ((await again.json()) as { error: { code: string } }).error.code,
        "failed_precondition",
      );
      const execPaused = await h.api(`/v1/sandboxes/${sb.sandbox_id}/exec`, {
        method: "POST",
        json: { cmd: "echo" },
      });
      assert.equal(execPaused.status, 409);
      const resumed = await h.api(`/v1/sandboxes/${sb.sandbox_id}/resume`, { method: "POST" });
      assert.equal(((await resumed.json()) as { status: string }).status, "running");

      const list = (await (await h.api("/v1/sandboxes")).json()) as Array<{ sandbox_id: string }>;
      assert.deepEqual(
        list.map((s) => s.sandbox_id),
        [sb.sandbox_id],
      );
      assert.equal(
        (await h.api(`/v1/sandboxes/${sb.sandbox_id}`, { method: "DELETE" })).status,
        204,
      );
      assert.equal(h.agents[0]!.sandboxes.size, 0);
      assert.deepEqual(await (await h.api("/v1/sandboxes")).json(), []);
      const gone = (await (await h.api(`/v1/sandboxes/${sb.sandbox_id}`)).json()) as {
        status: string;
      };
      assert.equal(gone.status, "stopped");
      const missing = await h.api("/v1/sandboxes/nosuchsandbox");
      assert.equal(missing.status, 404);
      assert.deepEqual(Object.keys((await missing.json()) as object), ["error"]);
    } finally {
      await h.close();
    }
  });

  test(`same client request id creates one sandbox (${kind})`, async () => {
    const h = await startHarness(kind);
    try {
      const body = { client_request_id: "req-1" };
      const [a, b] = await Promise.all([
        h.api("/v1/sandboxes", { method: "POST", json: body }),
        h.api("/v1/sandboxes", { method: "POST", json: body }),
      ]);
      const c = await h.api("/v1/sandboxes", { method: "POST", json: body });
      const ids = new Set(
        await Promise.all(
          [a, b, c].map(async (r) => ((await r.json()) as { sandbox_id: string }).sandbox_id),
        ),
      );
      assert.equal(ids.size, 1);
      assert.equal(h.agents[0]!.sandboxes.size, 1);
    } finally {
      await h.close();
    }
  });
}
