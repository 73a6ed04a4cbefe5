/**
 * A real platform for benchmarks that go through the control plane: a host
 * agent (its own data dir and network prefix, the tests' boot snapshots), a
 * control plane that knows it (on PGlite, or on a PostgreSQL database of its
 * own), a user and an API key.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { createLogger } from "@wrenn/shared/log.ts";
import { startHostAgent, type HostAgent } from "../../packages/host-agent/src/agent.ts";
import { dataDir } from "../../packages/host-agent/src/image/store.ts";
import { startControlPlane, type ControlPlane } from "../../packages/control-plane/src/server.ts";
import { TEST_BOOT_SNAPSHOT_DIR } from "../../packages/host-agent/test/test-dirs.ts";

export interface BenchPlatform {
  /** The agent's data dir is `${root}/data`. */
  root: string;
  /** The agent's bearer secret (its proxy hop takes it as x-wrenn-host-secret). */
  secret: string;
  agent: HostAgent;
  cp: ControlPlane;
  /** An API key of the platform's admin. */
  key: string;
  /** POSTs JSON to the control plane; throws on an error answer. */
  post(
    path: string,
    body: unknown,
    headers?: Record<string, string>,
  ): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

export async function startBenchPlatform(
  name: string,
  networkPrefix: string,
  pools: { warmPool?: number; networkPool?: number } = {},
  /** PostgreSQL instead of PGlite in this process (see scratch-database.ts). */
  databaseUrl?: string,
): Promise<BenchPlatform> {
  const root = await mkdtemp(join(tmpdir(), `wrenn-bench-${name}-`));
  const secret = randomBytes(24).toString("hex");
  const log = createLogger("bench", "warn");
  const agent = await startHostAgent({
    listen: "127.0.0.1:0",
    dataDir: join(root, "data"),
    imageDir: dataDir(),
    networkPrefix,
    bootSnapshotDir: TEST_BOOT_SNAPSHOT_DIR,
    secret,
    log,
    ...pools,
  });
  // As `wrenn up`: the agent's hop is handed requests in this process.
  const cp = await startControlPlane({
    port: 0,
    ...(databaseUrl ? { databaseUrl } : { pglite: await PGlite.create() }),
    log,
    localHops: new Map([[new URL(agent.url).host, agent.hop]]),
  });
  const close = async () => {
    await cp.close();
    await agent.shutdown();
    await rm(root, { recursive: true, force: true });
  };
  try {
    await cp.addHost(new URL(agent.url).host, { secret });
    const post: BenchPlatform["post"] = async (path, body, headers = {}) => {
      const res = await fetch(`${cp.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
      });
      if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
      return (await res.json()) as Record<string, unknown>;
    };
    const { token } = await post("/v1/auth/signup", {
      email: `bench-${name}@example.com`,
      password: "a long bench password",
    });
    const { key } = await post(
      "/v1/api-keys",
      { name: "bench" },
      { authorization: `Bearer ${String(token)}` },
    );
    return { root, secret, agent, cp, key: String(key), post, close };
  } catch (err) {
    await close();
    throw err;
  }
}
