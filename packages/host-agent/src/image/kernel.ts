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
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { join, resolve } from "node:path";
import { runCommand } from "@wrenn/shared/command.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import { aptDepends, chooseKernelPackages, readOsRelease } from "./kernel-source.ts";
import { type KernelFiles, kernelsDir } from "./store.ts";
import { pollBytes, type Progress, runStreaming } from "./progress.ts";
import { extractVmlinux, hasPvhEntry } from "./vmlinux.ts";
import { which } from "./prerequisites.ts";
import { APPLETS, buildInitramfs, INITRAMFS_DIR } from "./initramfs.ts";

export { IMAGES_DIR } from "./initramfs.ts";

interface KernelMeta {
  version: string;
  package: string;
  inputsHash: string;
  builtAt: string;
  custom: boolean;
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

/** What apt says the packages weigh (`Size:`), 0 when it cannot say. */
async function downloadSize(pkgs: string[]): Promise<number> {
  try {
    const { stdout } = await runCommand("apt-cache", ["show", "--no-all-versions", ...pkgs]);
    return [...stdout.matchAll(/^Size: (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
  } catch {
    return 0;
  }
}

/** Bytes of the files directly in `dir` (apt-get download writes its .debs there). */
async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isFile()) n += (await stat(join(dir, e.name)).catch(() => ({ size: 0 }))).size;
  }
  return n;
}

/** The kernel's module tree in an unpacked package: /lib/modules, or /usr/lib/modules once merged. */
async function moduleRootIn(tree: string, release: string): Promise<string> {
  for (const prefix of ["lib/modules", "usr/lib/modules"]) {
    const dir = join(tree, prefix, release);
    if ((await readdir(dir).catch(() => null)) !== null) return dir;
  }
  throw new WrennError("internal", `the kernel packages hold no lib/modules/${release}`);
}

/**
 * Installs the distribution's VM kernel into `<data>/kernels/<version>/`
 * (vmlinuz, initrd.img, vmlinux) and points `current` at it: Debian's cloud
 * kernel, Ubuntu's kvm or virtual one (kernel-source.ts chooses). The
 * packages are fetched with `apt-get download` and unpacked with
 * `dpkg-deb -x`: the host is untouched. Cached: does nothing when that
 * version was already built from the same recipe.
 */
export async function ensureKernel(
  data: string,
  progress: Progress,
  force = false,
): Promise<KernelFiles> {
  const root = kernelsDir(data);
  await mkdir(root, { recursive: true });
  const pkgs = await chooseKernelPackages(await readOsRelease(), aptDepends);
  const { version } = pkgs;
  const dir = join(root, version);
  const inputsHash = await recipeHash([
    pkgs.image,
    (await fileHash(which("busybox") ?? "")) ?? "",
    APPLETS.join(","),
    ...pkgs.modules,
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
    const all = [pkgs.image, ...pkgs.modules];
    progress.step(`kernel ${version}: downloading ${all.join(" + ")}`);
    progress.detail(`chosen: ${pkgs.why}`);
    const total = await downloadSize(all);
    const stopDownload = pollBytes(
      () => dirBytes(work),
      (done) =>
        progress.measure({
          label: "downloading",
          done,
          ...(total > 0 ? { total } : {}),
          unit: "bytes",
        }),
    );
    await runStreaming("apt-get", ["download", ...all], (l) => progress.detail(l), {
      cwd: work,
    }).finally(stopDownload);
    const debs = (await readdir(work)).filter((f) => f.endsWith(".deb"));
    if (debs.length < all.length)
      throw new WrennError(
        "internal",
        `apt-get download ${all.join(" ")} produced ${debs.length} .deb`,
      );
    progress.step(`kernel ${version}: unpacking`);
    const tree = join(work, "tree");
    for (const deb of debs) await runCommand("dpkg-deb", ["-x", join(work, deb), tree]);
    const out = join(work, "out");
    await mkdir(out);
    const bootFiles = await readdir(join(tree, "boot"));
    const vmlinuz = bootFiles.find((f) => f.startsWith("vmlinuz-"));
    if (vmlinuz === undefined)
      throw new WrennError("internal", `${pkgs.image} has no /boot/vmlinuz-*`);
    await copyFile(join(tree, "boot", vmlinuz), join(out, "vmlinuz"));
    progress.step(`kernel ${version}: extracting vmlinux`);
    await extractVmlinux(join(out, "vmlinuz"), join(out, "vmlinux"));
    progress.step(`kernel ${version}: building the initramfs`);
    const modules = await moduleRootIn(tree, vmlinuz.replace(/^vmlinuz-/, ""));
    await buildInitramfs(modules, join(out, "initrd.img"), work);
    const meta: KernelMeta = {
      version,
      package: all.join(" "),
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
