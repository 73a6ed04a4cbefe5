/**
 * The SDK through a real host agent (a `wrenn host-agent` process booting
 * QEMU VMs from the `minimal` image) and a control plane: create, exec
 * buffered and streamed, a 64 MiB file streamed in and out, pause/resume
 * with the file intact, snapshot, destroy. Needs root, QEMU and the image;
 * skips loudly without them. Run it under `flock /tmp/wrenn-vm.lock`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { runCommand } from "@wrenn/shared/command.ts";
import { until } from "@wrenn/shared/testing/until.ts";
import { imageRoot, realAgentSkipReason, startHarness } from "../../control-plane/test/harness.ts";
import { assertNoLeaks, snapshotHostResources } from "../../host-agent/test/leaks.ts";
import { ConflictError, Sandbox, Wrenn } from "../src/index.ts";

const repo = resolve(import.meta.dirname, "../../..");

async function freePort(): Promise<number> {
  return new Promise((done) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => done(port));
    });
  });
}

test(
  "the SDK drives real VMs: exec, streams, 64 MiB files, pause/resume, snapshot",
  { skip: realAgentSkipReason("SDK real-VM test"), timeout: 900_000 },
  async () => {
    const prefix = `wsd${(process.pid % 1296).toString(36)}`;
    const data = await mkdtemp(join(tmpdir(), `wrenn-${prefix}-`));
    const before = await snapshotHostResources({ prefix, markers: [data] });
    await mkdir(data, { recursive: true });
    for (const d of ["images", "kernels", "boot-snapshots"]) {
      await mkdir(join(imageRoot, d), { recursive: true });
      await symlink(join(imageRoot, d), join(data, d));
    }
    const port = await freePort();
    const agent = spawn(
      join(repo, "wrenn"),
      [
        "host-agent",
        "--listen",
        `127.0.0.1:${port}`,
        "--data-dir",
        data,
        "--network-prefix",
        prefix,
      ],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, WRENN_LOG_LEVEL: "warn" } },
    );
    let output = "";
    agent.stdout.on("data", (d: Buffer) => (output += d));
    agent.stderr.on("data", (d: Buffer) => (output += d));
    const exited = new Promise((r) => agent.once("exit", r));
    const h = await startHarness("pglite", { agents: 0, agentTimeoutMs: 600_000 });
    try {
      await until("the host agent to listen", 60_000, () => {
        if (agent.exitCode !== null) assert.fail(`host agent exited: ${output}`);
        return output.includes("listening") ? true : undefined;
      });
      await h.cp.addHost(`127.0.0.1:${port}`);
      const wrenn = Wrenn.connect({ apiUrl: h.cp.url, apiKey: h.key });

      let t = performance.now();
      const sb = await Sandbox.create(wrenn, { template: "minimal", timeout_sec: 600 });
      console.log(`create: ${Math.round(performance.now() - t)} ms`);
      const r = await sb.exec("sh", ["-c", "echo hi; echo oops >&2; exit 4"]);
      assert.deepEqual([r.stdout, r.stderr, r.exitCode], ["hi\n", "oops\n", 4]);

      const chunks: string[] = [];
      const end = await sb.execStream("sh", ["-c", "for i in 1 2 3; do echo $i; sleep 0.2; done"], {
        onStdout: (d) => chunks.push(Buffer.from(d).toString()),
      });
      assert.equal(end.exitCode, 0);
      assert.equal(chunks.join(""), "1\n2\n3\n");
      assert.ok(chunks.length >= 2, `output arrived as it was printed: ${JSON.stringify(chunks)}`);

      const size = 64 << 20;
      const block = new Uint8Array(1 << 20).map((_, i) => (i * 7) % 256);
      const hash = createHash("sha256");
      async function* data64() {
        for (let i = 0; i < size / block.length; i++) {
          hash.update(block);
          yield block;
        }
      }
      t = performance.now();
      assert.equal((await sb.files.write("/tmp/big.bin", data64())).size, size);
      console.log(`write 64 MiB: ${Math.round(performance.now() - t)} ms`);
      const digest = hash.digest("hex");
      t = performance.now();
      const back = createHash("sha256");
      let got = 0;
      for await (const c of (await sb.files.read(
        "/tmp/big.bin",
      )) as unknown as AsyncIterable<Uint8Array>) {
        back.update(c);
        got += c.length;
      }
      console.log(`read 64 MiB: ${Math.round(performance.now() - t)} ms`);
      assert.deepEqual([got, back.digest("hex")], [size, digest]);

      t = performance.now();
      await sb.pause();
      console.log(`pause: ${Math.round(performance.now() - t)} ms`);
      await assert.rejects(sb.exec("true"), ConflictError);
      t = performance.now();
      await sb.resume();
      console.log(`resume: ${Math.round(performance.now() - t)} ms`);
      const sum = await sb.exec("sha256sum", ["/tmp/big.bin"]);
      assert.equal(sum.stdout.split(" ")[0], digest);

      const tpl = await sb.snapshot("sdk-vm");
      assert.equal(tpl.name, "sdk-vm");
      assert.equal(sb.status, "paused");
      await sb.destroy();
      await wrenn.deleteTemplate("sdk-vm");
      assert.deepEqual(await Sandbox.list(wrenn), []);
    } finally {
      await h.close();
      agent.kill("SIGTERM");
      await exited;
      // A stopped agent keeps its nftables table on purpose (a restart re-adopts its VMs'
      // rules); this test's agent is gone for good, so its table goes too.
      await runCommand("nft", ["delete", "table", "inet", prefix]).catch(() => undefined);
      await assertNoLeaks(before, { settleMs: 5000 }).finally(() =>
        rm(data, { recursive: true, force: true }),
      );
    }
  },
);
