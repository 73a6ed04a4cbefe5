import { readFile, writeFile } from "node:fs/promises";
import { runCommand, type Runner } from "@wrenn/shared/command.ts";
import { WrennError, isWrennError, messageOf } from "@wrenn/shared/errors.ts";
import { createLogger, timed, type Logger } from "@wrenn/shared/log.ts";
import {
  GUEST_IP,
  GUEST_NETMASK,
  TAP_IP,
  TAP_NAME,
  type NetworkManager,
  type NetworkSlot,
} from "./network.ts";
import {
  FIRST_INDEX,
  LAST_INDEX,
  checkIndex,
  checkPrefix,
  indexFromName,
  slotAddresses,
  slotNames,
} from "./addresses.ts";
import { SlotAllocator } from "./allocator.ts";
import { SlotPool } from "./slot-pool.ts";
import { resolveEgress, type EgressRules, type Lookup } from "./egress.ts";
import { parseAllowPrivate } from "./private-ranges.ts";
import {
  HOST_BATCH_CLAIM_LINES,
  deleteHostTableScript,
  egressScript,
  hostSlotBatch,
  hostTableScript,
  namespaceScript,
} from "./rules.ts";
import {
  defaultRouteInterface,
  deleteAll,
  failedBatchLine,
  listNames,
  saysFileExists,
} from "./ip.ts";

export interface NetnsNetworkOptions {
  /** Seam for host commands (tests inject failures here). */
  runner?: Runner;
  log?: Logger;
  /**
   * Names namespaces `<prefix>-ns-N`, host veths `<prefix>-vh-N` and the host
   * table `inet <prefix>`; default "wrenn". Tests use their own prefix so
   * they never touch a running agent's slots.
   */
  prefix?: string;
  /**
   * Interface the guests' traffic leaves through, masqueraded; default: the
   * interface of the host's default route when the host rules are loaded.
   * With neither, guests get no egress.
   */
  egressInterface?: string;
  /**
   * Private ranges (CIDRs inside PRIVATE_RANGES) the operator lets
   * sandboxes reach; every other private address is refused. Default none.
   */
  allowPrivate?: readonly string[];
  /** How egress rules' host names are resolved (default: getaddrinfo, IPv4). */
  lookup?: Lookup;
  /** Slot indexes this manager hands out (default 1..32767). */
  firstIndex?: number;
  lastIndex?: number;
  /**
   * Slots built ahead of requests (default 0: none). The pool fills after
   * `cleanupStale` (agent start) and after every acquire; `drain()` tears it
   * down.
   */
  poolSize?: number;
}

const IP_FORWARD = "/proc/sys/net/ipv4/ip_forward";
/** A wedged `ip` or `nft` must fail the slot (and roll it back), not hang the sandbox. */
const COMMAND_TIMEOUT_MS = 15_000;
/**
 * A refill waits this long after a slot was taken. Its `ip` and `nft`
 * spawns block the agent's event loop (a fork of this process each): begun
 * at once, they stretched the taker's next steps by 36–58 ms (a record's
 * save, reading the kernel's metadata) on the way to its VM start.
 */
const REFILL_AFTER_TAKE_MS = 1000;
/** Where `ip netns add` pins named namespaces. */
const NETNS_DIR = "/run/netns";

/** Whoever else holds an index (another agent, another test) made the kernel say "File exists". */
class IndexHeldElsewhere extends Error {}

/**
 * Sandbox networking with one network namespace per slot (see network.ts
 * and rules.ts for the layout). A slot costs two process spawns: one
 * `ip -batch` on the host and one shell inside the namespace.
 */
export class NetnsNetworkManager implements NetworkManager {
  readonly prefix: string;
  readonly #run: Runner;
  readonly #log: Logger;
  readonly #egressOption: string | undefined;
  readonly #allowPrivate: string[];
  readonly #lookup: Lookup | undefined;
  readonly #slots: SlotAllocator;
  readonly #releasing = new Map<number, Promise<void>>();
  /** Slots another agent on this host holds (found by their routes); skipped by acquire. */
  readonly #heldElsewhere = new Set<number>();
  readonly #pool: SlotPool;
  #hostReady: Promise<void> | null = null;

  constructor(options: NetnsNetworkOptions = {}) {
    this.prefix = checkPrefix(options.prefix ?? "wrenn");
    const run = options.runner ?? runCommand;
    this.#run = (cmd, args, opts = {}) =>
      run(cmd, args, { timeoutMs: COMMAND_TIMEOUT_MS, ...opts });
    this.#log = (options.log ?? createLogger("host-agent")).child({ component: "network" });
    this.#egressOption = options.egressInterface;
    this.#allowPrivate = parseAllowPrivate(options.allowPrivate ?? []);
    this.#lookup = options.lookup;
    const first = checkIndex(options.firstIndex ?? FIRST_INDEX);
    const last = checkIndex(options.lastIndex ?? LAST_INDEX);
    this.#slots = new SlotAllocator(first, last);
    this.#pool = new SlotPool({
      size: options.poolSize ?? 0,
      build: () => this.#build(true),
      destroy: (index) =>
        timed(this.#log, "network.release", () => this.#tearDown(index), {
          slot: index,
          pooled: true,
        }).then(() => this.#slots.free(index)),
      log: this.#log,
    });
  }

  slot(index: number): NetworkSlot {
    checkIndex(index);
    return {
      index,
      netns: slotNames(this.prefix, index).netns,
      tapName: TAP_NAME,
      hostAddress: slotAddresses(index).hostAddress,
      guestIpArg: `ip=${GUEST_IP}::${TAP_IP}:${GUEST_NETMASK}::eth0:off`,
    };
  }

  /** Indexes currently held by this manager, pooled ones included. */
  get inUse(): number[] {
    return this.#slots.taken;
  }

  /** Indexes of the slots built ahead and not handed out yet. */
  get pooled(): number[] {
    return this.#pool.ready;
  }

  /**
   * A pooled slot when there is one (no work on the request's path), else
   * one built now; either way the pool then refills in the background.
   */
  async acquire(opts: { background?: boolean } = {}): Promise<NetworkSlot> {
    if (opts.background) {
      const index = await this.#build(true);
      if (index === null) {
        throw new WrennError("resource_exhausted", "no network slot is free for background work");
      }
      return this.slot(index);
    }
    const pooled = this.#pool.take();
    if (pooled !== undefined) {
      this.#log.debug({ slot: pooled }, "network slot taken from the pool");
      this.#pool.refill(REFILL_AFTER_TAKE_MS);
      return this.slot(pooled);
    }
    try {
      // Never null: only a spare build may decline.
      return this.slot((await this.#build(false)) as number);
    } catch (err) {
      // The last free index may be the one a refill is building: it is the request's.
      if (!(isWrennError(err, "resource_exhausted") && this.#pool.building)) throw err;
      await this.#pool.settled();
      const late = this.#pool.take();
      if (late === undefined) throw err;
      return this.slot(late);
    } finally {
      // After the request's own slot: on two cores a refill beside it would slow it down.
      this.#pool.refill(REFILL_AFTER_TAKE_MS);
    }
  }

  /**
   * Takes a free index and sets its slot up. `spare` (a pool refill) never
   * takes the last free index: requests win over the pool.
   */
  async #build(spare: boolean): Promise<number | null> {
    await this.#ensureHost();
    for (let retried = false; ;) {
      let index: number;
      try {
        if (spare && this.#slots.available(this.#heldElsewhere) <= 1) return null;
        index = this.#slots.take(this.#heldElsewhere);
      } catch (err) {
        // Another agent may have let some of them go since: look again once.
        if (retried || this.#heldElsewhere.size === 0) throw err;
        this.#heldElsewhere.clear();
        retried = true;
        continue;
      }
      try {
        await timed(
          this.#log,
          spare ? "network.prebuild" : "network.acquire",
          () => this.#setUp(index),
          { slot: index },
        );
        return index;
      } catch (err) {
        this.#slots.free(index);
        if (err instanceof IndexHeldElsewhere) {
          // Remembered, so the next acquire does not try it again (each try
          // costs a few `ip` calls).
          this.#log.info({ slot: index, reason: err.message }, "slot held elsewhere; skipping it");
          this.#heldElsewhere.add(index);
          continue;
        }
        throw err;
      }
    }
  }

  async release(slot: NetworkSlot): Promise<void> {
    const index = slot.index;
    const pending = this.#releasing.get(index);
    if (pending) return pending;
    if (!this.#slots.has(index)) return;
    if (this.#pool.has(index)) {
      // A second release of a slot whose index the pool has built anew since:
      // that slot is fresh and nobody's, so it stays.
      this.#log.warn({ slot: index }, "release of a slot already released; its index is pooled");
      return;
    }
    const done = timed(this.#log, "network.release", () => this.#tearDown(index), { slot: index })
      // The index stays taken if teardown failed: its resources may still exist.
      .then(() => this.#slots.free(index))
      .finally(() => this.#releasing.delete(index));
    this.#releasing.set(index, done);
    return done;
  }

  adopt(index: number): NetworkSlot {
    const slot = this.slot(index);
    if (!this.#slots.inRange(index)) {
      throw new WrennError(
        "invalid_argument",
        `network slot ${index} is outside this agent's slot range`,
      );
    }
    if (this.#pool.remove(index)) {
      // Only a record naming a slot this agent built for its pool gets here
      // (records name slots handed out): the slot is the caller's now.
      this.#log.warn({ slot: index }, "a pooled network slot was adopted; it leaves the pool");
    }
    this.#slots.mark(index);
    return slot;
  }

  /**
   * Stops refilling the pool and tears its slots down (agent shutdown);
   * slots handed out are not touched. The manager builds no pooled slot
   * after this.
   */
  async drain(): Promise<void> {
    await this.#pool.drain();
  }

  /**
   * Agent start: removes every namespace and host veth of ours whose index is
   * not in `keep` (what a crashed or killed agent left behind) and reloads
   * the host table, which holds no per-slot state. Not meant to run while
   * this manager is setting up slots for requests; the pool's refill waits
   * for it, keeps its own slots through it, and starts filling after it.
   */
  async cleanupStale(keep: number[]): Promise<void> {
    await this.#pool.paused(() => this.#cleanupStale(keep));
  }

  async #cleanupStale(keep: number[]): Promise<void> {
    await timed(this.#log, "network.cleanupStale", async () => {
      // This manager's own pooled slots are fresh, not stale; a killed
      // agent's pooled slots are in nobody's keep and go.
      const kept = new Set([...keep, ...this.#pool.ready]);
      const [namespaces, links] = await Promise.all([
        listNames(this.#run, ["netns", "list"], "name"),
        listNames(this.#run, ["link", "show"], "ifname"),
      ]);
      const lines: string[] = [];
      const stale = new Set<number>();
      for (const name of links) {
        const index = indexFromName(this.prefix, "vh", name);
        if (index !== null && !kept.has(index)) {
          lines.push(`link del ${name}`);
          stale.add(index);
        }
      }
      for (const name of namespaces) {
        const index = indexFromName(this.prefix, "ns", name);
        if (index !== null && !kept.has(index)) {
          lines.push(`netns del ${name}`);
          stale.add(index);
        }
      }
      await deleteAll(this.#run, lines);
      for (const index of this.#slots.taken) if (!kept.has(index)) this.#slots.free(index);
      for (const index of kept) if (this.#slots.inRange(index)) this.#slots.mark(index);
      this.#hostReady = null;
      await this.#ensureHost();
      if (stale.size > 0) {
        this.#log.info({ slots: [...stale].sort((a, b) => a - b) }, "removed stale network slots");
      }
    });
  }

  async setEgress(slot: NetworkSlot, rules: EgressRules): Promise<void> {
    const resolved = await resolveEgress(rules, this.#lookup);
    await timed(
      this.#log,
      "network.egress",
      () =>
        this.#run("nsenter", [`--net=${NETNS_DIR}/${slot.netns}`, "nft", "-f", "-"], {
          input: egressScript(this.prefix, resolved),
        }),
      { slot: slot.index, allow: resolved.allow.length, deny: resolved.deny.length },
    );
  }

  async checkEgress(rules: EgressRules): Promise<void> {
    await resolveEgress(rules, this.#lookup);
  }

  /**
   * Removes the host table, and the pool with it. Only for uninstalling or
   * tests: running sandboxes lose isolation and egress without it.
   */
  async removeHostRules(): Promise<void> {
    // First: a refill after this would load the table again.
    await this.#pool.drain();
    this.#hostReady = null;
    await this.#run("nft", ["-f", "-"], { input: deleteHostTableScript(this.prefix) });
  }

  #ensureHost(): Promise<void> {
    this.#hostReady ??= timed(this.#log, "network.host", async () => {
      await enableForwarding();
      const egress = this.#egressOption ?? (await defaultRouteInterface(this.#run));
      if (egress === null) {
        this.#log.warn("the host has no default route: sandboxes get no outbound network");
      }
      await this.#run("nft", ["-f", "-"], {
        input: hostTableScript(this.prefix, egress, this.#allowPrivate),
      });
      if (this.#allowPrivate.length > 0) {
        this.#log.info(
          { allowPrivate: this.#allowPrivate },
          "sandboxes may reach these private ranges",
        );
      }
    }).catch((err: unknown) => {
      this.#hostReady = null;
      throw err;
    });
    return this.#hostReady;
  }

  async #setUp(index: number): Promise<void> {
    const { netns, hostVeth } = slotNames(this.prefix, index);
    const addresses = slotAddresses(index);
    const batch = hostSlotBatch(netns, hostVeth, addresses);
    try {
      await timed(
        this.#log,
        "network.host-side",
        () => this.#run("ip", ["-batch", "-"], { input: batch.join("\n") + "\n" }),
        { slot: index },
      );
    } catch (err) {
      const line = failedBatchLine(err);
      // Undo only what this batch created: the lines before the failing one.
      const undo: string[] = [];
      if (line === null || line > 2) undo.push(`link del ${hostVeth}`);
      if (line === null || line > 1) undo.push(`netns del ${netns}`);
      await this.#rollBack(index, undo, err);
      if (line !== null && HOST_BATCH_CLAIM_LINES.has(line) && saysFileExists(err)) {
        throw new IndexHeldElsewhere(`${batch[line - 1]}: File exists`);
      }
      throw err;
    }
    try {
      await timed(
        this.#log,
        "network.namespace",
        () =>
          // nsenter joins only the network namespace; `ip netns exec` also
          // builds a mount namespace and remounts /sys, twice the cost.
          this.#run("nsenter", [`--net=${NETNS_DIR}/${netns}`, "sh", "-es"], {
            input: namespaceScript(this.prefix, addresses),
          }),
        { slot: index },
      );
    } catch (err) {
      await this.#rollBack(index, [`link del ${hostVeth}`, `netns del ${netns}`], err);
      throw err;
    }
  }

  async #rollBack(index: number, lines: string[], cause: unknown): Promise<void> {
    try {
      await deleteAll(this.#run, lines);
    } catch (err) {
      // Keep the original failure as the error; the leftovers go at the next cleanupStale.
      this.#log.error(
        { slot: index, err: messageOf(err), cause: messageOf(cause) },
        "network slot rollback failed",
      );
    }
  }

  async #tearDown(index: number): Promise<void> {
    const { netns, hostVeth } = slotNames(this.prefix, index);
    // Deleting the host end removes the pair and the route; deleting the
    // namespace takes the TAP and its NAT table with it.
    await deleteAll(this.#run, [`link del ${hostVeth}`, `netns del ${netns}`]);
  }
}

export function createNetworkManager(options: NetnsNetworkOptions = {}): NetnsNetworkManager {
  return new NetnsNetworkManager(options);
}

async function enableForwarding(): Promise<void> {
  try {
    if ((await readFile(IP_FORWARD, "utf8")).trim() !== "1") await writeFile(IP_FORWARD, "1\n");
  } catch (err) {
    throw new WrennError(
      "failed_precondition",
      `cannot turn on IPv4 forwarding (${IP_FORWARD}); the host agent must run as root: ${messageOf(err)}`,
      { cause: err },
    );
  }
}
