import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  symlink,
  writeFile,
} from "node:fs/promises";
import { join, resolve } from "node:path";
import { runCommand } from "@wrenn/shared/command.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import { type KernelFiles, kernelsDir } from "./store.ts";
import { type Progress, runStreaming } from "./progress.ts";
import { extractVmlinux, hasPvhEntry, isDynamicElf } from "./vmlinux.ts";
import { which } from "./prerequisites.ts";

/** Recipe files shared with images/ (the initramfs init and its module list). */
export const IMAGES_DIR = resolve(import.meta.dirname, "../../../../images");
const INITRAMFS_DIR = join(IMAGES_DIR, "initramfs");

/** The busybox applets the initramfs init calls, linked so no PATH lookup is needed. */
const APPLETS = [
  "sh",
  "mount",
  "umount",
  "mkdir",
  "ln",
  "insmod",
  "ifconfig",
  "route",
  "usleep",
  "cat",
  "switch_root",
];

interface KernelMeta {
  version: string;
  package: string;
  inputsHash: string;
  builtAt: string;
  custom: boolean;
}

/** The Debian package behind `linux-image-cloud-amd64`, e.g. linux-image-6.1.0-56-cloud-amd64. */
export async function resolveCloudKernelPackage(): Promise<string> {
  const override = process.env.WRENN_KERNEL_PACKAGE;
  if (override) return override;
  const { stdout } = await runCommand("apt-cache", ["depends", "linux-image-cloud-amd64"]);
  const m = /Depends:\s*(linux-image-\S+-cloud-amd64)/.exec(stdout);
  if (!m?.[1]) {
    throw new WrennError(
      "failed_precondition",
      "apt knows no linux-image-cloud-amd64: run 'apt-get update' (Debian's main repository is needed)",
    );
  }
  return m[1];
}

async function readMeta(dir: string): Promise<KernelMeta | null> {
  try {
    return JSON.parse(await readFile(join(dir, "meta.json"), "utf8")) as KernelMeta;
  } catch {
    return null;
  }
}

async function recipeHash(extra: string[]): Promise<string> {
  const h = createHash("sha256");
  for (const f of ["init", "modules.txt"]) h.update(await readFile(join(INITRAMFS_DIR, f)));
  for (const e of extra) h.update(e);
  return h.digest("hex").slice(0, 16);
}

async function pointCurrent(root: string, version: string): Promise<void> {
  const tmp = join(root, `.current-${process.pid}`);
  await rm(tmp, { force: true });
  await symlink(version, tmp);
  await rename(tmp, join(root, "current"));
}

async function filesOf(dir: string, version: string, withInitrd = true): Promise<KernelFiles> {
  const vmlinux = join(dir, "vmlinux");
  return {
    version,
    vmlinuz: join(dir, "vmlinuz"),
    initrd: withInitrd ? join(dir, "initrd.img") : "",
    vmlinux,
    qemuKernel: (await hasPvhEntry(vmlinux)) ? vmlinux : join(dir, "vmlinuz"),
  };
}

/** Modules listed in images/initramfs/modules.txt, without their conditions. */
async function moduleNames(): Promise<string[]> {
  const text = await readFile(join(INITRAMFS_DIR, "modules.txt"), "utf8");
  return text
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0] ?? "")
    .filter((l) => l !== "" && !l.startsWith("#"));
}

async function findModule(moduleRoot: string, name: string): Promise<string> {
  const entries = await readdir(moduleRoot, { recursive: true });
  for (const rel of entries) {
    const base = rel.split("/").pop();
    if (base === `${name}.ko` || base === `${name.replace(/_/g, "-")}.ko`) {
      return join(moduleRoot, rel);
    }
  }
  throw new WrennError("internal", `kernel module ${name}.ko is not in ${moduleRoot}`);
}

/**
 * An uncompressed newc cpio with static busybox, the modules of
 * modules.txt (flat, by name) and the init: no decompression at boot.
 */
export async function buildInitramfs(moduleRoot: string, out: string, work: string): Promise<void> {
  const busybox = which("busybox");
  if (busybox === null) {
    throw new WrennError(
      "failed_precondition",
      "busybox is missing: apt-get install busybox-static",
    );
  }
  if (await isDynamicElf(busybox)) {
    throw new WrennError(
      "failed_precondition",
      `${busybox} is dynamically linked: apt-get install busybox-static`,
    );
  }
  const root = join(work, "initramfs");
  for (const d of ["bin", "dev", "proc", "sys", "newroot", "lib/modules"]) {
    await mkdir(join(root, d), { recursive: true });
  }
  await copyFile(busybox, join(root, "bin/busybox"));
  await chmod(join(root, "bin/busybox"), 0o755);
  for (const applet of APPLETS) await symlink("busybox", join(root, "bin", applet));
  await copyFile(join(INITRAMFS_DIR, "init"), join(root, "init"));
  await chmod(join(root, "init"), 0o755);
  await copyFile(join(INITRAMFS_DIR, "modules.txt"), join(root, "modules.txt"));
  for (const name of await moduleNames()) {
    await copyFile(await findModule(moduleRoot, name), join(root, "lib/modules", `${name}.ko`));
  }
  const { stdout: list } = await runCommand("find", [".", "-mindepth", "1"], { cwd: root });
  const cpio = await runCommandBinary(
    "cpio",
    ["-o", "-H", "newc", "-R", "0:0", "--quiet"],
    root,
    list,
  );
  await writeFile(out, cpio);
}

function runCommandBinary(
  cmd: string,
  args: string[],
  cwd: string,
  input: string,
): Promise<Buffer> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => (err += b.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolvePromise(Buffer.concat(out));
      else reject(new WrennError("internal", `${cmd} failed: ${err.trim()}`));
    });
    child.stdin.end(input);
  });
}

/**
 * Installs Debian's cloud kernel into `<data>/kernels/<version>/` (vmlinuz,
 * initrd.img, vmlinux) and points `current` at it. The package is fetched with
 * `apt-get download` and unpacked with `dpkg-deb -x`: the host is untouched.
 * Cached: does nothing when that version was already built from the same recipe.
 */
export async function ensureKernel(
  data: string,
  progress: Progress,
  force = false,
): Promise<KernelFiles> {
  const root = kernelsDir(data);
  await mkdir(root, { recursive: true });
  const pkg = await resolveCloudKernelPackage();
  const version = pkg.replace(/^linux-image-/, "");
  const dir = join(root, version);
  const inputsHash = await recipeHash([
    pkg,
    (await fileHash(which("busybox") ?? "")) ?? "",
    APPLETS.join(","),
  ]);
  const existing = await readMeta(dir);
  if (!force && existing?.inputsHash === inputsHash) {
    progress.step(`kernel ${version}: up to date`);
    await pointCurrent(root, version);
    return filesOf(dir, version);
  }
  const work = await mkdtemp(join(root, ".build-"));
  try {
    // _apt downloads into the directory as an unprivileged user.
    await chmod(work, 0o777);
    progress.step(`kernel ${version}: downloading ${pkg}`);
    await runStreaming("apt-get", ["download", pkg], (l) => progress.detail(l), { cwd: work });
    const deb = (await readdir(work)).find((f) => f.endsWith(".deb"));
    if (deb === undefined)
      throw new WrennError("internal", `apt-get download ${pkg} produced no .deb`);
    progress.step(`kernel ${version}: unpacking`);
    const tree = join(work, "tree");
    await runCommand("dpkg-deb", ["-x", join(work, deb), tree]);
    const out = join(work, "out");
    await mkdir(out);
    const bootFiles = await readdir(join(tree, "boot"));
    const vmlinuz = bootFiles.find((f) => f.startsWith("vmlinuz-"));
    if (vmlinuz === undefined) throw new WrennError("internal", `${pkg} has no /boot/vmlinuz-*`);
    await copyFile(join(tree, "boot", vmlinuz), join(out, "vmlinuz"));
    progress.step(`kernel ${version}: extracting vmlinux`);
    await extractVmlinux(join(out, "vmlinuz"), join(out, "vmlinux"));
    progress.step(`kernel ${version}: building the initramfs`);
    const modules = join(tree, "lib/modules", vmlinuz.replace(/^vmlinuz-/, ""));
    await buildInitramfs(modules, join(out, "initrd.img"), work);
    const meta: KernelMeta = {
      version,
      package: pkg,
      inputsHash,
      builtAt: new Date().toISOString(),
      custom: false,
    };
    await writeFile(join(out, "meta.json"), `${JSON.stringify(meta, null, 2)}\n`);
    await rm(dir, { recursive: true, force: true });
    await rename(out, dir);
    await pointCurrent(root, version);
    return filesOf(dir, version);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function fileHash(path: string): Promise<string | null> {
  if (!path) return null;
  try {
    return createHash("sha256")
      .update(await readFile(path))
      .digest("hex");
  } catch {
    return null;
  }
}

/**
 * Installs the user's own kernel (`--kernel`, optional `--initrd`) as
 * `kernels/custom-<hash>` and makes it current. Without an initrd the kernel
 * must have virtio-mmio, virtio-blk, virtio-net and ext4 built in.
 */
export async function installCustomKernel(
  data: string,
  kernel: string,
  initrd: string | undefined,
  progress: Progress,
): Promise<KernelFiles> {
  const root = kernelsDir(data);
  await mkdir(root, { recursive: true });
  const kHash = await fileHash(kernel);
  if (kHash === null)
    throw new WrennError("invalid_argument", `--kernel ${kernel}: cannot read it`);
  const iHash = initrd ? await fileHash(initrd) : "";
  if (iHash === null)
    throw new WrennError("invalid_argument", `--initrd ${initrd}: cannot read it`);
  const version = `custom-${createHash("sha256")
    .update(kHash + iHash)
    .digest("hex")
    .slice(0, 12)}`;
  const dir = join(root, version);
  if ((await readMeta(dir)) === null) {
    progress.step(`kernel ${version}: installing ${kernel}`);
    const work = await mkdtemp(join(root, ".build-"));
    try {
      await copyFile(kernel, join(work, "vmlinuz"));
      await extractVmlinux(kernel, join(work, "vmlinux"));
      if (initrd) await copyFile(initrd, join(work, "initrd.img"));
      const meta: KernelMeta = {
        version,
        package: resolve(kernel),
        inputsHash: version,
        builtAt: new Date().toISOString(),
        custom: true,
      };
      await writeFile(join(work, "meta.json"), `${JSON.stringify(meta, null, 2)}\n`);
      await rename(work, dir);
    } catch (err) {
      await rm(work, { recursive: true, force: true });
      throw err;
    }
  } else {
    progress.step(`kernel ${version}: up to date`);
  }
  await pointCurrent(root, version);
  return filesOf(dir, version, Boolean(initrd));
}
