/**
 * One jailed Firecracker's chroot, `<base>/<exec name>/<jail id>/root`, and
 * what the driver stages in it before the jailer starts: Firecracker sees
 * only this tree, as the VMM user, so everything it opens through the API
 * must be in it at a chroot-relative path the user may open. Staging uses
 * hard links (device nodes for block devices, a copy only across
 * filesystems), never mounts: the real jailer bind-mounts the chroot onto
 * itself without MS_REC before pivot_root, so a mount under it would not be
 * seen inside. The whole directory goes at `remove()`.
 */
import { createHash } from "node:crypto";
import { chmod, chown, link, lstat, mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { runCommand } from "@wrenn/shared/command.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";
import type { CgroupDriver } from "../../cgroup/cgroup.ts";
import { copySparse } from "../../util/fs.ts";
import { spawnerRunner } from "../../spawner/client.ts";
import type { VmmUser } from "../confine.ts";
import { STABLE_ROOTFS } from "./args.ts";

/** Firecracker's API socket inside the chroot (its documented default). */
export const JAIL_API_SOCKET = "/run/firecracker.socket";
/** Where a jailed Firecracker writes a pause's state and memory (then moved out). */
export const JAIL_SNAPSHOT_DIR = "/snapshot";
/** A restore's inputs inside the chroot. */
export const JAIL_RESTORE = {
  state: "/restore/state",
  mem: "/restore/memfile",
  uffd: "/run/uffd.sock",
} as const;
export const JAIL_KERNEL = "/boot/vmlinux";
export const JAIL_INITRD = "/boot/initrd";

/**
 * The jailer takes ids of letters, digits and hyphens, at most 64; a VM id
 * that is not one (sandbox ids may hold `.` and `_`) gets a stable digest.
 * It names the chroot and the cgroup.
 */
export function jailId(vmId: string): string {
  if (/^[A-Za-z0-9-]{1,64}$/.test(vmId)) return vmId;
  return `v-${createHash("sha256").update(vmId).digest("hex").slice(0, 40)}`;
}

/** `<base>/<exec name>/<jail id>`: the jailer builds `root` in it. */
export function jailDir(chrootBaseDir: string, firecrackerBinary: string, vmId: string): string {
  return join(chrootBaseDir, basename(firecrackerBinary), jailId(vmId));
}

export class Jail {
  /** `<base>/<exec name>/<jail id>`, removed whole. */
  readonly dir: string;
  readonly root: string;
  readonly user: VmmUser;
  /** The host's cgroups, in which the jailer makes the VM's group (named by the jail id). */
  readonly cgroups: CgroupDriver | null;
  readonly #log: Logger;

  constructor(opts: { dir: string; user: VmmUser; cgroups: CgroupDriver | null; log: Logger }) {
    this.dir = opts.dir;
    this.root = join(opts.dir, "root");
    this.user = opts.user;
    this.cgroups = opts.cgroups;
    this.#log = opts.log;
  }

  get id(): string {
    return basename(this.dir);
  }

  /** The host path of a chroot-relative one. */
  host(inJail: string): string {
    return join(this.root, inJail);
  }

  /**
   * A fresh chroot with the directories Firecracker writes in (its socket's,
   * a pause's) owned by the VMM user; what a crashed agent left there goes.
   */
  async prepare(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
    await mkdir(this.host(dirname(STABLE_ROOTFS)), { recursive: true, mode: 0o755 });
    for (const d of ["/run", JAIL_SNAPSHOT_DIR]) {
      await mkdir(this.host(d), { recursive: true, mode: 0o700 });
      await chown(this.host(d), this.user.uid, this.user.gid);
    }
    await mkdir(this.host("/boot"), { mode: 0o755 });
    await mkdir(this.host(dirname(JAIL_RESTORE.state)), { mode: 0o755 });
  }

  /**
   * Makes `hostPath` appear at `inJail`: a device node for a block device
   * (the VMM's uid's own, mode 0600), else a hard link, else (another
   * filesystem) a copy. `own` hands the file to the VMM's uid alone (a disk
   * it writes: mode 0600; a socket it connects to); others stay as they are
   * and must be world-readable already.
   */
  async stage(hostPath: string, inJail: string, opts: { own?: boolean } = {}): Promise<string> {
    const target = this.host(inJail);
    await mkdir(dirname(target), { recursive: true });
    const st = await stat(hostPath).catch((err: NodeJS.ErrnoException) => {
      throw err.code === "ENOENT"
        ? new WrennError("failed_precondition", `${hostPath} does not exist (Firecracker opens it)`)
        : err;
    });
    if (st.isBlockDevice()) {
      // Major and minor of the kernel's dev_t encoding (new_encode_dev).
      const major = Math.floor(st.rdev / 256) & 0xfff;
      const minor = (st.rdev & 0xff) | ((Math.floor(st.rdev / 4096) & 0xfff00) >>> 0);
      await runCommand("mknod", ["-m", "0600", target, "b", String(major), String(minor)]);
      await chown(target, this.user.uid, this.user.gid);
      return inJail;
    }
    try {
      await link(hostPath, target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EXDEV" || st.isSocket()) {
        throw new WrennError(
          "failed_precondition",
          `cannot link ${hostPath} into the Firecracker jail ${this.root}: ${(err as Error).message}` +
            " (the chroot base must be on the same filesystem as the data dir)",
          { cause: err },
        );
      }
      this.#log.warn(
        { file: hostPath, jail: this.root },
        "copying into the Firecracker jail: the chroot base is on another filesystem than the file",
      );
      await copySparse(hostPath, target, spawnerRunner);
    }
    if (opts.own) {
      await chown(target, this.user.uid, this.user.gid);
      if (st.isFile()) await chmod(target, 0o600);
    }
    return inJail;
  }

  /**
   * Moves a file the jailed Firecracker wrote out to `hostPath`, given back
   * to root (the data dir stays root's).
   */
  async takeOut(inJail: string, hostPath: string): Promise<void> {
    const from = this.host(inJail);
    try {
      await rename(from, hostPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
      await copySparse(from, hostPath, spawnerRunner);
      await rm(from, { force: true });
    }
    await chown(hostPath, 0, 0);
    await chmod(hostPath, 0o644);
  }

  /**
   * Once Firecracker has exited (or never started): the chroot and all staged
   * in it (links: the originals stay, given back to root — the next VMM with
   * this uid must find nothing of this one's), and the cgroup the jailer made.
   */
  async remove(): Promise<void> {
    await this.#giveBackLinks(this.root);
    await rm(this.dir, { recursive: true, force: true });
    await this.cgroups?.remove(this.id);
  }

  /** Hard links under `dir` to files outside it that the VMM's uid was handed (`stage` with `own`). */
  async #giveBackLinks(dir: string): Promise<void> {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const path = join(dir, e.name);
      if (e.isDirectory()) {
        await this.#giveBackLinks(path);
        continue;
      }
      const st = await lstat(path).catch(() => null);
      if (st && !st.isSymbolicLink() && st.nlink > 1 && st.uid === this.user.uid) {
        await chown(path, 0, 0);
      }
    }
  }
}
