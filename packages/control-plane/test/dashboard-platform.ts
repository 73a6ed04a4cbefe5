/**
 * A whole platform for tests that need VMs behind the REST API (the
 * dashboard's, the e2e lifecycle): a real host agent (a separate
 * `wrenn host-agent` process with its own data dir, network prefix and
 * secret, borrowing the machine's built images) behind a real control plane.
 * `close()` destroys every sandbox and snapshot it made, stops both and
 * asserts that no namespace, link or VM outlived it.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { HostAgentService } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { runCommand } from "@wrenn/shared/command.ts";
import { imageRoot, startHarness, type Harness } from "./harness.ts";

const repo = resolve(import.meta.dirname, "../../..");

export interface Platform {
  h: Harness;
  /** The agent's output so far, for failure messages. */
  output(): string;
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  const s = createServer().listen(0, "127.0.0.1");
  await new Promise((r) => s.once("listening", r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function netResources(prefix: string): Promise<string[]> {
  const ns = (await runCommand("ip", ["netns", "list"])).stdout;
  const links = (await runCommand("ip", ["-o", "link", "show"])).stdout;
  const mine = new RegExp(`^${prefix}-(ns|vh)-\\d+$`);
  return [...ns.split("\n"), ...links.split("\n").map((l) => l.split(":")[1]?.trim() ?? "")]
    .map((l) => (l.split(" ")[0] ?? "").split("@")[0] ?? "")
    .filter((n) => mine.test(n))
    .sort();
}

/** `stem`: 2-3 letters naming this test's network resources (the pid keeps runs apart). */
export async function startPlatform(stem: string): Promise<Platform> {
  const prefix = `${stem}${process.pid % 1000}`;
  const data = await mkdtemp(join(tmpdir(), `wrenn-${stem}-`));
  await mkdir(data, { recursive: true });
  for (const d of ["images", "kernels"]) await symlink(join(imageRoot, d), join(data, d));
  const port = await freePort();
  const secret = randomBytes(24).toString("hex");
  const agent = spawn(
    join(repo, "node_modules/.bin/node"),
    [
      join(repo, "packages/cli/src/main.ts"),
      "host-agent",
      "--listen",
      `127.0.0.1:${port}`,
      "--data-dir",
      data,
      "--network-prefix",
      prefix,
      "--secret",
      secret,
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, WRENN_LOG_LEVEL: "warn" } },
  );
  let output = "";
  agent.stdout.on("data", (d: Buffer) => (output += d));
  agent.stderr.on("data", (d: Buffer) => (output += d));
  const exited = new Promise<number | null>((r) => agent.once("exit", r));
  const h = await startHarness("pglite", { agents: 0, agentTimeoutMs: 600_000 });
  const close = async () => {
    try {
      // Every team's sandboxes (a test signs up users of its own), straight from the agent.
      const agentApi = createClient(
        HostAgentService,
        createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1" }),
      );
      const headers = { authorization: `Bearer ${secret}` };
      const { sandboxes } = await agentApi.listSandboxes({}, { headers, timeoutMs: 30_000 });
      for (const s of sandboxes) {
        await agentApi
          .destroySandbox({ sandboxId: s.sandboxId }, { headers, timeoutMs: 120_000 })
          .catch(() => {});
      }
    } finally {
      await h.close();
      agent.kill("SIGTERM");
      await exited;
      // A stopped agent keeps its host table for the next one to adopt; this one has no next.
      await runCommand("nft", ["delete", "table", "inet", prefix]).catch(() => undefined);
      await rm(data, { recursive: true, force: true });
    }
    assert.deepEqual(await netResources(prefix), [], "no network namespaces or links leaked");
    const qemu = await runCommand("pgrep", ["-af", data]).catch(() => ({ stdout: "" }));
    assert.equal(qemu.stdout.trim(), "", "no VM outlives the test");
  };
  try {
    for (let i = 0; i < 600 && !output.includes("listening"); i++) {
      if (agent.exitCode !== null) throw new Error(`host agent exited: ${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!output.includes("listening")) throw new Error(`host agent did not start: ${output}`);
    await h.cp.addHost(`127.0.0.1:${port}`, { secret });
  } catch (err) {
    await close().catch(() => {});
    throw err;
  }
  assert.ok(existsSync(data));
  return { h, output: () => output, close };
}
