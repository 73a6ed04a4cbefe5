/**
 * The control plane driving a real host agent (a separate `wrenn host-agent`
 * process, as in production) that boots QEMU VMs from the `minimal` image:
 * REST create → exec → files → pause → resume → snapshot → create from it →
 * delete. Needs root, QEMU and the image (`./wrenn image build`); skips
 * loudly without them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, symlink, mkdir } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { runCommand } from "@wrenn/shared/command.ts";
import { imageRoot, realAgentSkipReason, startHarness } from "./harness.ts";

type Json = Record<string, unknown>;

const repo = resolve(import.meta.dirname, "../../..");

async function freePort(): Promise<number> {
  const s = createServer().listen(0, "127.0.0.1");
  await new Promise((r) => s.once("listening", r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Names of this agent's network namespaces and links, to prove none outlive the test. */
async function netResources(): Promise<string[]> {
  const ns = (await runCommand("ip", ["netns", "list"])).stdout;
  const links = (await runCommand("ip", ["-o", "link", "show"])).stdout;
  return [...ns.split("\n"), ...links.split("\n").map((l) => l.split(":")[1]?.trim() ?? "")]
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => /^cpe[0-9a-z]+-(ns|vh)-\d+$/.test(n))
    .sort();
}

test(
  "sandbox lifecycle through a real host agent",
  { skip: realAgentSkipReason("control plane ↔ real host agent test"), timeout: 900_000 },
  async () => {
    const data = await mkdtemp(join(tmpdir(), "wrenn-cp-e2e-"));
    const prefix = `cpe${(process.pid % 1296).toString(36)}`;
    const before = await netResources();
    await mkdir(data, { recursive: true });
    // The agent reads kernels and base images from its data dir: lend it the built ones.
    for (const d of ["images", "kernels"]) await symlink(join(imageRoot, d), join(data, d));
    const port = await freePort();
    const agent = spawn(
      join(repo, "node_modules/.bin/node"),
      [
        join(repo, "packages/cli/src/main.ts"),
        "host-agent",
        "--listen",
        `127.0.0.1:${port}`,
        "--data-dir",
        data,
        // Its own names: the default 'wrenn' is a user's wrenn up, whose slots it would remove.
        "--network-prefix",
        prefix,
      ],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, WRENN_LOG_LEVEL: "warn" } },
    );
    let output = "";
    agent.stdout.on("data", (d: Buffer) => (output += d));
    agent.stderr.on("data", (d: Buffer) => (output += d));
    const exited = new Promise<number | null>((r) => agent.once("exit", r));
    // A loaded 2-core CI machine boots a TCG guest slowly: allow for it.
    const h = await startHarness("pglite", { agents: 0, agentTimeoutMs: 600_000 });
    try {
      for (let i = 0; i < 600 && !output.includes("listening"); i++) {
        if (agent.exitCode !== null) assert.fail(`host agent exited: ${output}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(output.includes("listening"), `host agent did not start: ${output}`);
      await h.cp.addHost(`127.0.0.1:${port}`);
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
      await h.close();
      agent.kill("SIGTERM");
      await exited;
      // A stopped agent keeps its host table for the next one to adopt; this one has no next.
      await runCommand("nft", ["delete", "table", "inet", prefix]).catch(() => undefined);
      await rm(data, { recursive: true, force: true });
    }
    assert.deepEqual(await netResources(), before, "no network namespaces or links leaked");
    const qemu = await runCommand("pgrep", ["-af", data]).catch(() => ({ stdout: "" }));
    assert.equal(qemu.stdout.trim(), "", "no VM outlives the test");
    assert.equal(existsSync(data), false);
  },
);
