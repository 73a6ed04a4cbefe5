import type { Stats } from "node:fs";
import { readlink, readFile, realpath, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { WrennError } from "@wrenn/shared/errors.ts";
import { exists } from "../util/fs.ts";
import { hostTscKhz } from "../util/tsc.ts";
import { hasPvhEntry } from "./vmlinux.ts";

/** A guest kernel and the initramfs that loads its virtio modules. */
export interface KernelFiles {
  version: string;
  /** bzImage, for QEMU. */
  vmlinuz: string;
  /** Empty when the user's own kernel is used without an initrd. */
  initrd: string;
  /** Uncompressed ELF, for Firecracker (and QEMU's faster PVH entry). */
  vmlinux: string;
  /**
   * What QEMU boots: `vmlinux` when it has a PVH entry point (loaded as is,
   * no decompressor in the guest: ≈0.7 s of a TCG boot), else `vmlinuz`.
   */
  qemuKernel: string;
}

export interface TemplateImage {
  name: string;
  /** Sparse ext4 image; never written to, sandboxes get copy-on-write overlays. */
  rootfs: string;
  /** Apparent size of the image file. */
  sizeBytes: number;
}

/** What `wrenn image build` writes next to each rootfs. */
export interface TemplateMeta {
  name: string;
  builtAt: string;
  /** Hash over every input (package list, init, envd bundle, Node runtime). */
  inputsHash: string;
  debianSuite: string;
  nodeVersion: string;
  envdSha256: string;
  sizeBytes: number;
  /** Bytes actually allocated on disk (the image is sparse). */
  allocatedBytes: number;
}

/** Path of the init the guest kernel must run (inside the rootfs). */
export const GUEST_INIT = "/sbin/wrenn-init";
/**
 * V8 flags envd runs with (wrenn-init has the same: image.test holds them
 * together). An idle envd keeps its compiled code where it is: no
 * memory-reducing GCs when it goes quiet and no flushing of code unused for
 * a while. Under TCG new or moved code is translated again, so a sandbox or
 * pool entry that sat idle answered its next request tens of milliseconds
 * slower. `gc()` for envd's SIGUSR2, which a boot snapshot's builder sends
 * (boot-snapshot-builder.ts).
 */
export const GUEST_NODE_FLAGS = ["--no-memory-reducer", "--no-flush-bytecode", "--expose-gc"];
/**
 * V8 flags envd also runs with in a TCG guest (the QEMU driver passes each as
 * a `wrenn.v8=` kernel argument, wrenn-init puts them before
 * GUEST_NODE_FLAGS). Only V8's interpreter: every function V8 optimises is
 * new machine code that TCG translates again (≈ 30 bytes of host code per
 * guest byte), while the interpreter's handlers are translated once for
 * all of them. Measured in
 * one run on a 2-core TCG host, against V8's default tiers: host memory
 * beyond guest RAM (anonymous / PSS) of a sandbox restored and run once
 * 54/61 → 36/43 MiB, after a dozen commands 70/77 → 46/53, a warm pool
 * entry 90/97 → 59–62/65–68; a restored sandbox's first command 327 →
 * 179 ms and first JSON listing 183 → 109 ms. Long streams (100 MiB up
 * and down, 20 MB of output), interleaved past a first round: the same
 * within noise, as V8's optimising compilers under TCG cost about what
 * their code saves. A KVM guest runs machine code natively and keeps every
 * tier. And every function compiled when its script loads (`--no-lazy`,
 * +1.7 MiB of envd's heap): a function the boot snapshot's builder never
 * ran was compiled in each clone on first use, and V8's compiler, run for
 * the first time in a QEMU process, is code TCG translates afresh. Measured
 * in clones restored on the create's path (3 each): a first read of a
 * missing file 61 → 26 ms of VMM CPU, a listing of a missing directory
 * 75 → 40, a kill of no process 40 → 21; a claimed sandbox's VMM 1.5 MiB
 * smaller (PSS beyond guest RAM), a restored one 1.3.
 */
export const GUEST_TCG_NODE_FLAGS = ["--max-opt=0", "--no-lazy"];
export const DEFAULT_TEMPLATE = "minimal";
export const TEMPLATE_NAME = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/;

export function dataDir(): string {
  return resolve(process.env.WRENN_DATA_DIR || "/var/lib/wrenn");
}

export function kernelsDir(data: string): string {
  return join(data, "kernels");
}

export function templateDir(data: string, name: string): string {
  return join(data, "images", name);
}

/** Boot snapshots of the images, beside them (a host agent's default). */
export function bootSnapshotsDir(data: string): string {
  return join(data, "boot-snapshots");
}

/**
 * The kernel to boot: `WRENN_KERNEL` (+ `WRENN_INITRD`) when the user brings
 * their own, else the one `wrenn image build` installed as `kernels/current`.
 */
export async function findKernel(data: string): Promise<KernelFiles> {
  const own = process.env.WRENN_KERNEL;
  if (own) {
    const initrd = process.env.WRENN_INITRD ?? "";
    for (const [name, path] of [
      ["WRENN_KERNEL", own],
      ["WRENN_INITRD", initrd],
    ] as const) {
      if (path && !(await exists(path))) {
        throw new WrennError("failed_precondition", `${name}=${path} does not exist`);
      }
    }
    return {
      version: "custom",
      vmlinuz: resolve(own),
      initrd: initrd && resolve(initrd),
      vmlinux: resolve(own),
      qemuKernel: resolve(own),
    };
  }
  const root = kernelsDir(data);
  let version: string;
  try {
    version = (await readlink(join(root, "current"))).replace(/\/+$/, "");
  } catch {
    throw new WrennError(
      "failed_precondition",
      `no guest kernel in ${root}: run 'wrenn image build' (or set WRENN_KERNEL)`,
    );
  }
  const dir = join(root, version);
  const files: KernelFiles = {
    version,
    vmlinuz: join(dir, "vmlinuz"),
    initrd: join(dir, "initrd.img"),
    vmlinux: join(dir, "vmlinux"),
    qemuKernel: join(dir, "vmlinuz"),
  };
  const missing = (path: string) =>
    new WrennError(
      "failed_precondition",
      `guest kernel ${version} is incomplete (${path} missing): run 'wrenn image build'`,
    );
  // At once, not in turn: every create from a base template looks its
  // kernel up (a single create's wait is its number of turns).
  const [initrd, vmlinuz, vmlinux] = await Promise.all([
    exists(files.initrd),
    exists(files.vmlinuz),
    stat(files.vmlinux).catch(() => null),
  ]);
  // A user's own kernel may come without an initrd (virtio and ext4 built in).
  if (!initrd) files.initrd = "";
  if (!vmlinuz) throw missing(files.vmlinuz);
  if (vmlinux === null) throw missing(files.vmlinux);
  if (await pvhOf(files.vmlinux, vmlinux)) files.qemuKernel = files.vmlinux;
  return files;
}

/** hasPvhEntry's answers, by the kernel file's identity: every create from a base template asks. */
const pvhByFile = new Map<string, boolean>();

async function pvhOf(path: string, st: Stats): Promise<boolean> {
  const key = `${path}\0${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
  let pvh = pvhByFile.get(key);
  if (pvh === undefined) {
    pvh = await hasPvhEntry(path);
    pvhByFile.set(key, pvh);
  }
  return pvh;
}

export async function findTemplate(data: string, name: string): Promise<TemplateImage> {
  if (!TEMPLATE_NAME.test(name)) {
    throw new WrennError("invalid_argument", `template name '${name}' is not valid`);
  }
  const rootfs = join(templateDir(data, name), "rootfs.ext4");
  let size: number;
  let path: string;
  try {
    // rootfs.ext4 links to this build's file; overlays must name the file itself,
    // which stays when the template is rebuilt.
    path = await realpath(rootfs);
    size = (await stat(path)).size;
  } catch {
    const hint = name === DEFAULT_TEMPLATE ? ": run 'wrenn image build'" : "";
    throw new WrennError("not_found", `template '${name}' has no image at ${rootfs}${hint}`);
  }
  return { name, rootfs: path, sizeBytes: size };
}

export async function readTemplateMeta(data: string, name: string): Promise<TemplateMeta | null> {
  try {
    return JSON.parse(
      await readFile(join(templateDir(data, name), "meta.json"), "utf8"),
    ) as TemplateMeta;
  } catch {
    return null;
  }
}

/**
 * The kernel command line the guest image needs. The network driver fixes the
 * addresses (every guest 169.254.0.21 behind 169.254.0.22/30), so a snapshot
 * restores into any slot. virtio_net is a module in Debian's cloud kernel, so
 * the kernel cannot apply `ip=` itself: the initramfs (or init) does.
 */
export function guestBootArgs(opts: {
  guestIp: string;
  gatewayIp: string;
  netmask: string;
  hostname: string;
  /** Name servers for /etc/resolv.conf; default 8.8.8.8 and 1.1.1.1. */
  dns?: string[];
}): string {
  const [dns0 = "8.8.8.8", dns1 = "1.1.1.1"] = opts.dns ?? [];
  return [
    "console=ttyS0",
    "reboot=k",
    "panic=1",
    "quiet",
    "loglevel=3",
    "root=/dev/vda",
    "rw",
    "rootfstype=ext4",
    `init=${GUEST_INIT}`,
    `ip=${opts.guestIp}::${opts.gatewayIp}:${opts.netmask}:${opts.hostname}:eth0:off:${dns0}:${dns1}`,
    `tsc_early_khz=${hostTscKhz()}`,
    "i8042.noaux",
    "i8042.nomux",
    "i8042.nopnp",
    "i8042.dumbkbd",
    "random.trust_cpu=on",
    // The crypto API's boot self-tests of every algorithm: ≈0.5 s of a TCG boot.
    "cryptomgr.notests",
    // Only ttyS0 exists; probing three more UARTs and the IO-APIC timer
    // (a calibration wait) is boot time for nothing in a VM.
    "8250.nr_uarts=1",
    "no_timer_check",
  ].join(" ");
}
