/**
 * Standby VMMs (vmm.ts StandbyVmm): started ahead for the machine of a
 * recent pause (a second after it), each on a network slot of its own, so
 * that the resume takes a running VMM and its slot instead of waiting for
 * both. A resume that took one starts the next for its machine a second
 * after it is done, and a create from a snapshot starts one for its machine
 * if there is room: a sandbox that ran a second or more, then was paused and
 * resumed at once, as an agent between two turns, finds one ready too (host
 * side p50 74–98 ms against 181–198 ms without standbys, second machine).
 * Started at once after the resume, it was ready even in back-to-back
 * cycles, but made the first exec after every resume ≈ 50 ms slower (280
 * against 229 ms, alternated); started at the take, it slowed the resume
 * that took it. At most `size`: a machine a pause or resume wants and none
 * is kept for takes the oldest's place; more of one machine fill free
 * places, so that with two kept for one machine, back-to-back cycles (a
 * pause ≈ 0.3 s after the last resume) mostly find one ready too (host side
 * p50 87–91 ms against 179–184 with one kept, 14-cycle runs). A resume
 * whose machine's standby is still in its second's wait starts its own VMM,
 * as without them.
 * One that dies waiting is dropped; the agent's close stops them all, and
 * a restarted agent kills those its predecessor left (killStrays: no
 * record names them).
 */
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { messageOf } from "@wrenn/shared/errors.ts";
import { timed } from "@wrenn/shared/log.ts";
import { GUEST_MAC, type NetworkSlot } from "../network/network.ts";
import type { RestoreSpec, StandbyVmm } from "../vmm/vmm.ts";
import type { SandboxHost } from "./host.ts";

/** A standby a resume took: its VMM, its slot, and the run dir it waited in. */
export interface Standby {
  vm: StandbyVmm;
  slot: NetworkSlot;
  dir: string;
}

interface Entry {
  key: string;
  ready: Promise<Standby | null>;
  /** Set once it is ready. */
  standby: Standby | null;
  /** Its QEMU is starting (its second's wait is over). */
  starting: boolean;
  /** Dropped before its start began: it starts none. */
  cancel: AbortController;
}

/** How long after its pause, or the resume that took the last, a standby starts (see #start). */
const START_DELAY_MS = 1000;
/**
 * How long a resume waits for a standby whose QEMU is starting (114–239 ms
 * here): one slower than this is dropped and the resume starts its own.
 */
const START_WAIT_MS = 1000;

/** Run dirs of standbys are named so; a restarted agent removes those left. */
export const STANDBY_PREFIX = "standby-";

export class Standbys {
  readonly #host: SandboxHost;
  #size: number;
  #entries: Entry[] = [];
  #closed = false;

  constructor(host: SandboxHost, size: number) {
    this.#host = host;
    this.#size = size;
  }

  /** How many are kept; 0 turns them off (`bench/lifecycle.ts` does, for its baseline). */
  get size(): number {
    return this.#size;
  }

  set size(n: number) {
    this.#size = n;
    while (this.#entries.length > n) {
      const oldest = this.#entries.shift();
      if (oldest) void this.#drop(oldest);
    }
  }

  /** How many are kept or starting now. */
  get count(): number {
    return this.#entries.length;
  }

  /**
   * Keeps one ready for resumes from the memory in `dir`: a pause's, or
   * (`spare`) the snapshot a create restored, for its sandbox's first pause,
   * which takes only a free place.
   */
  async want(
    dir: string,
    kernel: RestoreSpec["kernel"],
    { spare = false }: { spare?: boolean } = {},
  ): Promise<void> {
    // A create's looks for a free place before it reads the state.
    if (this.#closed || this.size === 0 || (spare && this.#entries.length >= this.size)) return;
    const key = await this.#key(dir, kernel);
    if (key !== null) this.#keep(key, spare);
  }

  /**
   * A standby for resuming from `dir`, or null; the caller owns it. A ready
   * one, else one whose QEMU is starting (it is further along than a QEMU
   * the resume would start, and both starting at once made such resumes
   * 239–316 ms against 148–163 waiting for it, second machine). One still
   * in its second's wait is left for the next resume: started at once and
   * waited for, it made a resume right after its pause slower than starting
   * its own QEMU (host side p50 215–217 ms against 155–183).
   */
  async take(dir: string, kernel: RestoreSpec["kernel"]): Promise<Standby | null> {
    if (!this.#entries.some((e) => e.standby || e.starting)) return null;
    const key = await this.#key(dir, kernel);
    const entry =
      this.#entries.find((e) => e.key === key && e.standby) ??
      this.#entries.find((e) => e.key === key && e.starting);
    if (!entry) return null;
    this.#entries.splice(this.#entries.indexOf(entry), 1);
    if (entry.standby) return entry.standby;
    const late = new AbortController();
    const standby = await Promise.race([
      entry.ready,
      sleep(START_WAIT_MS, null, { signal: late.signal }).catch(() => null),
    ]);
    late.abort();
    if (standby !== null || entry.standby !== null) return standby ?? entry.standby;
    // Failed (it freed what it held), or still starting: dropped once started.
    void this.#drop(entry);
    return null;
  }

  /**
   * Starts the next for the machine of a standby a resume took, a second
   * after that resume is done: its guest's first requests have the cores.
   */
  replace(key: string): void {
    this.#keep(key, false);
  }

  /** Stops every standby and frees its slot; later pauses and resumes start new ones. */
  async clear(): Promise<void> {
    const entries = this.#entries;
    this.#entries = [];
    await Promise.all(entries.map((e) => this.#drop(e)));
  }

  /** Stops every standby and frees its slot, for good (the agent's close). */
  async close(): Promise<void> {
    this.#closed = true;
    await this.clear();
  }

  async #key(dir: string, kernel: RestoreSpec["kernel"]): Promise<string | null> {
    return (await this.#host.opts.vmm.standbyKey?.(dir, kernel)) ?? null;
  }

  /**
   * Starts one for `key` (a second later): a machine's first in the oldest's
   * place if all are kept, more of one machine (for resumes in quick
   * succession) and a `spare` only into a free place.
   */
  #keep(key: string, spare: boolean): void {
    if (this.#closed || this.size === 0) return;
    const full = this.#entries.length >= this.size;
    if (full && (spare || this.#entries.some((e) => e.key === key))) return;
    while (this.#entries.length >= this.size) {
      const oldest = this.#entries.shift();
      if (oldest) void this.#drop(oldest);
    }
    this.#entries.push(this.#start(key));
  }

  #start(key: string): Entry {
    const { vmm, network, runRoot } = this.#host.opts;
    const vmId = `${STANDBY_PREFIX}${randomBytes(4).toString("hex")}`;
    const log = this.#host.log.child({ standby: vmId });
    const dir = join(runRoot, vmId);
    const entry: Entry = {
      key,
      ready: Promise.resolve(null),
      standby: null,
      starting: false,
      cancel: new AbortController(),
    };
    entry.ready = (async (): Promise<Standby | null> => {
      let slot: NetworkSlot | null = null;
      try {
        if (!vmm.startStandby) return null;
        // A second after the pause, as its write-back: a resume right after
        // it (which takes none still waiting here) then has the cores; or
        // after the resume, whose guest's first requests then have them.
        await sleep(START_DELAY_MS, undefined, { signal: entry.cancel.signal });
        entry.starting = true;
        // Not the pool's: those are for requests, and taking one refills it a
        // second later, in the middle of the next resume.
        slot = await network.acquire({ background: true });
        await mkdir(dir, { recursive: true });
        const vm = await timed(log, "standby.start", () =>
          vmm.startStandby!({
            vmId,
            netns: slot!.netns,
            tapName: slot!.tapName,
            guestMac: GUEST_MAC,
            runDir: dir,
            key,
          }),
        );
        const standby: Standby = { vm, slot, dir };
        entry.standby = standby;
        void vm.exited.then(() => {
          // Died waiting (or stopped): no resume may take it.
          const i = this.#entries.indexOf(entry);
          if (i < 0) return;
          this.#entries.splice(i, 1);
          log.warn("a standby VMM exited while waiting");
          void this.#free(standby);
        });
        return standby;
      } catch (err) {
        if (!entry.cancel.signal.aborted) {
          log.warn({ err: messageOf(err) }, "could not start a standby VMM");
        }
        if (slot) await network.release(slot).catch(() => undefined);
        await rm(dir, { recursive: true, force: true }).catch(() => undefined);
        const i = this.#entries.indexOf(entry);
        if (i >= 0) this.#entries.splice(i, 1);
        return null;
      }
    })();
    return entry;
  }

  async #drop(entry: Entry): Promise<void> {
    entry.cancel.abort();
    const standby = await entry.ready;
    if (standby) await this.#free(standby);
  }

  /** Stops a standby nobody took and frees what it held; logs what it could not free. */
  async #free(standby: Standby): Promise<void> {
    const { network } = this.#host.opts;
    try {
      await standby.vm.stop();
      await network.release(standby.slot);
      await rm(standby.dir, { recursive: true, force: true });
    } catch (err) {
      this.#host.log.warn(
        { standby: standby.vm.vmId, err: messageOf(err) },
        "could not stop a standby VMM; the next agent's start-up cleans it up",
      );
    }
  }
}
