/**
 * A real host agent for tests: its own data dir, its own network prefix (so
 * test files can run side by side), a Connect client, and helpers to run
 * shell in a sandbox and to check that nothing leaked.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Code } from "@connectrpc/connect";
import { ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { HostAgentService } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { createLogger } from "@wrenn/shared/log.ts";
import { prepareDataDir, removeDataFs, type DataFsResult } from "../src/storage/data-fs.ts";
import { startHostAgent, type HostAgent, type HostAgentOptions } from "../src/agent.ts";
import { dataDir as imageDataDir, findTemplate } from "../src/image/store.ts";
import { assertNoLeaks, snapshotHostResources, type HostResources } from "./leaks.ts";
import { TEST_BOOT_SNAPSHOT_DIR } from "./test-dirs.ts";

export const isRoot = process.getuid?.() === 0;

/** Skip reason when the host cannot run VMs at all (said loudly once). */
export function vmSkipReason(what: string): string | false {
  if (isRoot) return false;
  const why = "needs root (network namespaces, TAP devices, VMs)";
  console.warn(`\n!!! SKIPPING ${what}: ${why}\n`);
  return why;
}

export class AgentHarness {
  readonly prefix: string;
  root = "";
  agent!: HostAgent;
  client!: Client<typeof HostAgentService>;
  private baseline!: HostResources;
  private extra: Partial<HostAgentOptions>;
  /** Host resources the test file itself keeps for its whole run. */
  readonly allowed = { netns: [] as string[], links: [] as string[] };

  /** The data dir gets an xfs pool as `wrenn setup` would make (reflink copies). */
  private readonly pool: boolean;
  private poolResult: DataFsResult | undefined;

  /**
   * `prefix` names this file's namespaces and links; the pid is added so two
   * runs of the suite on one machine never clean up each other's slots.
   */

  constructor(
    prefix: string,
    extra: Partial<HostAgentOptions> = {},
    opts: { pool?: boolean } = {},
  ) {
    this.prefix = `${prefix}${(process.pid % 1296).toString(36)}`;
    this.extra = extra;
    this.pool = opts.pool ?? false;
  }

  /** Whether the data dir is a pool of this harness's own (filling it touches nothing else). */
  get ownsDataFs(): boolean {
    return this.poolResult === "pool-created";
  }

  /** More agent options, e.g. a driver built after setUp. */
  configure(extra: Partial<HostAgentOptions>): void {
    this.extra = { ...this.extra, ...extra };
  }

  async setUp(): Promise<void> {
    // Fails with "run wrenn image build" when the image is absent.
    await findTemplate(imageDataDir(), "minimal");
    this.root = await mkdtemp(join(tmpdir(), `wrenn-${this.prefix}-`));
    if (this.pool) {
      // As `wrenn setup` prepares a host's data dir: an xfs pool where there are no reflinks.
      this.poolResult = await prepareDataDir(join(this.root, "data"), {
        log: createLogger("test", "warn"),
      });
    }
    this.baseline = await snapshotHostResources({ prefix: this.prefix, markers: [this.root] });
  }

  private options(): HostAgentOptions {
    return {
      listen: "127.0.0.1:0",
      dataDir: join(this.root, "data"),
      imageDir: imageDataDir(),
      bootSnapshotDir: TEST_BOOT_SNAPSHOT_DIR,
      networkPrefix: this.prefix,
      reapIntervalMs: 300,
      ...this.extra,
    };
  }

  private connect(url: string): void {
    this.client = createClient(
      HostAgentService,
      createConnectTransport({ baseUrl: url, httpVersion: "1.1" }),
    );
  }

  /** The agent in this process was shut down (noLeaksOnceStopped); tearDown has nothing to stop. */
  #shutDown = false;

  async start(): Promise<void> {
    this.#shutDown = false;
    this.agent = await startHostAgent({
      ...this.options(),
      log: createLogger("host-agent", process.env.WRENN_LOG_LEVEL ?? "warn"),
    });
    this.connect(this.agent.url);
  }

  /** The agent running as its own process (a test may kill it, or arm a crash point). */
  process: ChildProcess | undefined;

  async startProcess(env: Record<string, string> = {}): Promise<void> {
    const child = spawn(
      process.execPath,
      [join(import.meta.dirname, "fixtures", "agent-process.ts")],
      {
        env: { ...process.env, ...env, WRENN_TEST_AGENT: JSON.stringify(this.options()) },
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    this.process = child;
    let out = "";
    child.stdout.setEncoding("utf8");
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on("data", (d: string) => {
        out += d;
        const m = /^READY (\S+)$/m.exec(out);
        if (m?.[1]) resolve(m[1]);
      });
      child.once("exit", (code, signal) =>
        reject(new Error(`the agent process exited (${signal ?? code}) before it was ready`)),
      );
    });
    this.connect(url);
  }

  /** Waits for the agent process to end; its signal (e.g. SIGKILL from a crash point). */
  async processExit(): Promise<NodeJS.Signals | null> {
    const child = this.process;
    if (!child) return null;
    this.process = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return child.signalCode;
    const [, signal] = (await once(child, "exit")) as [number | null, NodeJS.Signals | null];
    return signal;
  }

  async stopProcess(): Promise<void> {
    this.process?.kill("SIGTERM");
    await this.processExit();
  }

  async tearDown(): Promise<void> {
    await this.stopProcess();
    if (!this.#shutDown) await this.agent?.shutdown();
    try {
      await assertNoLeaks(this.baseline);
    } finally {
      if (this.poolResult) await removeDataFs(join(this.root, "data"), this.poolResult);
      await rm(this.root, { recursive: true, force: true });
    }
  }

  /** No sandbox listed, and nothing of ours on the host beyond what the file keeps. */
  async noLeaks(): Promise<void> {
    await this.#noSandboxListed();
    await assertNoLeaks({
      ...this.baseline,
      netns: [...this.baseline.netns, ...this.allowed.netns],
      links: [...this.baseline.links, ...this.allowed.links],
      nftTables: [...this.baseline.nftTables, `inet ${this.prefix}`],
    });
  }

  /**
   * No sandbox listed; then, the agent stopped (its process, or the one in
   * this process: a test after it starts another), its standby QEMUs and
   * pooled slots with it, nothing of ours on the host at all.
   */
  async noLeaksOnceStopped(): Promise<void> {
    await this.#noSandboxListed();
    if (this.process) {
      await this.stopProcess();
    } else {
      await this.agent.shutdown();
      this.#shutDown = true;
    }
    await assertNoLeaks(this.baseline);
  }

  async #noSandboxListed(): Promise<void> {
    assert.deepEqual(
      (await this.client.listSandboxes({})).sandboxes.map((s) => s.sandboxId),
      [],
    );
  }

  newId(): string {
    return `t${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  }

  async create(
    id: string,
    extra: {
      diskSizeMb?: number;
      timeoutSec?: number;
      template?: string;
      memoryMb?: number;
      token?: string;
    } = {},
  ) {
    const res = await this.client.createSandbox({
      sandboxId: id,
      template: extra.template ?? "minimal",
      vcpus: 1,
      memoryMb: extra.memoryMb ?? 256,
      timeoutSec: extra.timeoutSec ?? 600,
      diskSizeMb: extra.diskSizeMb ?? 0,
      envdAccessToken: extra.token ?? "",
    });
    return res.sandbox;
  }

  async sh(id: string, script: string, timeoutSec = 60) {
    const res = await this.client.exec({
      sandboxId: id,
      cmd: "/bin/sh",
      args: ["-c", script],
      timeoutSec,
    });
    return {
      stdout: Buffer.from(res.stdout).toString(),
      stderr: Buffer.from(res.stderr).toString(),
      exitCode: res.exitCode,
    };
  }

  /**
   * The VMM's pid as the agent recorded it (waits for it during a create).
   * A sandbox claimed from the warm pool keeps its record in the entry's folder.
   */
  async vmmPid(id: string, timeoutMs = 60_000): Promise<number> {
    const dir = join(this.root, "data", "sandboxes");
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      for (const home of await readdir(dir).catch((): string[] => [])) {
        try {
          const rec = JSON.parse(await readFile(join(dir, home, "record.json"), "utf8")) as {
            id: string;
            vm: { pid: number } | null;
          };
          if (rec.id === id && rec.vm?.pid) return rec.vm.pid;
        } catch {
          // Not written yet, or not a sandbox's folder.
        }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no VMM pid recorded for ${id}`);
  }
}

export function connectCode(err: unknown): Code | undefined {
  return err instanceof ConnectError ? err.code : undefined;
}
