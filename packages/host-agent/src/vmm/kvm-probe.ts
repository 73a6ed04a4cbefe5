import { spawn } from "node:child_process";
import { access, constants, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { release } from "node:os";
import { join } from "node:path";
import { messageOf } from "@wrenn/shared/errors.ts";
import { exists } from "../util/fs.ts";
import { hostTscKhz } from "../util/tsc.ts";

export interface KvmProbe {
  usable: boolean;
  reason: string;
  /** Launch to the guest kernel's first panic line, when it got there. */
  ms?: number;
}

/** A real KVM boots the kernel to its root-mount panic in well under a second. */
const PROBE_LIMIT_MS = 5000;
/** The panic every kernel hits when booted without a root disk or initrd. */
const MARKER = /Kernel panic|VFS: Unable to mount root/;

/**
 * Boots `kernelPath` under QEMU with `-accel kvm` and no disk: the kernel
 * panics at root mount, which a usable KVM reaches in a fraction of a second.
 * /dev/kvm existing proves nothing: under PVM (nested, for PVM-enlightened
 * guests only) a stock kernel takes ~55 s to decompress and then dies.
 */
export async function bootProbe(
  kernelPath: string,
  qemuBinary = "qemu-system-x86_64",
): Promise<KvmProbe> {
  const start = performance.now();
  return new Promise((resolve) => {
    const child = spawn(
      qemuBinary,
      [
        "-M",
        "microvm",
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-m",
        "128M",
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-no-reboot",
        "-serial",
        "stdio",
        "-kernel",
        kernelPath,
        "-append",
        `console=ttyS0 panic=-1 tsc_early_khz=${hostTscKhz()}`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let done = false;
    const finish = (probe: KvmProbe) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.kill("SIGKILL");
      resolve(probe);
    };
    const timer = setTimeout(
      () =>
        finish({ usable: false, reason: `a KVM guest did not boot within ${PROBE_LIMIT_MS} ms` }),
      PROBE_LIMIT_MS,
    );
    const onData = (b: Buffer) => {
      out = (out + b.toString("utf8")).slice(-8192);
      if (MARKER.test(out)) {
        const ms = Math.round(performance.now() - start);
        finish({ usable: true, reason: `a KVM guest booted in ${ms} ms`, ms });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("error", (err) =>
      finish({ usable: false, reason: `cannot run QEMU: ${err.message}` }),
    );
    // "close", not "exit": the panic line may still be in the pipe when QEMU exits.
    child.on("close", (code) => {
      const last = out.trim().split("\n").slice(-2).join(" / ");
      finish({ usable: false, reason: `the KVM probe guest died (exit ${code}): ${last}` });
    });
  });
}

/**
 * Whether hardware virtualisation is usable, from a boot probe cached in
 * `<dataDir>/kvm-probe.json` (keyed by host kernel and guest kernel, since
 * either changing can change the answer).
 */
export async function probeKvm(opts: {
  dataDir: string;
  kernelPath: string | null;
  qemuBinary?: string;
  qemuInstalled: boolean;
}): Promise<KvmProbe> {
  try {
    await access("/dev/kvm", constants.R_OK | constants.W_OK);
  } catch {
    return { usable: false, reason: "/dev/kvm is missing or not accessible" };
  }
  if (!opts.qemuInstalled || !opts.kernelPath) {
    // Without QEMU or a kernel there is nothing to boot; PVM is the one known impostor.
    if (await exists("/sys/module/kvm_pvm")) {
      return {
        usable: false,
        reason: "/dev/kvm is PVM (kvm_pvm), which stock guest kernels cannot use",
      };
    }
    return {
      usable: true,
      reason: "/dev/kvm is present (not boot-probed: no QEMU or guest kernel)",
    };
  }
  const kernelStat = await stat(opts.kernelPath);
  const key = `${release()}|${opts.kernelPath}|${kernelStat.size}|${kernelStat.mtimeMs}`;
  const cachePath = join(opts.dataDir, "kvm-probe.json");
  try {
    const cached = JSON.parse(await readFile(cachePath, "utf8")) as KvmProbe & { key: string };
    if (cached.key === key) {
      return { usable: cached.usable, reason: `${cached.reason} (cached)`, ms: cached.ms };
    }
  } catch {
    // No cache yet.
  }
  const probe = await bootProbe(opts.kernelPath, opts.qemuBinary);
  try {
    await mkdir(opts.dataDir, { recursive: true });
    await writeFile(cachePath, JSON.stringify({ ...probe, key }) + "\n");
  } catch (err) {
    probe.reason += ` (not cached: ${messageOf(err)})`;
  }
  return probe;
}
