/**
 * In-memory VMM, storage and network drivers for unit tests of the sandbox
 * lifecycle: each keeps what it holds in a set the test can inspect, and
 * fails on demand at a named step. The guest is a stand-in envd on a
 * loopback address that answers /health and /init. Real VMs, disks and
 * namespaces are covered by the tests beside these.
 */
import { createServer, type Server } from "node:http";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { WrennError } from "@wrenn/shared/errors.ts";
import { ENVD_PORT } from "@wrenn/shared/sandbox-proxy.ts";
import type { NetworkManager, NetworkSlot } from "../src/network/network.ts";
import type { ImageSource } from "../src/sandbox/options.ts";
import type { BaseImage, SandboxDisk, StorageDriver } from "../src/storage/storage.ts";
import type {
  BootSpec,
  KernelChoice,
  RestoreSpec,
  StandbySpec,
  StandbyVmm,
  VmHandle,
  VmmDriver,
  VmRecord,
} from "../src/vmm/vmm.ts";

export type FaultStep =
  | "network.acquire"
  | "network.release"
  | "storage.create"
  | "storage.detach"
  | "storage.attach"
  | "vmm.boot"
  | "vmm.restore"
  | "vmm.saveMemory"
  | "vmm.startStandby"
  | "envd.init";

/** Which steps fail next (each once), shared by the drivers of one test. */
export class Faults {
  readonly #armed = new Set<FaultStep>();
  /** The stand-in envd's /health fails while set (a guest that does not answer). */
  envdDown = false;

  arm(step: FaultStep): void {
    this.#armed.add(step);
  }

  clear(): void {
    this.#armed.clear();
    this.envdDown = false;
  }

  check(step: FaultStep): void {
    if (this.#armed.delete(step)) {
      throw new WrennError("internal", `injected fault at ${step}`);
    }
  }
}

class MemoryVm implements VmHandle {
  readonly vmId: string;
  readonly pid: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  paused = false;
  /** As a VMM that holds the VM stopped until its disk can grow. */
  waitsForSpace = false;
  #exit!: (s: { code: number | null; signal: NodeJS.Signals | null }) => void;
  readonly #running: Set<string>;

  constructor(vmId: string, pid: number, running: Set<string>) {
    this.vmId = vmId;
    this.pid = pid;
    this.#running = running;
    running.add(vmId);
    this.exited = new Promise((resolve) => (this.#exit = resolve));
  }

  async pause(): Promise<void> {
    this.paused = true;
  }

  async resume(): Promise<void> {
    this.paused = false;
  }

  async stop(): Promise<void> {
    this.#running.delete(this.vmId);
    this.#exit({ code: 0, signal: null });
  }

  /** The VM dies on its own. */
  crash(): void {
    this.#running.delete(this.vmId);
    this.#exit({ code: null, signal: "SIGKILL" });
  }

  release(): void {}
}

/** A standby VMM: waiting until a restore takes it or it is stopped. */
export class MemoryStandby implements StandbyVmm {
  readonly vmId: string;
  readonly key: string;
  readonly exited: Promise<unknown>;
  readonly runDir: string;
  taken = false;
  #exit!: () => void;
  readonly #waiting: Map<string, MemoryStandby>;

  constructor(spec: StandbySpec, waiting: Map<string, MemoryStandby>) {
    this.vmId = spec.vmId;
    this.key = spec.key;
    this.runDir = spec.runDir;
    this.#waiting = waiting;
    waiting.set(spec.vmId, this);
    this.exited = new Promise<void>((resolve) => (this.#exit = resolve));
  }

  async stop(): Promise<void> {
    if (this.taken) return;
    this.#waiting.delete(this.vmId);
    this.#exit();
  }

  /** It dies waiting. */
  crash(): void {
    this.#waiting.delete(this.vmId);
    this.#exit();
  }
}

export class MemoryVmm implements VmmDriver {
  readonly name = "qemu" as const;
  readonly accel = "tcg" as const;
  /** vmIds of running VMs. */
  readonly running = new Set<string>();
  readonly vms = new Map<string, MemoryVm>();
  readonly #faults: Faults;
  #pid = 1_000_000;

  constructor(faults: Faults) {
    this.#faults = faults;
  }

  kernelFile(kernel: KernelChoice): string {
    return kernel.qemuKernel;
  }

  async boot(spec: BootSpec): Promise<VmHandle> {
    this.#faults.check("vmm.boot");
    return this.#start(spec.vmId);
  }

  /** Standby VMMs waiting, by vmId; `restoredInto`: the standbys restores took. */
  readonly standbys = new Map<string, MemoryStandby>();
  readonly restoredInto: string[] = [];

  async restore(spec: RestoreSpec): Promise<VmHandle> {
    const standby = spec.standby;
    if (standby) {
      if (!(standby instanceof MemoryStandby) || !this.standbys.has(standby.vmId)) {
        throw new WrennError("internal", "restore into a standby that is not waiting");
      }
      if (standby.vmId !== spec.vmId) throw new WrennError("internal", "the standby's vmId");
      standby.taken = true;
      this.standbys.delete(standby.vmId);
      this.restoredInto.push(standby.vmId);
    }
    this.#faults.check("vmm.restore");
    return this.#start(spec.vmId);
  }

  /** The paused memory's "machine" is its size, as saveMemory wrote it. */
  async standbyKey(dir: string): Promise<string | null> {
    return readFile(join(dir, "state"), "utf8").catch(() => null);
  }

  /** While set, a standby's start waits for it: a slow QEMU start. */
  standbyGate: Promise<void> | null = null;

  async startStandby(spec: StandbySpec): Promise<StandbyVmm> {
    this.#faults.check("vmm.startStandby");
    await this.standbyGate;
    return new MemoryStandby(spec, this.standbys);
  }

  #start(vmId: string): MemoryVm {
    const vm = new MemoryVm(vmId, ++this.#pid, this.running);
    this.vms.set(vmId, vm);
    return vm;
  }

  async adopt(record: VmRecord): Promise<VmHandle | null> {
    return this.running.has(record.vmId) ? (this.vms.get(record.vmId) ?? null) : null;
  }

  record(handle: VmHandle): VmRecord {
    return { vmId: handle.vmId, pid: handle.pid, controlSocket: `mem:${handle.vmId}` };
  }

  async saveMemory(_vm: VmHandle, save: { dir: string; memoryMb: number }): Promise<void> {
    this.#faults.check("vmm.saveMemory");
    await writeFile(join(save.dir, "state"), `machine of ${save.memoryMb} MiB`);
    await writeFile(join(save.dir, "memfile"), "memory");
  }

  async afterResume(): Promise<void> {}

  async copyMemory(from: string, to: string): Promise<void> {
    await copyFile(join(from, "state"), join(to, "state"));
    await copyFile(join(from, "memfile"), join(to, "memfile"));
  }
}

export class MemoryStorage implements StorageDriver {
  readonly name = "reflink" as const;
  /** sandboxId → where its disk's data is ("attached" or the keep dir). */
  readonly disks = new Map<string, string>();
  /** Sandboxes running on a working copy of a disk still kept in the keep dir. */
  readonly copies = new Set<string>();
  readonly #faults: Faults;

  constructor(faults: Faults) {
    this.#faults = faults;
  }

  async growBase(): Promise<void> {}

  async create(sandboxId: string, _base: BaseImage, _sizeMb: number, dir: string) {
    this.#faults.check("storage.create");
    this.disks.set(sandboxId, "attached");
    return disk(sandboxId, join(dir, "disk"));
  }

  async destroy(d: SandboxDisk): Promise<void> {
    const id = d.sandboxId;
    if (d.state.detached !== "1" && this.copies.delete(id)) return;
    this.copies.delete(id);
    this.disks.delete(id);
  }

  async detach(d: SandboxDisk, keepDir: string): Promise<SandboxDisk> {
    this.#faults.check("storage.detach");
    this.disks.set(d.sandboxId, keepDir);
    this.copies.delete(d.sandboxId);
    return { ...disk(d.sandboxId, join(keepDir, "disk")), state: { detached: "1" } };
  }

  async attach(d: SandboxDisk): Promise<SandboxDisk> {
    this.#faults.check("storage.attach");
    this.copies.add(d.sandboxId);
    return disk(d.sandboxId, d.path.replace(/\/paused\/disk$/, "/disk"));
  }

  async dropKept(d: SandboxDisk): Promise<void> {
    if (d.state.detached !== "1" || !this.copies.delete(d.sandboxId)) return;
    this.disks.set(d.sandboxId, "attached");
  }

  async flatten(_d: SandboxDisk, outPath: string): Promise<void> {
    await writeFile(outPath, "rootfs");
  }

  async usage(): Promise<number> {
    return 0;
  }

  async adopt(d: SandboxDisk): Promise<boolean> {
    return this.disks.has(d.sandboxId);
  }
}

function disk(sandboxId: string, path: string): SandboxDisk {
  return { sandboxId, path, format: "raw", state: {} };
}

export class MemoryNetwork implements NetworkManager {
  readonly prefix = "mem";
  /** Indexes of slots held. */
  readonly held = new Set<number>();
  readonly #faults: Faults;
  readonly #hostAddress: string;

  constructor(faults: Faults, hostAddress: string) {
    this.#faults = faults;
    this.#hostAddress = hostAddress;
  }

  #slot(index: number): NetworkSlot {
    return {
      index,
      netns: `mem-${index}`,
      tapName: "tap0",
      hostAddress: this.#hostAddress,
      guestIpArg: "",
    };
  }

  async acquire(): Promise<NetworkSlot> {
    this.#faults.check("network.acquire");
    let index = 1;
    while (this.held.has(index)) index++;
    this.held.add(index);
    return this.#slot(index);
  }

  /** While set, a release waits for it before it frees its index: a slow teardown. */
  releaseGate: Promise<void> | null = null;

  async release(slot: NetworkSlot): Promise<void> {
    this.#faults.check("network.release");
    await this.releaseGate;
    this.held.delete(slot.index);
  }

  adopt(index: number): NetworkSlot {
    this.held.add(index);
    return this.#slot(index);
  }

  async cleanupStale(keep: number[]): Promise<void> {
    for (const i of [...this.held]) if (!keep.includes(i)) this.held.delete(i);
  }

  async setEgress(): Promise<void> {}

  async checkEgress(): Promise<void> {}
}

/**
 * The guest's side of create and resume: /health and /init at the address
 * every in-memory slot points at (a loopback address of its own, envd's port).
 */
export async function startStandInEnvd(
  faults: Faults,
): Promise<{ address: string; close: () => Promise<void> }> {
  const address = `127.${40 + (process.pid % 200)}.${Math.floor(Math.random() * 250) + 1}.1`;
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      if (req.url === "/health" && faults.envdDown) {
        res.writeHead(503).end();
        return;
      }
      if (req.url === "/init") {
        try {
          faults.check("envd.init");
        } catch {
          res.writeHead(500).end("injected fault at envd.init");
          return;
        }
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(ENVD_PORT, address, resolve);
  });
  return {
    address,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A kernel and one base template ("minimal") as files in `dir`. */
export async function memoryImages(dir: string): Promise<ImageSource> {
  await mkdir(dir, { recursive: true });
  const kernel = join(dir, "vmlinuz");
  const rootfs = join(dir, "minimal.ext4");
  await writeFile(kernel, "kernel");
  await writeFile(rootfs, "rootfs");
  return {
    kernel: async () => ({
      version: "test",
      vmlinuz: kernel,
      vmlinux: kernel,
      qemuKernel: kernel,
      initrd: "",
    }),
    template: async (name) => {
      if (name !== "minimal") throw new WrennError("not_found", `no template '${name}'`);
      return { name, rootfs, sizeBytes: 6 };
    },
    templates: async () => [{ name: "minimal", rootfs, sizeBytes: 6 }],
    bootArgs: () => "console=ttyS0",
  };
}
