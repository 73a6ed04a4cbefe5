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
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { runCommand } from "@wrenn/shared/command.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import { aptDepends, chooseKernelPackages, readOsRelease } from "./kernel-source.ts";
import { type KernelFiles, kernelsDir } from "./store.ts";
import { pollBytes, type Progress, runStreaming } from "./progress.ts";
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

/** A line of images/initramfs/modules.txt: a module name and its condition. */
interface ModuleLine {
  name: string;
  line: string;
  pciOnly: boolean;
}

async function moduleLines(): Promise<ModuleLine[]> {
  const text = await readFile(join(INITRAMFS_DIR, "modules.txt"), "utf8");
  return text
    .split("\n")
    .map((line) => ({ line, words: line.trim().split(/\s+/) }))
    .filter(({ words }) => words[0] !== undefined && words[0] !== "" && !words[0].startsWith("#"))
    .map(({ line, words }) => ({ name: words[0] ?? "", line, pciOnly: words[1] === "?pci" }));
}

/** Module names compare with '-' and '_' alike, as modprobe does. */
function moduleKey(file: string): string | null {
  const m = /^(.+)\.ko(?:\.(?:zst|xz|gz))?$/.exec(file.split("/").pop() ?? "");
  return m?.[1] ? m[1].replace(/-/g, "_") : null;
}

/** What a kernel's module tree offers: loadable files by name, and the built-in names. */
export interface ModuleTree {
  files: Map<string, string>;
  builtin: Set<string>;
}

export async function readModuleTree(moduleRoot: string): Promise<ModuleTree> {
  const files = new Map<string, string>();
  for (const rel of await readdir(moduleRoot, { recursive: true })) {
    const key = moduleKey(rel);
    if (key !== null && !files.has(key)) files.set(key, join(moduleRoot, rel));
  }
  const builtin = new Set<string>();
  const list = await readFile(join(moduleRoot, "modules.builtin"), "utf8").catch(() => "");
  for (const line of list.split("\n")) {
    const key = moduleKey(line.trim());
    if (key !== null) builtin.add(key);
  }
  return { files, builtin };
}

/** Copies a module into the initramfs uncompressed: busybox's insmod may lack the codec. */
async function copyModule(from: string, to: string): Promise<void> {
  const codec = /\.ko\.(zst|xz|gz)$/.exec(from)?.[1];
  if (codec === undefined) return copyFile(from, to);
  const tool = { zst: "zstd", xz: "xz", gz: "gzip" }[codec as "zst" | "xz" | "gz"];
  const data = await runCommandBinary(tool, ["-dc", from], dirname(from), "");
  await writeFile(to, data);
}

/**
 * Which lines of modules.txt the initramfs loads for this kernel: a module
 * the kernel has built in (Ubuntu's kvm and generic flavours build virtio
 * in) is left out, as is a PCI-only one the kernel does not have (older
 * kernels have no virtio_pci_legacy_dev); a needed one missing is an error.
 */
export function planModules(
  lines: ModuleLine[],
  tree: ModuleTree,
): { load: Array<ModuleLine & { file: string }>; builtin: string[] } {
  const load: Array<ModuleLine & { file: string }> = [];
  const builtin: string[] = [];
  for (const l of lines) {
    const key = l.name.replace(/-/g, "_");
    const file = tree.files.get(key);
    if (file !== undefined) load.push({ ...l, file });
    else if (tree.builtin.has(key)) builtin.push(l.name);
    else if (!l.pciOnly) {
      throw new WrennError(
        "failed_precondition",
        `this kernel has no ${l.name}, neither as a module nor built in: the guest cannot ` +
          "reach its disk or network with it. Use another kernel (wrenn image build --kernel PATH)",
      );
    }
  }
  return { load, builtin };
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
  const lines = await moduleLines();
  const plan = planModules(lines, await readModuleTree(moduleRoot));
  if (plan.load.length === lines.length) {
    await copyFile(join(INITRAMFS_DIR, "modules.txt"), join(root, "modules.txt"));
  } else {
    const kept = plan.load.map((l) => l.line.trim()).join("\n");
    await writeFile(
      join(root, "modules.txt"),
      `# built into this kernel: ${plan.builtin.join(" ") || "none"}\n${kept}\n`,
    );
  }
  for (const l of plan.load) {
    await copyModule(l.file, join(root, "lib/modules", `${l.name}.ko`));
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
