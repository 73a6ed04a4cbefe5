/**
 * A base template's root filesystem: debootstrap, the guest's own files
 * (envd bundle, init, users), then a sparse ext4 image filled from the tree.
 * Just over 400 lines: the steps share the build's work dir, its progress
 * and its inputs hash; split, each would need all three passed around.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmod,
  copyFile,
  cp,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { runCommand } from "@wrenn/shared/command.ts";
import { messageOf, WrennError } from "@wrenn/shared/errors.ts";
import { IMAGES_DIR } from "./kernel.ts";
import { DebootstrapStatus } from "./debootstrap-status.ts";
import { pollBytes, type Progress, runStreaming } from "./progress.ts";
import {
  GUEST_INIT,
  GUEST_NODE_FLAGS,
  GUEST_TCG_NODE_FLAGS,
  type TemplateMeta,
  templateDir,
} from "./store.ts";

const MiB = 1024 * 1024;
const RECIPE_DIR = join(IMAGES_DIR, "minimal");
/** Bump when the base stage's steps change in a way its inputs do not show. */
const BASE_RECIPE_VERSION = "1";
/** Likewise for stage 2 (Node, envd, the init). */
const IMAGE_RECIPE_VERSION = "6";
/** Where envd and its native addons live in the guest. */
export const GUEST_ENVD_DIR = "/opt/wrenn/envd";
export const GUEST_ENVD_BUNDLE = `${GUEST_ENVD_DIR}/envd.cjs`;
export const GUEST_NODE = "/usr/local/bin/node";
const WARM_UP_TIMEOUT_MS = 60_000;

export interface RootfsInputs {
  template: string;
  /** Directory made by packages/envd/build.ts: envd.mjs + node_modules/. */
  envdDir: string;
  envdSha256: string;
  /** The pinned Node runtime, copied into the guest as is. */
  nodeBinary: string;
  nodeVersion: string;
}

function debianSuite(): string {
  return process.env.WRENN_DEBIAN_SUITE || "bookworm";
}

function debianMirror(): string {
  return process.env.WRENN_DEBIAN_MIRROR || "http://deb.debian.org/debian";
}

async function packageList(): Promise<string[]> {
  const text = await readFile(join(RECIPE_DIR, "packages.txt"), "utf8");
  return text
    .split("\n")
    .map((l) => l.replace(/#.*/, "").trim())
    .filter((l) => l !== "");
}

function sha(...parts: (string | Buffer)[]): string {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest("hex").slice(0, 16);
}

/** Quiet per-package chatter of debootstrap, kept for a terminal's status line. */
export function isDebootstrapChatter(line: string): boolean {
  return /^I: (Retrieving|Validating|Extracting|Unpacking|Configuring|Checking) /.test(line);
}

/**
 * Stage 1 (slow, ≈1–3 min, cached by its inputs): debootstrap + the packages
 * of packages.txt + user `user` with passwordless sudo. Kept as a directory
 * under `<data>/cache/` so a new envd only re-runs stage 2.
 */
async function ensureBase(data: string, progress: Progress): Promise<string> {
  const packages = await packageList();
  const sudoers = await readFile(join(RECIPE_DIR, "sudoers"));
  const key = sha(BASE_RECIPE_VERSION, debianSuite(), debianMirror(), packages.join(","), sudoers);
  const cache = join(data, "cache");
  const base = join(cache, `base-${debianSuite()}-${key}`);
  try {
    await stat(join(base, "etc/wrenn-base"));
    progress.step(`rootfs base (${debianSuite()}): cached`);
    return base;
  } catch {
    // Not built yet.
  }
  await mkdir(cache, { recursive: true });
  const work = await mkdtemp(join(cache, ".base-"));
  try {
    progress.step(`rootfs base: debootstrap ${debianSuite()} from ${debianMirror()}`);
    // --debian-installer: the status protocol on fd 3 carries byte and package
    // counts with totals; stdout is then the full log, kept only for a failure.
    const status = new DebootstrapStatus(progress);
    await runStreaming(
      "debootstrap",
      [
        "--debian-installer",
        "--variant=minbase",
        `--include=${packages.join(",")}`,
        "--components=main",
        debianSuite(),
        work,
        debianMirror(),
      ],
      () => {},
      {
        env: { ...process.env, DEBIAN_FRONTEND: "noninteractive", LC_ALL: "C" },
        onStatus: (l) => status.line(l),
        failure: () => status.errors.join("\n"),
      },
    );
    progress.step("rootfs base: user 'user' with passwordless sudo");
    await runCommand("chroot", [
      work,
      "useradd",
      "--create-home",
      "--shell",
      "/bin/bash",
      "--groups",
      "sudo",
      "--uid",
      "1000",
      "user",
    ]);
    await writeFile(join(work, "etc/sudoers.d/wrenn-user"), sudoers, { mode: 0o440 });
    await chmod(join(work, "etc/sudoers.d/wrenn-user"), 0o440);
    // What a sandbox's user needs for `apt-get update && apt-get install …`.
    const suite = debianSuite();
    await writeFile(
      join(work, "etc/apt/sources.list"),
      [
        `deb http://deb.debian.org/debian ${suite} main`,
        `deb http://deb.debian.org/debian ${suite}-updates main`,
        `deb http://deb.debian.org/debian-security ${suite}-security main`,
        "",
      ].join("\n"),
    );
    await writeFile(join(work, "etc/fstab"), "/dev/vda / ext4 rw,noinit_itable 0 1\n");
    await writeFile(join(work, "etc/machine-id"), "");
    // Downloaded .debs and package lists are a third of the tree; apt-get update restores lists.
    for (const dir of ["var/cache/apt/archives", "var/lib/apt/lists"]) {
      for (const f of await readdir(join(work, dir))) {
        if (f.endsWith(".deb") || (dir.endsWith("lists") && f !== "partial" && f !== "lock")) {
          await rm(join(work, dir, f), { force: true });
        }
      }
    }
    await rm(join(work, "var/cache/apt/pkgcache.bin"), { force: true });
    await rm(join(work, "var/cache/apt/srcpkgcache.bin"), { force: true });
    await writeFile(join(work, "etc/wrenn-base"), `${key}\n`);
    await rm(base, { recursive: true, force: true });
    await rename(work, base);
  } catch (err) {
    await rm(work, { recursive: true, force: true });
    throw err;
  }
  // Older bases (another recipe) are dead weight.
  for (const f of await readdir(cache)) {
    if (f.startsWith("base-") && join(cache, f) !== base) {
      await rm(join(cache, f), { recursive: true, force: true });
    }
  }
  return base;
}

async function treeBytes(dir: string): Promise<number> {
  const { stdout } = await runCommand("du", ["-s", "--block-size=1", dir]);
  return Number(stdout.split(/\s/)[0]);
}

/** Hash over everything the finished image depends on. */
export async function rootfsInputsHash(inputs: RootfsInputs): Promise<string> {
  const packages = await packageList();
  return sha(
    BASE_RECIPE_VERSION,
    IMAGE_RECIPE_VERSION,
    debianSuite(),
    debianMirror(),
    packages.join(","),
    await readFile(join(RECIPE_DIR, "sudoers")),
    await readFile(join(RECIPE_DIR, "wrenn-init")),
    await readFile(join(RECIPE_DIR, "profile")),
    inputs.envdSha256,
    inputs.nodeVersion,
  );
}

/**
 * Starts envd in the tree as the guest does (the same Node binary, the same
 * path), once with each set of V8 flags a guest runs it with (a KVM
 * guest's, a TCG guest's), answers /health and /init, and stops it: proves
 * the bundle runs in the guest's userland before any VM does. No V8 code
 * cache is kept: envd started from one (made here, before a boot) and
 * restored from a boot snapshot answered a claimed sandbox's first command
 * in 68 ms (83 ms on the interpreter alone) against 46 (34) without.
 */
export async function checkEnvdStarts(tree: string): Promise<void> {
  for (const flags of [GUEST_NODE_FLAGS, [...GUEST_TCG_NODE_FLAGS, ...GUEST_NODE_FLAGS]]) {
    await runEnvdOnce(tree, flags);
  }
}

async function runEnvdOnce(tree: string, flags: string[]): Promise<void> {
  const child = spawn(
    "chroot",
    [tree, GUEST_NODE, ...flags, GUEST_ENVD_BUNDLE, "--port", "0", "--host", "127.0.0.1"],
    {
      env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" },
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  const exited = new Promise<number | null>((resolve) => {
    child.once("error", () => resolve(null));
    child.once("exit", (code) => resolve(code));
  });
  let output = "";
  const failed = (why: string) =>
    new WrennError(
      "internal",
      `envd did not run in the image (${why}): ${output.trim().slice(-2000)}`,
    );
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(failed("no 'envd listening' in time")),
        WARM_UP_TIMEOUT_MS,
      );
      child.stderr.setEncoding("utf8");
      child.stderr.on("data", (chunk: string) => {
        output += chunk;
        const m = /"url":"(http:\/\/[^"]+)"[^\n]*"envd listening"/.exec(output);
        if (m?.[1]) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(failed(`exit ${code}`));
      });
    });
    // The first requests of every sandbox.
    const health = await fetch(`${url}/health`);
    const init = await fetch(`${url}/init`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    if (health.status !== 204 || init.status !== 204) {
      throw failed(`/health ${health.status}, /init ${init.status}`);
    }
    child.kill("SIGTERM");
    const code = await Promise.race([exited, sleep(WARM_UP_TIMEOUT_MS, "timeout", { ref: false })]);
    if (code !== 0) throw failed(`exit ${code} on SIGTERM`);
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await exited;
    }
  }
}

/**
 * Builds `<data>/images/<template>/rootfs.ext4` (+ meta.json): the base tree
 * plus Node, envd and the init, packed with `mkfs.ext4 -d` (no mounting) into
 * a sparse file with some free room; sandboxes grow it at boot. Each build is
 * a new `rootfs-<hash>.ext4` and `rootfs.ext4` a symlink to it, so overlays of
 * running sandboxes keep their backing file when the template is rebuilt.
 */
export async function buildRootfs(
  data: string,
  inputs: RootfsInputs,
  progress: Progress,
  force = false,
): Promise<TemplateMeta> {
  const dir = templateDir(data, inputs.template);
  const inputsHash = await rootfsInputsHash(inputs);
  const file = `rootfs-${inputsHash}.ext4`;
  if (!force) {
    try {
      const meta = JSON.parse(await readFile(join(dir, "meta.json"), "utf8")) as TemplateMeta;
      if (meta.inputsHash === inputsHash && (await readlink(join(dir, "rootfs.ext4"))) === file) {
        await stat(join(dir, file));
        progress.step(`rootfs ${inputs.template}: up to date`);
        return meta;
      }
    } catch {
      // Missing or stale: build.
    }
  }
  const base = await ensureBase(data, progress);
  await mkdir(dir, { recursive: true });
  const work = await mkdtemp(join(dir, ".build-"));
  try {
    progress.step(
      `rootfs ${inputs.template}: adding Node ${inputs.nodeVersion}, envd and the init`,
    );
    const tree = join(work, "tree");
    await runCommand("cp", ["-a", base, tree]);
    await copyFile(inputs.nodeBinary, join(tree, GUEST_NODE));
    await chmod(join(tree, GUEST_NODE), 0o755);
    await mkdir(join(tree, GUEST_ENVD_DIR), { recursive: true });
    await cp(inputs.envdDir, join(tree, GUEST_ENVD_DIR), { recursive: true });
    // A library Node links against but the tree lacks would otherwise only show at boot.
    await runCommand("chroot", [tree, GUEST_NODE, "--version"]).catch((err: unknown) => {
      throw new WrennError("internal", `Node does not run in the guest tree: ${messageOf(err)}`);
    });
    progress.step(`rootfs ${inputs.template}: starting envd in the tree`);
    await checkEnvdStarts(tree);
    await copyFile(join(RECIPE_DIR, "wrenn-init"), join(tree, GUEST_INIT));
    await chmod(join(tree, GUEST_INIT), 0o755);
    await copyFile(join(RECIPE_DIR, "profile"), join(tree, "etc/profile"));
    // The guest's name changes on every create (envd's /init): in /run (a
    // tmpfs, written by wrenn-init), a rename writes no blocks into the
    // sandbox's disk overlay.
    for (const f of ["hostname", "hosts"]) {
      await rm(join(tree, "etc", f), { force: true });
      await symlink(`/run/wrenn/${f}`, join(tree, "etc", f));
    }
    await writeFile(
      join(tree, "etc/wrenn-template"),
      `${JSON.stringify({ template: inputs.template, inputsHash, envdSha256: inputs.envdSha256 })}\n`,
    );

    const used = await treeBytes(tree);
    // Room for ext4's metadata and a first write or two before the sandbox grows the disk.
    const size = Math.ceil((used * 1.15 + 256 * MiB) / MiB) * MiB;
    progress.step(
      `rootfs ${inputs.template}: mkfs.ext4 (${Math.round(used / MiB)} MiB of files, ${size / MiB} MiB image)`,
    );
    const image = join(work, file);
    await runCommand("truncate", ["-s", String(size), image]);
    // mkfs says nothing while it copies; the image's allocated blocks show how far it is.
    const stopFill = pollBytes(
      async () => (await stat(image)).blocks * 512,
      // ext4's metadata makes the image a little larger than the files: the bar stops at full.
      (done) =>
        progress.measure({
          label: "filling",
          done: Math.min(done, used),
          total: used,
          unit: "bytes",
        }),
    );
    await runCommand("mkfs.ext4", [
      "-q",
      "-F",
      "-L",
      "wrenn-root",
      "-m",
      "1",
      // Zero the inode tables now (holes in a sparse file cost nothing), not in every sandbox.
      "-E",
      "lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0",
      "-d",
      tree,
      image,
    ]).finally(stopFill);
    await runCommand("e2fsck", ["-fy", image]).catch((err: unknown) => {
      // Exit 1 means "errors corrected", which mkfs -d can leave (directory optimisation).
      if (!(err instanceof Error && "exitCode" in err && err.exitCode === 1)) throw err;
    });
    const st = await stat(image);
    const meta: TemplateMeta = {
      name: inputs.template,
      builtAt: new Date().toISOString(),
      inputsHash,
      debianSuite: debianSuite(),
      nodeVersion: inputs.nodeVersion,
      envdSha256: inputs.envdSha256,
      sizeBytes: st.size,
      allocatedBytes: st.blocks * 512,
    };
    await rename(image, join(dir, file));
    const link = join(dir, `.rootfs-${process.pid}`);
    await rm(link, { force: true });
    await symlink(file, link);
    await rename(link, join(dir, "rootfs.ext4"));
    await writeFile(join(dir, "meta.json"), `${JSON.stringify(meta, null, 2)}\n`);
    await pruneOldImages(dir, file);
    return meta;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Keeps the two newest earlier images (a sandbox started before a rebuild may
 * still back onto one) and deletes the rest.
 */
async function pruneOldImages(dir: string, current: string): Promise<void> {
  const old: { name: string; mtime: number }[] = [];
  for (const f of await readdir(dir)) {
    if (/^rootfs-[0-9a-f]+\.ext4$/.test(f) && f !== current) {
      old.push({ name: f, mtime: (await stat(join(dir, f))).mtimeMs });
    }
  }
  old.sort((a, b) => b.mtime - a.mtime);
  for (const { name } of old.slice(2)) await rm(join(dir, name), { force: true });
}

export function assertTemplateName(name: string): void {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/.test(name)) {
    throw new WrennError("invalid_argument", `template name '${name}' is not valid`);
  }
}
