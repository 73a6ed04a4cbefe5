import type { EgressRules } from "./egress.ts";

/**
 * The seam between the sandbox manager and sandbox networking: one slot per
 * sandbox (namespace + veth + TAP), the same guest IP in every slot.
 */

/** Fixed inside every slot so a VM snapshot restores into any slot. */
export const GUEST_IP = "169.254.0.21";
export const TAP_IP = "169.254.0.22";
export const TAP_PREFIX = 30;
/** TAP_PREFIX as a dotted mask, for the kernel `ip=` argument. */
export const GUEST_NETMASK = "255.255.255.252";
export const TAP_NAME = "tap0";
export const GUEST_MAC = "02:fc:00:00:00:05";
/**
 * The TAP's MAC, fixed too: a restored guest still has the gateway's MAC in
 * its ARP cache, and a TAP with another address would drop what the guest
 * sends until something makes it ARP again.
 */
export const TAP_MAC = "02:fc:00:00:00:06";

export interface NetworkSlot {
  index: number;
  /** `ip netns` name, e.g. "wrenn-ns-3". */
  netns: string;
  tapName: string;
  /** The address at which the host reaches this slot's guest (10.11.0.N). */
  hostAddress: string;
  /** The kernel `ip=` argument that configures the guest. */
  guestIpArg: string;
}

export interface NetworkManager {
  /**
   * A fresh slot (namespace, veth pair, TAP, NAT rules, default egress
   * rules): one built ahead by the pool when there is one, else built now.
   * `background`: for work off every request's path (a standby VMM): built
   * now, leaving the pool's slots and the last free index to requests.
   */
  acquire(opts?: { background?: boolean }): Promise<NetworkSlot>;
  /** Tears the slot down and frees its index; idempotent. */
  release(slot: NetworkSlot): Promise<void>;
  /** Marks a slot as taken by a re-adopted sandbox (agent restart). */
  adopt(index: number): NetworkSlot;
  /** Removes every `wrenn` namespace, link and rule not in `keep` (agent start). */
  cleanupStale(keep: number[]): Promise<void>;
  /**
   * Replaces a slot's egress rules atomically; names are resolved now.
   * Throws invalid_argument (naming the entry) when one does not parse or
   * resolve; the slot's previous rules then stay.
   */
  setEgress(slot: NetworkSlot, rules: EgressRules): Promise<void>;
  /** Checks rules as setEgress would (names resolved) without applying them. */
  checkEgress(rules: EgressRules): Promise<void>;
}
