import { WrennError } from "@wrenn/shared/errors.ts";
import { ip4ToInt } from "./addresses.ts";
import { mergeCidrs, parseEgressEntry } from "./egress.ts";

/**
 * The address ranges no sandbox reaches unless the host's operator opens
 * them (`--allow-private`): the host's LAN and whatever else sits beside a
 * host on a private network (RFC 1918, CGNAT, link-local — cloud metadata
 * services live at 169.254.169.254), and the ranges that are never a
 * public host (this network, loopback, benchmarking, multicast, reserved).
 * Disjoint, so nftables takes them as one interval set.
 */
export const PRIVATE_RANGES: readonly string[] = [
  "0.0.0.0/8",
  "10.0.0.0/8",
  "100.64.0.0/10",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "198.18.0.0/15",
  "224.0.0.0/4",
  "240.0.0.0/4",
];

function rangeOf(cidr: string): { start: number; end: number } {
  const [ip, bits] = cidr.split("/") as [string, string];
  const start = ip4ToInt(ip);
  return { start, end: start + 2 ** (32 - Number(bits)) - 1 };
}

/**
 * The operator's allow-list as merged CIDRs. Each entry is an IPv4 CIDR or
 * address inside one of PRIVATE_RANGES: public addresses are open already,
 * and an entry spanning several ranges (0.0.0.0/0) would open the cloud
 * metadata service along with the LAN by accident, so each range is named
 * on its own. Host names are refused: the boundary of the host must not
 * move when a DNS answer does.
 */
export function parseAllowPrivate(entries: readonly string[], flag = "--allow-private"): string[] {
  const cidrs = entries.map((entry) => {
    const parsed = parseEgressEntry(entry);
    if (parsed?.kind !== "cidr") {
      throw new WrennError(
        "invalid_argument",
        `${flag}: '${entry}' is not an IPv4 CIDR or address (e.g. 192.168.1.0/24)`,
      );
    }
    const r = rangeOf(parsed.cidr);
    const inside = PRIVATE_RANGES.some((p) => {
      const q = rangeOf(p);
      return r.start >= q.start && r.end <= q.end;
    });
    if (!inside) {
      throw new WrennError(
        "invalid_argument",
        `${flag}: '${entry}' is not inside one private range (${PRIVATE_RANGES.join(", ")}); public addresses are reachable already, and each private range is opened on its own`,
      );
    }
    return parsed.cidr;
  });
  return mergeCidrs(cidrs);
}

/** `--allow-private A,B` and repeated flags alike: the entries, trimmed, empty ones dropped. */
export function splitAllowPrivate(values: readonly string[]): string[] {
  return values
    .flatMap((v) => v.split(","))
    .map((v) => v.trim())
    .filter((v) => v !== "");
}
