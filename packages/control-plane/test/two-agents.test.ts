/**
 * Two real host agents on one machine under one control plane, with QEMU VMs
 * from the `minimal` image: placement spreads sandboxes over both hosts and
 * each runs commands where the control plane says it is; one agent killed
 * (SIGKILL, a `wrenn host-agent` process) turns its host `unreachable` and
 * its sandboxes `unknown` (REST answers 502) while the other host keeps
 * working; restarted on the same data dir, it re-adopts its VMs and the
 * control plane settles them back to `running`. Each agent has a secret the
 * control plane presents. Needs root, QEMU and the image (`./wrenn image
 * build`); skips loudly without them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { HostAgentService } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { createLogger } from "@wrenn/shared/log.ts";
import { until } from "@wrenn/shared/testing/until.ts";
import { startHostAgent, type HostAgent } from "@wrenn/host-agent/agent.ts";
import { TEST_BOOT_SNAPSHOT_DIR } from "../../host-agent/test/test-dirs.ts";
import {
  assertNoLeaks,
  snapshotHostResources,
  type HostResources,
} from "../../host-agent/test/leaks.ts";
import { imageRoot, realAgentSkipReason, startHarness, type Harness } from "./harness.ts";

type Json = Record<string, unknown>;
type ErrorJson = { error: { code: string; message: string } };

const repo = resolve(import.meta.dirname, "../../..");
const agentLog = createLogger("host-agent", process.env.WRENN_LOG_LEVEL ?? "warn");

/**
 * Short so the test sees a dead host quickly, yet 10 polls long: the live agent,
 * on a 2-core machine busy booting TCG guests, must never look dead.
 */
const RECONCILE_MS = 500;
const HOST_TIMEOUT_MS = 5_000;

async function freePort(): Promise<number> {
  const s = createServer().listen(0, "127.0.0.1");
  await new Promise((r) => s.once("listening", r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** `wrenn host-agent` as its own process, so the test can SIGKILL it like a crash. */
async function spawnAgent(
  dataDir: string,
  port: number,
  prefix: string,
  secret: string,
): Promise<{ proc: ChildProcess; output: () => string }> {
  const proc = spawn(
    join(repo, "node_modules/.bin/node"),
    [
      join(repo, "packages/cli/src/main.ts"),
      "host-agent",
      "--listen",
      `127.0.0.1:${port}`,
      "--data-dir",
      dataDir,
      "--network-prefix",
      prefix,
    ],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, WRENN_LOG_LEVEL: "warn", WRENN_HOST_SECRET: secret },
    },
  );
  let output = "";
  proc.stdout?.on("data", (d: Buffer) => (output += d));
  proc.stderr?.on("data", (d: Buffer) => (output += d));
  await until("the spawned host agent to listen", 60_000, async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      assert.fail(`host agent exited: ${output}`);
    }
    return output.includes("listening") ? true : undefined;
  });
  return { proc, output: () => output };
}

/** A direct client of an agent, with its secret as the control plane sends it. */
function rpc(address: string, secret: string | undefined): Client<typeof HostAgentService> {
  return createClient(
    HostAgentService,
    createConnectTransport({
      baseUrl: `http://${address}`,
      httpVersion: "1.1",
      interceptors: [
        (next) => (req) => {
          if (secret) req.header.set("authorization", `Bearer ${secret}`);
          return next(req);
        },
      ],
    }),
  );
}

async function registerWithToken(h: Harness, address: string, secret: string): Promise<string> {
  const tok = (await (
    await h.api("/v1/admin/host-tokens", { method: "POST", json: {} })
  ).json()) as { token: string };
  const res = await h.api("/v1/hosts/register", {
    method: "POST",
    key: null,
    json: { token: tok.token, address, secret },
  });
  assert.equal(res.status, 201, await res.clone().text());
  return ((await res.json()) as { host_id: string }).host_id;
}

test(
  "two real host agents: placement spreads sandboxes; a killed agent's host turns unreachable, its sandboxes unknown",
  { skip: realAgentSkipReason("control plane ↔ two real host agents test"), timeout: 900_000 },
  async () => {
    const tag = (process.pid % 1296).toString(36);
    const prefixA = `cpa${tag}`;
    const prefixB = `cpb${tag}`;
    const root = await mkdtemp(join(tmpdir(), "wrenn-cp-two-"));
    const dataA = join(root, "a");
    const dataB = join(root, "b");
    await mkdir(dataB, { recursive: true });
    // The spawned agent reads kernels and base images from its data dir: lend it the built ones.
    for (const d of ["images", "kernels"]) await symlink(join(imageRoot, d), join(dataB, d));
    // With a kernel in its data dir the agent would boot a KVM probe VM; the machine's verdict is cached.
    await copyFile(join(imageRoot, "kvm-probe.json"), join(dataB, "kvm-probe.json")).catch(
      () => undefined,
    );
    const baselines: HostResources[] = await Promise.all(
      [prefixA, prefixB].map((prefix) => snapshotHostResources({ prefix, markers: [root] })),
    );
    const secretA = `host-a-${randomBytes(16).toString("hex")}`;
    const secretB = `host-b-${randomBytes(16).toString("hex")}`;
    const portB = await freePort();
    const addressB = `127.0.0.1:${portB}`;

    let agentA: HostAgent | undefined;
    let spawnedB: Awaited<ReturnType<typeof spawnAgent>> | undefined;
    let agentB: HostAgent | undefined;
    let h: Harness | undefined;
    let leaked: unknown;
    const startB = (listen: string) =>
      startHostAgent({
        listen,
        dataDir: dataB,
        imageDir: imageRoot,
        // Where the spawned B (image dir = its data dir) kept them.
        bootSnapshotDir: join(dataB, "boot-snapshots"),
        networkPrefix: prefixB,
        secret: secretB,
        log: agentLog,
      });
    try {
      [agentA, spawnedB, h] = await Promise.all([
        startHostAgent({
          listen: "127.0.0.1:0",
          dataDir: dataA,
          imageDir: imageRoot,
          bootSnapshotDir: TEST_BOOT_SNAPSHOT_DIR,
          networkPrefix: prefixA,
          secret: secretA,
          log: agentLog,
        }),
        spawnAgent(dataB, portB, prefixB, secretB),
        startHarness(process.env.DATABASE_URL ? "postgres" : "pglite", {
          agents: 0,
          // A loaded 2-core CI machine boots a TCG guest slowly: allow for it.
          agentTimeoutMs: 600_000,
          reconcileIntervalMs: RECONCILE_MS,
          hostTimeoutMs: HOST_TIMEOUT_MS,
        }),
      ]);
      const cp = h;
      const addressA = new URL(agentA.url).host;
      // Both ways a host joins: a one-time token (REST), and the operator's addHost; each
      // with the secret its agent was started with, which the control plane then sends.
      const hostA = await registerWithToken(cp, addressA, secretA);
      const hostB = await cp.cp.addHost(addressB, { secret: secretB });
      assert.notEqual(hostA, hostB);
      const agents = new Map([
        [hostA, rpc(addressA, secretA)],
        [hostB, rpc(addressB, secretB)],
      ]);
      for (const [address, secret] of [
        [addressA, undefined],
        [addressB, secretA],
      ] as const) {
        await assert.rejects(rpc(address, secret).listSandboxes({}), (err: unknown) => {
          assert.ok(err instanceof ConnectError && err.code === Code.Unauthenticated, String(err));
          return true;
        });
      }

      // 1. Four sandboxes created at once: least-loaded placement gives each host two.
      const t0 = performance.now();
      const created = await Promise.all(
        Array.from({ length: 4 }, async () => {
          const res = await cp.api("/v1/sandboxes", {
            method: "POST",
            json: { vcpus: 1, memory_mb: 256, timeout_sec: 600 },
          });
          assert.equal(res.status, 201, await res.clone().text());
          const json = (await res.json()) as Json;
          return { id: String(json.sandbox_id), host: String(json.host_id) };
        }),
      );
      console.log(`4 concurrent REST creates on 2 hosts: ${Math.round(performance.now() - t0)} ms`);
      const onA = created.filter((s) => s.host === hostA).map((s) => s.id);
      const onB = created.filter((s) => s.host === hostB).map((s) => s.id);
      assert.equal(onA.length, 2, JSON.stringify(created));
      assert.equal(onB.length, 2, JSON.stringify(created));

      const exec = (id: string, script: string) =>
        cp.api(`/v1/sandboxes/${id}/exec`, {
          method: "POST",
          json: { cmd: "/bin/sh", args: ["-c", script], timeout_sec: 30 },
        });
      // Each runs a command through REST; the agent the control plane names holds that VM.
      for (const s of created) {
        const res = await exec(s.id, `echo ${s.id} | tee /tmp/who`);
        assert.equal(res.status, 200, await res.clone().text());
        const out = (await res.json()) as Json;
        assert.equal(out.stdout, `${s.id}\n`);
        assert.equal(out.exit_code, 0);
        const direct = await agents.get(s.host)!.exec({
          sandboxId: s.id,
          cmd: "cat",
          args: ["/tmp/who"],
        });
        assert.equal(Buffer.from(direct.stdout).toString(), `${s.id}\n`);
        // The traffic proxy reaches it too, through the agent of its own host.
        const health = await fetch(`${cp.cp.url}/health`, {
          headers: { "e2b-sandbox-id": s.id, "e2b-sandbox-port": "49983" },
        });
        assert.equal(health.status, 204, `proxied /health of ${s.id}: ${await health.text()}`);
      }
      const listedBy = async (host: string) =>
        (await agents.get(host)!.listSandboxes({})).sandboxes.map((s) => s.sandboxId).sort();
      assert.deepEqual(await listedBy(hostA), [...onA].sort());
      assert.deepEqual(await listedBy(hostB), [...onB].sort());

      // 2. Agent B dies without a word: its host turns unreachable, its sandboxes unknown.
      const exited = new Promise((r) => spawnedB!.proc.once("exit", r));
      spawnedB.proc.kill("SIGKILL");
      const killedAt = performance.now();
      await exited;
      const hostStatus = async (id: string) => {
        const list = (await (await cp.api("/v1/admin/hosts")).json()) as Json[];
        return list.find((x) => x.id === id)?.status;
      };
      const status = async (id: string) =>
        ((await (await cp.api(`/v1/sandboxes/${id}`)).json()) as Json).status;
      // The timeout, then at most one pass: allow two intervals and a loaded machine's slack.
      await until(
        "host B to turn unreachable",
        HOST_TIMEOUT_MS + 2 * RECONCILE_MS + 5_000,
        async () => ((await hostStatus(hostB)) === "unreachable" ? true : undefined),
      );
      console.log(
        `agent killed → host unreachable: ${Math.round(performance.now() - killedAt)} ms (timeout ${HOST_TIMEOUT_MS} ms, interval ${RECONCILE_MS} ms)`,
      );
      for (const id of onB) {
        await until(`sandbox ${id} to turn unknown`, 5_000, async () =>
          (await status(id)) === "unknown" ? true : undefined,
        );
        for (const res of [
          await exec(id, "true"),
          await cp.api(`/v1/sandboxes/${id}/pause`, { method: "POST" }),
        ]) {
          assert.equal(res.status, 502, await res.clone().text());
          const body = (await res.json()) as ErrorJson;
          assert.equal(body.error.code, "unavailable");
          assert.match(body.error.message, /unreachable/);
        }
      }
      const listed = (await (await cp.api("/v1/sandboxes")).json()) as Json[];
      assert.deepEqual(
        listed
          .filter((s) => s.status === "unknown")
          .map((s) => String(s.sandbox_id))
          .sort(),
        [...onB].sort(),
        "unknown sandboxes are still listed",
      );
      assert.equal(await hostStatus(hostA), "ready");
      for (const id of onA) {
        assert.equal(await status(id), "running");
        const res = await exec(id, "echo still here");
        assert.equal(res.status, 200, await res.clone().text());
        assert.equal(((await res.json()) as Json).stdout, "still here\n");
      }

      // The VMs outlived their agent; restarted on the same data dir it re-adopts them,
      // and the control plane settles the unknown rows from what it reports.
      agentB = await startB(addressB);
      spawnedB = undefined;
      await until("host B to be ready again", 30_000, async () =>
        (await hostStatus(hostB)) === "ready" ? true : undefined,
      );
      for (const id of onB) {
        await until(`sandbox ${id} to be running again`, 10_000, async () =>
          (await status(id)) === "running" ? true : undefined,
        );
        const res = await exec(id, "cat /tmp/who");
        assert.equal(res.status, 200, await res.clone().text());
        assert.equal(((await res.json()) as Json).stdout, `${id}\n`, "the same VM, adopted");
      }

      // 3. Everything destroyed through REST.
      for (const s of created) {
        assert.equal((await cp.api(`/v1/sandboxes/${s.id}`, { method: "DELETE" })).status, 204);
      }
      assert.deepEqual(await listedBy(hostA), []);
      assert.deepEqual(await listedBy(hostB), []);
    } catch (err) {
      if (spawnedB) console.error(`spawned agent B's output:\n${spawnedB.output()}`);
      throw err;
    } finally {
      // Whatever failed above: the control plane stops first (no reconciler racing the
      // teardown), then each agent destroys its VMs and host rules. A killed agent's VMs
      // are destroyed by a new agent on its data dir.
      await h?.close().catch((err: unknown) => console.error("control plane close:", err));
      if (spawnedB) {
        const { proc } = spawnedB;
        if (proc.exitCode === null && proc.signalCode === null) {
          const exited = new Promise((r) => proc.once("exit", r));
          proc.kill("SIGKILL");
          await exited;
        }
      }
      agentB ??= await startB("127.0.0.1:0").catch((err: unknown) => {
        console.error("restarting agent B for cleanup:", err);
        return undefined;
      });
      for (const agent of [agentA, agentB]) {
        await agent?.shutdown().catch((err: unknown) => console.error("agent shutdown:", err));
      }
      // No namespaces, links, nftables tables, loop devices or VMM processes of ours left
      // (purged once reported; after a failure, the test's own error is the one thrown).
      for (const before of baselines) {
        await assertNoLeaks(before, { settleMs: 5_000 }).catch((err: unknown) => {
          leaked ??= err;
          console.error(err);
        });
      }
      await rm(root, { recursive: true, force: true });
    }
    if (leaked) throw leaked;
  },
);
