import { WrennError } from "@wrenn/shared/errors.ts";

/**
 * Slot N's names and addresses, all derived from N so a restarted agent (or
 * `cleanupStale`) can find every resource of a slot from its index alone.
 *
 * Host addresses come from 10.11.0.0/16 and veth /31 pairs from
 * 10.12.0.0/16, so N may go up to 32767 (the veth pair of N uses
 * 10.12.0.0 + 2N and + 2N + 1).
 */

export const FIRST_INDEX = 1;
export const LAST_INDEX = 32767;

/** Every host address of a slot lies here (the host routes one /32 per slot). */
export const HOST_ADDRESS_RANGE = "10.11.0.0/16";
/** Every veth /31 lies here. */
export const VETH_RANGE = "10.12.0.0/16";
/** The veth end inside every slot namespace (its own namespace, so no clash). */
export const NS_VETH_NAME = "veth0";

const HOST_BASE = ip4ToInt("10.11.0.0");
const VETH_BASE = ip4ToInt("10.12.0.0");

export interface SlotNames {
  netns: string;
  /** Host end of the veth pair. */
  hostVeth: string;
}

export interface SlotAddresses {
  /** Host end of the veth /31: the namespace's default gateway. */
  hostVethIp: string;
  /** Namespace end of the veth /31: the guest's traffic leaves the namespace from here. */
  nsVethIp: string;
  /** Where the host reaches the guest (DNAT to the guest inside the namespace). */
  hostAddress: string;
}

/** Interface names are at most 15 bytes: `<prefix>-vh-32767` leaves 6 for the prefix. */
const PREFIX_PATTERN = /^[a-z][a-z0-9]{0,5}$/;

export function checkPrefix(prefix: string): string {
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new WrennError(
      "invalid_argument",
      `network name prefix '${prefix}' must be 1-6 lowercase letters or digits, starting with a letter`,
    );
  }
  return prefix;
}

export function checkIndex(index: number): number {
  if (!Number.isInteger(index) || index < FIRST_INDEX || index > LAST_INDEX) {
    throw new WrennError(
      "invalid_argument",
      `network slot index ${index} is outside ${FIRST_INDEX}..${LAST_INDEX}`,
    );
  }
  return index;
}

export function slotNames(prefix: string, index: number): SlotNames {
  return { netns: `${prefix}-ns-${index}`, hostVeth: `${prefix}-vh-${index}` };
}

export function slotAddresses(index: number): SlotAddresses {
  checkIndex(index);
  return {
    hostVethIp: intToIp4(VETH_BASE + 2 * index),
    nsVethIp: intToIp4(VETH_BASE + 2 * index + 1),
    hostAddress: intToIp4(HOST_BASE + index),
  };
}

/** The slot index in a namespace or host link name of ours, or null if the name is not ours. */
export function indexFromName(prefix: string, kind: "ns" | "vh", name: string): number | null {
  const head = `${prefix}-${kind}-`;
  if (!name.startsWith(head)) return null;
  const rest = name.slice(head.length);
  if (!/^[1-9][0-9]{0,4}$/.test(rest)) return null;
  const index = Number(rest);
  return index <= LAST_INDEX ? index : null;
}

export function ip4ToInt(ip: string): number {
  const parts = ip.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new WrennError("invalid_argument", `'${ip}' is not an IPv4 address`);
  }
  return parts.reduce((acc, p) => acc * 256 + p, 0);
}

export function intToIp4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}
