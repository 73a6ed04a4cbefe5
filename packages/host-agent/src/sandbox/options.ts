/** What the sandbox lifecycle is given: its drivers, its directories, the shape of a request. */
import type { Logger } from "@wrenn/shared/log.ts";
import type { EgressRules } from "../network/egress.ts";
import type { NetworkManager } from "../network/network.ts";
import type { StorageDriver } from "../storage/storage.ts";
import type { VmmDriver } from "../vmm/vmm.ts";
import type { KernelFiles, TemplateImage } from "../image/store.ts";
import type { PoolOptions } from "./pool.ts";

/** Where the lifecycle finds kernels and base templates (the image store). */
export interface ImageSource {
  kernel(): Promise<KernelFiles>;
  template(name: string): Promise<TemplateImage>;
  /** Every base template built on this host. */
  templates(): Promise<TemplateImage[]>;
  bootArgs(opts: { guestIp: string; gatewayIp: string; netmask: string; hostname: string }): string;
}

export interface ManagerOptions {
  dataDir: string;
  /** Short-lived files (sockets, RAM files): kept short for Unix socket path limits. */
  runRoot: string;
  vmm: VmmDriver;
  storage: StorageDriver;
  network: NetworkManager;
  images: ImageSource;
  log: Logger;
  /** How long a cold boot may take to reach envd's /health. */
  bootTimeoutMs?: number;
  /** How long a restored guest's envd may take to answer /init. */
  restoreTimeoutMs?: number;
  /**
   * Where boot snapshots of base templates live (shared by the agents using
   * one image dir); null: every create from a base template boots it.
   */
  bootSnapshotDir: string | null;
  /** Warm sandboxes kept per template in use (see pool.ts); none when absent or every size is 0. */
  pool?: PoolOptions;
  /** VMMs kept started ahead for resumes (see standbys.ts); default 0. */
  standbyVmms?: number;
}

export interface CreateParams {
  id: string;
  template: string;
  vcpus: number;
  memoryMb: number;
  diskSizeMb: number;
  timeoutSec: number;
  envVars: Record<string, string>;
  envdAccessToken?: string;
  network?: EgressRules;
}

export interface ExecParams {
  cmd: string;
  args: string[];
  envs?: Record<string, string>;
  cwd?: string;
  user?: string;
  timeoutSec: number;
}

export interface ExecResult {
  stdout: Buffer;
  stderr: Buffer;
  /** The stream wrote more than the buffered cap: `stdout`/`stderr` hold its first bytes only. */
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  exitCode: number;
  durationMs: number;
}
