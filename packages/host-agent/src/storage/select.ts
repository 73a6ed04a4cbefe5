/**
 * Picks the rootfs storage driver for this host: dm-snapshot when the kernel
 * has device-mapper and the VMM is Firecracker, qcow2 overlays for QEMU,
 * reflink/copy otherwise. A configured name overrides the choice.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { reflinkInPlace } from "../util/fs.ts";
import { createLogger, type Logger } from "@wrenn/shared/log.ts";
import { runCommand, type Runner } from "@wrenn/shared/command.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { RetryPolicy } from "./dmsetup.ts";
import { DmSnapshotStorage } from "./dm-snapshot.ts";
import { Qcow2Storage } from "./qcow2.ts";
import { ReflinkStorage } from "./reflink.ts";
import type { StorageDriver, StorageName } from "./storage.ts";

export interface SelectStorageOptions {
  /** The VMM that will read the disks (qcow2 needs QEMU's block layer); named, not imported from vmm/. */
  vmm: "qemu" | "firecracker";
  /** Where sandbox disks live; probed for reflink support (for the log). */
  dataDir: string;
  runner?: Runner;
  log?: Logger;
  /** Config override (e.g. WRENN_STORAGE); refused when this host cannot run it. */
  override?: StorageName;
  removeRetry?: RetryPolicy;
}

/** `dmsetup version` only reports a driver version when the kernel side answers. */
export async function deviceMapperAvailable(runner: Runner = runCommand): Promise<boolean> {
  try {
    const { stdout } = await runner("dmsetup", ["version"]);
    return /Driver version/.test(stdout);
  } catch {
    return false;
  }
}

/** Whether `cp --reflink=always` works inside `dir`. */
export async function reflinkSupported(dir: string, runner: Runner = runCommand): Promise<boolean> {
  return probeIn(dir, async (a, b) => {
    await runner("cp", ["--reflink=always", a, b]);
  });
}

/** Whether `reflinkInPlace` (xfs_io) works inside `dir`. */
export async function reflinkInPlaceSupported(
  dir: string,
  runner: Runner = runCommand,
): Promise<boolean> {
  return probeIn(dir, async (a, b) => {
    await writeFile(b, "-----");
    await reflinkInPlace(a, b, runner);
  });
}

/** Whether `copy` succeeds from a small file `a` to `b`, in a folder of its own inside `dir`. */
async function probeIn(dir: string, copy: (a: string, b: string) => Promise<void>) {
  await mkdir(dir, { recursive: true });
  const probe = await mkdtemp(join(dir, ".reflink-probe-"));
  try {
    await writeFile(join(probe, "a"), "wrenn");
    await copy(join(probe, "a"), join(probe, "b"));
    return true;
  } catch {
    return false;
  } finally {
    await rm(probe, { recursive: true, force: true });
  }
}

export async function selectStorage(options: SelectStorageOptions): Promise<StorageDriver> {
  const runner = options.runner ?? runCommand;
  const log = options.log ?? createLogger("host-agent");
  const dm = await deviceMapperAvailable(runner);
  let name: StorageName;
  let reason: string;
  if (options.override) {
    name = options.override;
    reason = "configured";
    if (name === "dm-snapshot" && !dm) {
      throw new WrennError(
        "failed_precondition",
        "storage 'dm-snapshot' is configured but this kernel has no usable device-mapper (`dmsetup version` fails; try `modprobe dm_snapshot`)",
      );
    }
    if (name === "qcow2" && options.vmm !== "qemu") {
      throw new WrennError(
        "invalid_argument",
        `storage 'qcow2' needs the qemu VMM, not ${options.vmm}`,
      );
    }
  } else if (options.vmm === "firecracker" && dm) {
    name = "dm-snapshot";
    reason = "device-mapper is available";
  } else if (options.vmm === "qemu") {
    name = "qcow2";
    reason = "the VMM is qemu";
  } else {
    name = "reflink";
    reason = "no device-mapper for firecracker";
  }
  const fields: Record<string, unknown> = {
    storage: name,
    reason,
    vmm: options.vmm,
    deviceMapper: dm,
  };
  if (name === "reflink") fields.reflink = await reflinkSupported(options.dataDir, runner);
  log.info(fields, `rootfs storage: ${name}`);
  switch (name) {
    case "dm-snapshot":
      return new DmSnapshotStorage({ runner, log, removeRetry: options.removeRetry });
    case "qcow2":
      return new Qcow2Storage({ runner, log });
    case "reflink":
      return new ReflinkStorage({ runner, log });
  }
}
