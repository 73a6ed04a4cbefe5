/**
 * The guest's initramfs: static busybox, the init, and the kernel modules of
 * images/initramfs/modules.txt that this kernel does not build in, as an
 * uncompressed newc cpio (nothing to decompress at boot).
 */
import { spawn } from "node:child_process";
import { chmod, copyFile, mkdir, readdir, readFile, symlink, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { runCommand } from "@wrenn/shared/command.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import { which } from "./prerequisites.ts";
import { isDynamicElf } from "./vmlinux.ts";

/** Recipe files shared with images/ (the initramfs init and its module list). */
export const IMAGES_DIR = resolve(import.meta.dirname, "../../../../images");
export const INITRAMFS_DIR = join(IMAGES_DIR, "initramfs");

/** The busybox applets the initramfs init calls, linked so no PATH lookup is needed. */
export const APPLETS = [
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

/** A line of images/initramfs/modules.txt: a module name and its condition. */
export interface ModuleLine {
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
