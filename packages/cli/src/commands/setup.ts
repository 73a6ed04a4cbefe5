import { spawn } from "node:child_process";
import { parseArgs } from "node:util";
import { CommandError } from "@wrenn/shared/command.ts";
import { SETUP_TOOLS, requireTools } from "@wrenn/host-agent/image/prerequisites.ts";
import { dataDir } from "@wrenn/host-agent/image/store.ts";
import { prepareDataDir } from "@wrenn/host-agent/storage/data-fs.ts";
import { createLogger } from "@wrenn/shared/log.ts";
import { messageOf } from "@wrenn/shared/errors.ts";

/** The host's Debian packages, each with why Wrenn needs it. */
export const HOST_PACKAGES: readonly { name: string; why: string }[] = [
  { name: "qemu-system-x86", why: "the QEMU VMM" },
  { name: "qemu-utils", why: "qemu-img: qcow2 overlays" },
  { name: "debootstrap", why: "builds the guest rootfs" },
  {
    name: "debian-archive-keyring",
    why: "debootstrap checks Debian's signatures (Ubuntu lacks it)",
  },
  { name: "e2fsprogs", why: "mkfs.ext4, e2fsck, resize2fs, debugfs" },
  { name: "busybox-static", why: "the guest initramfs" },
  { name: "cpio", why: "packs the initramfs" },
  { name: "lz4", why: "unpacks the kernel into vmlinux" },
  { name: "xz-utils", why: "unpacks xz kernels" },
  { name: "zstd", why: "unpacks zstd kernels" },
  { name: "nftables", why: "sandbox NAT and egress rules" },
  { name: "iproute2", why: "network namespaces, veth, TAP" },
  { name: "util-linux", why: "losetup, nsenter, flock" },
  { name: "btrfs-progs", why: "reflink copies for snapshots" },
  { name: "xfsprogs", why: "reflink copies for snapshots" },
  { name: "ca-certificates", why: "HTTPS to the npm registry" },
  { name: "gcc", why: "builds the userfaultfd page server" },
  { name: "g++", why: "node-gyp: native addons during npm ci" },
  { name: "make", why: "native builds" },
  { name: "libc6-dev", why: "native builds" },
  { name: "python3", why: "node-gyp" },
];

/** Packages of `names` that dpkg does not list as installed. */
function notInstalled(names: string[]): Promise<string[]> {
  // Not runCommand: dpkg-query exits 1 when it knows some names not at all,
  // and its output still lists the others.
  return new Promise((resolve, reject) => {
    const child = spawn("dpkg-query", ["-W", "-f=${Package} ${Status}\\n", ...names], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    let out = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    child.on("error", reject);
    child.on("close", () => {
      const installed = new Set(
        out
          .split("\n")
          .filter((l) => l.endsWith(" install ok installed"))
          .map((l) => l.split(" ")[0]),
      );
      resolve(names.filter((n) => !installed.has(n)));
    });
  });
}

function aptGet(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("apt-get", args, {
      stdio: ["ignore", "inherit", "inherit"],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve() : reject(new CommandError(`apt-get ${args.join(" ")}`, code, "")),
    );
  });
}

/**
 * `wrenn setup`: installs the host's system packages with apt. Idempotent:
 * says what is already there and installs only what is missing.
 */
export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { "dry-run": { type: "boolean", default: false } },
  });
  requireTools(SETUP_TOOLS, {
    needsRoot: !values["dry-run"],
    hint: " (wrenn setup needs Debian or Ubuntu, as root)",
  });
  await installPackages(values["dry-run"]);
  if (values["dry-run"]) return;
  const data = dataDir();
  const log = createLogger("setup");
  // The pool only makes copies cheap: a host that cannot loop-mount one
  // (a container without loop devices) runs on the plain filesystem.
  const fs = await prepareDataDir(data, { log }).catch((err: unknown) => {
    log.warn({ err: messageOf(err) }, "no xfs pool for the data dir");
    return "plain" as const;
  });
  process.stdout.write(`wrenn setup: data dir ${data}: ${DATA_FS[fs]}\n`);
}

const DATA_FS = {
  reflink: "its filesystem makes reflink copies",
  "pool-created": "created a sparse xfs pool for it (reflink copies)",
  "pool-mounted": "its xfs pool is mounted",
  plain: "no reflinks: RAM files and disks are copied for real (see the warning above)",
} as const;

async function installPackages(dryRun: boolean | undefined): Promise<void> {
  const names = HOST_PACKAGES.map((p) => p.name);
  const missing = await notInstalled(names);
  const present = names.filter((n) => !missing.includes(n));
  if (present.length > 0) process.stdout.write(`already installed: ${present.join(" ")}\n`);
  if (missing.length === 0) {
    process.stdout.write("wrenn setup: nothing to install\n");
    return;
  }
  process.stdout.write("to install:\n");
  for (const p of HOST_PACKAGES.filter((p) => missing.includes(p.name))) {
    process.stdout.write(`  ${p.name.padEnd(16)} ${p.why}\n`);
  }
  if (dryRun) return;
  await aptGet(["update", "-q"]);
  await aptGet([
    "-o",
    "DPkg::Lock::Timeout=600",
    "install",
    "-y",
    "-q",
    "--no-install-recommends",
    ...missing,
  ]);
  const still = await notInstalled(missing);
  if (still.length > 0) {
    throw new CommandError("apt-get install", null, `still missing: ${still.join(" ")}`);
  }
  process.stdout.write(`wrenn setup: installed ${missing.join(" ")}\n`);
}
