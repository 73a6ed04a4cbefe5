/** One running QEMU: pause, resume, snapshot and stop through its QMP socket. */
import { link, rename, rm, truncate, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Runner } from "@wrenn/shared/command.ts";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import { timed, type Logger } from "@wrenn/shared/log.ts";
import { crashPoint } from "../../util/crash-point.ts";
import { copySparse, readAhead } from "../../util/fs.ts";
import { endProcess, tail, within, type ExitStatus } from "../../util/process.ts";
import { BACKGROUND_CPU_WEIGHT, vmCpuWeight, type CgroupDriver } from "../../cgroup/cgroup.ts";
import { drainConsole, removeConsole, type ConsoleDrain } from "../console-log.ts";
import { giveBack, grantTraverse, handOver, type VmmUser } from "../confine.ts";
import type { QmpClient } from "../qmp.ts";
import type { SnapshotFiles, VmHandle } from "../vmm.ts";
import { paths, type QemuMachine } from "./args.ts";
import { shellQuote } from "./quote.ts";
import { STATE_MAGIC, waitMigration, writerStatus, type StateHeader } from "./state-file.ts";

/** How often a VM its full disk stopped is continued, to retry the write (see #waitForSpace). */
const DISK_FULL_RETRY_MS = 2000;

export interface HandleState {
  vmId: string;
  pid: number;
  runDir: string;
  exited: Promise<ExitStatus>;
  qmp: QmpClient;
  /** The file backing guest RAM (mapped shared unless a private clone). */
  ramPath: string;
  sharedRam: boolean;
  /** We created the RAM file and delete it on stop. */
  ownsRam: boolean;
  machine: QemuMachine | null;
  /** The uid:gid of its own QEMU dropped to, or null (unconfined). */
  user: VmmUser | null;
  /** The sandbox's disk, handed to `user` while QEMU runs (null: not known). */
  diskPath: string | null;
  /** The VM's cgroup (named by its vmId), removed once QEMU has exited. */
  cgroups: CgroupDriver | null;
  /** Runs its host commands (the driver's: the spawner, not the agent's large process). */
  run: Runner;
  /**
   * Adopted stopped for want of disk space (QEMU's io-error): it says so,
   * but runs on only once its new owner resumes it (an adopted VM may be
   * one whose pause the next agent finishes instead).
   */
  waitsForSpace?: boolean;
}

/** Asks QEMU to quit, SIGKILLs it after `graceMs`, and waits for its exit. */
export async function endQemu(
  q: { pid: number; exited: Promise<unknown>; qmp: QmpClient },
  graceMs: number,
  log: Logger,
): Promise<void> {
  await endProcess({
    pid: q.pid,
    exited: q.exited,
    graceMs,
    name: "QEMU",
    // quit's reply may never arrive: QEMU closes the socket as it exits.
    ask: () => void q.qmp.execute("quit").catch(() => undefined),
    onKill: () => log.warn({ pid: q.pid }, "QEMU did not quit; killing it"),
  });
  q.qmp.close();
}

export class QemuVm implements VmHandle {
  readonly vmId: string;
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  readonly #s: HandleState;
  readonly #stopGraceMs: number;
  readonly #log: Logger;
  #stopping: Promise<void> | null = null;
  readonly #console: ConsoleDrain;
  /** Resolves once QEMU has exited, its cgroup is gone and its disk is root's again. */
  readonly #cgroupGone: Promise<void>;
  /**
   * Set after a snapshot that left its memory file mapped by this VM (no
   * copy): resuming must first give the VM a file of its own, or the
   * snapshot would change under its owner.
   */
  #sharedWithSnapshot: string | null = null;
  /** The run dir's link to the RAM file a snapshot took (see snapshot()): removed at stop. */
  #runDirLink: string | null = null;
  /** Reads of the RAM file into the page cache under way, ended first on stop. */
  #readingAhead: { cancel: AbortController; done: Promise<void> } | null = null;
  /** Between pause() and resume(): stopped by the agent, not continued for a full disk. */
  #held = false;
  /** Its disk's last write found no space: the VM is stopped (see #waitForSpace). */
  #noSpace = false;
  /** The loop that continues it to retry that write, while one runs. */
  #retrying = false;

  release(): void {
    this.#s.qmp.close();
    this.#console.close();
  }

  async setBackground(on: boolean): Promise<void> {
    const { cgroups, machine } = this.#s;
    await cgroups?.setCpuWeight(
      this.vmId,
      on ? BACKGROUND_CPU_WEIGHT : vmCpuWeight(machine?.vcpus ?? 1),
    );
  }

  /**
   * Reads the RAM file (a resume's reflinked copy: a new inode, its page
   * cache empty) into the page cache once `copied` settles, not at all if
   * it fails; stop ends the reads first. Without them the guest reads its
   * memory a page fault at a time. `bench/lifecycle.ts` alternates resumes
   * with and without: under disk writes beside, the guest's first answer
   * took 0.58–0.91 as long with them (two runs, 256 MiB and 1 GiB); on a
   * quiet host 0.79–1.22 (three runs), no gain beyond the noise. Started
   * before QEMU they helped more, but QEMU's start then took 15–25 ms
   * longer; started after the state loaded, too late to help.
   */
  readRamAhead(copied: Promise<void> | undefined): void {
    const cancel = new AbortController();
    const done = (async () => {
      try {
        await copied;
      } catch {
        return; // The restore fails on it, and says why.
      }
      await timed(this.#log, "qemu.read_ahead", () =>
        readAhead(this.#s.ramPath, this.#s.run, cancel.signal),
      ).catch((err: unknown) => {
        // Only slower: the guest reads what it touches itself.
        if (!cancel.signal.aborted) {
          this.#log.warn({ err: messageOf(err) }, "reading the VM's memory ahead failed");
        }
      });
    })();
    this.#readingAhead = { cancel, done };
  }

  /** `stopGraceMs`: how long `stop` waits after QMP `quit` before SIGKILL. */
  constructor(s: HandleState, log: Logger, stopGraceMs: number) {
    this.#stopGraceMs = stopGraceMs;
    this.#s = s;
    this.#noSpace = s.waitsForSpace ?? false;
    this.#log = log;
    this.vmId = s.vmId;
    this.pid = s.pid;
    this.exited = s.exited;
    this.#console = drainConsole(paths(s.runDir, s.vmId).consoleSocket, s.runDir, s.vmId, log);
    this.#cgroupGone = this.exited.then(async () => {
      await s.cgroups?.remove(s.vmId).catch((err: unknown) => {
        // Swept at the next agent start.
        log.warn({ err: (err as Error).message }, "could not remove the VM's cgroup");
      });
      // The uid is free for the next VMM whose namespace gets this one's
      // number: it must find no disk of this sandbox's its own.
      if (s.user && s.diskPath) {
        await giveBack(s.diskPath, s.user).catch((err: unknown) => {
          log.warn({ err: (err as Error).message }, "could not give the disk back to root");
        });
      }
    });
    s.qmp.onEvent((e) => {
      // "stop": QEMU holds the write (werror=enospc); "report" gives the guest the error.
      if (
        e.event === "BLOCK_IO_ERROR" &&
        e.data?.["nospace"] === true &&
        e.data["action"] === "stop"
      ) {
        this.#noSpace = true;
        void this.#waitForSpace();
      }
    });
    void this.exited.then(async (status) => {
      s.qmp.close();
      // A killed QEMU cannot remove its own socket.
      await rm(paths(s.runDir, s.vmId).qmp, { force: true });
      if (!this.#stopping) {
        const p = paths(s.runDir, s.vmId);
        await within(this.#console.done, 2000);
        this.#log.warn(
          { ...status, console: await tail(p.console), qemu: await tail(p.log) },
          "QEMU exited unexpectedly",
        );
      }
    });
  }

  /** The disk handed to QEMU's uid (confined), for the record: see QemuDriver.adopt. */
  get handedOver(): { disk: string; uid: number; gid: number } | null {
    const { user, diskPath } = this.#s;
    return user && diskPath ? { disk: diskPath, uid: user.uid, gid: user.gid } : null;
  }

  get controlSocket(): string {
    return paths(this.#s.runDir, this.#s.vmId).qmp;
  }

  async pause(): Promise<void> {
    this.#held = true;
    await this.#s.qmp.execute("stop");
  }

  async resume(): Promise<void> {
    if (this.#sharedWithSnapshot) await this.#takeBackRam(this.#sharedWithSnapshot);
    // It retries a write that found no space; failing again, it says so again.
    this.#noSpace = false;
    await this.#s.qmp.execute("cont");
    this.#held = false;
  }

  get waitsForSpace(): boolean {
    return this.#noSpace;
  }

  /**
   * A write its disk could not get space for (the host's data disk full)
   * stops the VM (QEMU's werror=enospc) and QEMU keeps the write; continued,
   * it retries it, and a pause saves it with the state. So the guest loses
   * nothing: it waits, stopped, and runs on once space is back — tried
   * every DISK_FULL_RETRY_MS, as a write that still finds none stops it
   * again. Not while the agent holds it paused.
   */
  async #waitForSpace(): Promise<void> {
    if (this.#retrying) return;
    this.#retrying = true;
    this.#log.warn(
      "the VM's disk could not grow, as the host's data disk is full: the VM waits, stopped, until space is freed",
    );
    try {
      for (;;) {
        await sleep(DISK_FULL_RETRY_MS);
        if (this.#stopping || this.#held) return;
        if (!this.#noSpace) {
          this.#log.info("the VM's disk got space: the VM runs on");
          return;
        }
        // Until the retried write finds no space again (its event sets it back).
        this.#noSpace = false;
        await this.#s.qmp.execute("cont");
      }
    } catch {
      // QEMU is gone, or this agent let it go (release): nothing to wait for.
    } finally {
      this.#retrying = false;
    }
  }

  /** The snapshot keeps the current file; the VM continues on a copy of it. */
  async #takeBackRam(snapshotMem: string): Promise<void> {
    const own = paths(this.#s.runDir, this.#s.vmId).ram;
    const frozen = `${snapshotMem}.frozen`;
    await timed(this.#log, "qemu.ram_unshare", async () => {
      await copySparse(snapshotMem, frozen, this.#s.run);
      await rename(snapshotMem, own);
      await rename(frozen, snapshotMem);
    });
    this.#s.ramPath = own;
    this.#s.ownsRam = true;
    this.#runDirLink = null;
    this.#sharedWithSnapshot = null;
  }

  /**
   * Writes the device state (≈60 KB: guest RAM is skipped through
   * x-ignore-shared) and makes `files.memPath` hold guest RAM: nothing to do
   * when it already is the RAM file, else a rename (a reflink or sparse copy
   * across filesystems). A private (copy-on-write) clone's RAM is not in
   * any file, so it goes into the state stream and `memPath` becomes an empty
   * file the restore fills. QEMU has no dirty-page diff: `kind` is ignored and
   * the memory file is always complete.
   */
  async snapshot(files: SnapshotFiles, _kind: "full" | "diff"): Promise<void> {
    const s = this.#s;
    const status = await s.qmp.execute<{ status: string }>("query-status");
    if (status.status === "running") {
      throw new WrennError("failed_precondition", "snapshot needs a paused VM (pause it first)");
    }
    if (!s.machine) {
      throw new WrennError(
        "failed_precondition",
        "this VM was re-adopted without its boot configuration; it cannot be snapshotted",
      );
    }
    const machine = s.machine;
    if (!s.sharedRam && files.memPath === s.ramPath) {
      throw new WrennError(
        "invalid_argument",
        "a copy-on-write clone cannot snapshot into the memory file it was cloned from",
      );
    }
    await timed(this.#log, "qemu.save_state", async () => {
      const header: StateHeader = { machine, ramInState: !s.sharedRam };
      await writeFile(files.statePath, STATE_MAGIC + JSON.stringify(header) + "\n");
      const rcPath = join(s.runDir, "save-state.rc");
      await rm(rcPath, { force: true });
      if (s.user) {
        // QEMU's `cat` runs as the VMM user: it appends to a state file and
        // writes a status file it owns, in directories it may enter.
        await writeFile(rcPath, "");
        await Promise.all([handOver(files.statePath, s.user), handOver(rcPath, s.user)]);
        await grantTraverse(dirname(files.statePath));
        await grantTraverse(s.runDir);
      }
      await s.qmp.execute("migrate-set-capabilities", {
        capabilities: [{ capability: "x-ignore-shared", state: s.sharedRam }],
      });
      // QEMU only sees the pipe: a `cat` that fails to write the file (a
      // full disk) must not pass for a saved state (a truncated one loses
      // the sandbox), so its exit status is kept and checked — in the run
      // dir, as beside the state it could not be written either.
      const state = shellQuote(files.statePath);
      await s.qmp.execute("migrate", {
        uri: `exec:cat >> ${state}; echo $? > ${shellQuote(rcPath)}`,
      });
      await waitMigration(s.qmp, "saving VM state");
      await writerStatus(rcPath, "saving VM state");
      // Back to root, 0600: whichever VMM gets this uid next may not rewrite
      // this saved state, and no VMM may read it (a restore is given an open
      // descriptor of it: the state of a private clone holds its RAM).
      if (s.user) await giveBack(files.statePath, s.user);
    });
    if (!s.sharedRam) {
      await rm(files.memPath, { force: true });
      await writeFile(files.memPath, "");
      await truncate(files.memPath, s.machine.memoryMb * 1024 * 1024);
      return;
    }
    if (files.memPath !== s.ramPath) {
      await timed(this.#log, "qemu.save_memory", async () => {
        // Shared RAM is the live memory whoever made the file (a resumed
        // sandbox consumed its snapshot), so the snapshot takes the file
        // itself, not a copy: a second link, so that an agent dying before
        // its record says the memory is saved leaves the VM's own path in
        // place (the next agent unfreezes it, and its next pause links
        // again); the run dir's link goes with the run dir.
        try {
          await rm(files.memPath, { force: true }); // what a pause cut short left
          await link(s.ramPath, files.memPath);
          crashPoint("pause:after-ram-link");
          this.#runDirLink = s.ramPath;
          s.ramPath = files.memPath;
          s.ownsRam = false;
          return;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
        }
        await copySparse(s.ramPath, files.memPath, s.run);
      });
    }
    if (s.ramPath === files.memPath) this.#sharedWithSnapshot = files.memPath;
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    const s = this.#s;
    this.#readingAhead?.cancel.abort();
    await this.#readingAhead?.done;
    await endQemu(s, this.#stopGraceMs, this.#log);
    this.#console.close();
    // Bounded: a console that does not settle must never hold up a stop.
    await within(this.#console.done, 2000);
    await this.#cgroupGone;
    const p = paths(s.runDir, s.vmId);
    await Promise.all([
      removeConsole(s.runDir, s.vmId),
      ...[
        p.qmp,
        p.consoleSocket,
        p.log,
        ...(s.ownsRam ? [s.ramPath] : []),
        ...(this.#runDirLink ? [this.#runDirLink] : []),
      ].map((f) => rm(f, { force: true })),
    ]);
  }
}
