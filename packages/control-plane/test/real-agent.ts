/**
 * A real host agent in the test's process for control-plane tests that need
 * VMs: its own data dir, network prefix and secret, the machine's built
 * images; `stop()` destroys what it runs and asserts that nothing leaked
 * (namespaces, links, nftables tables, VMs, loop devices).
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "@wrenn/shared/log.ts";
import { startHostAgent, type HostAgent, type HostAgentOptions } from "@wrenn/host-agent/agent.ts";
import { assertNoLeaks, snapshotHostResources } from "../../host-agent/test/leaks.ts";
import { TEST_BOOT_SNAPSHOT_DIR } from "../../host-agent/test/test-dirs.ts";
import { imageRoot } from "./harness.ts";

export interface RealAgent {
  agent: HostAgent;
  /** HOST:PORT, as a host row holds it. */
  address: string;
  secret: string;
  dataDir: string;
  /** Destroys every sandbox, stops the agent, removes its data and asserts no leaks. */
  stop(): Promise<void>;
}

/** `stem` (≤ 3 letters) names the agent's network resources, with the pid so runs never meet. */
export async function startRealAgent(
  stem: string,
  extra: Partial<HostAgentOptions> = {},
): Promise<RealAgent> {
  const prefix = `${stem}${(process.pid % 1296).toString(36)}`;
  const root = await mkdtemp(join(tmpdir(), `wrenn-${prefix}-`));
  const before = await snapshotHostResources({ prefix, markers: [root] });
  const secret = `test-${randomBytes(16).toString("hex")}`;
  let agent: HostAgent;
  try {
    agent = await startHostAgent({
      listen: "127.0.0.1:0",
      dataDir: join(root, "data"),
      imageDir: imageRoot,
      bootSnapshotDir: TEST_BOOT_SNAPSHOT_DIR,
      networkPrefix: prefix,
      secret,
      log: createLogger("host-agent", process.env.WRENN_TEST_LOG ?? "warn"),
      ...extra,
    });
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw err;
  }
  return {
    agent,
    address: new URL(agent.url).host,
    secret,
    dataDir: join(root, "data"),
    async stop() {
      try {
        await agent.shutdown();
      } finally {
        await rm(root, { recursive: true, force: true });
        await assertNoLeaks(before);
      }
    },
  };
}
