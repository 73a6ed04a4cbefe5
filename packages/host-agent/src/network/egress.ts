import { lookup as dnsLookup } from "node:dns/promises";
import { isIPv4 } from "node:net";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import { intToIp4, ip4ToInt } from "./addresses.ts";

/**
 * A sandbox's egress rules as its owner gave them (E2B's `allowOut` /
 * `denyOut`): IPv4 CIDRs, IPv4 addresses or host names. allow wins over
 * deny; deny "0.0.0.0/0" denies everything allow does not name. Kept as
 * given in the sandbox's record, so names are resolved again whenever the
 * rules are applied (create, update, resume).
 */
export interface EgressRules {
  allowOut: string[];
  denyOut: string[];
}

/** What nftables gets: CIDRs only, merged so no interval contains another. */
export interface ResolvedEgress {
  allow: string[];
  deny: string[];
}

export const MAX_EGRESS_ENTRIES = 512;

const CIDR = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/;
const HOST_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;

export type EgressEntry = { kind: "cidr"; cidr: string } | { kind: "name"; name: string };

/**
 * One entry, or null when it is none of the three forms. A CIDR's host bits
 * are cleared (10.0.0.1/8 is 10.0.0.0/8), as Go's net.ParseCIDR reads it.
 */
export function parseEgressEntry(entry: string): EgressEntry | null {
  const text = entry.trim();
  if (isIPv4(text)) return { kind: "cidr", cidr: `${text}/32` };
  const cidr = CIDR.exec(text);
  if (cidr) {
    const [, ip, bits] = cidr as unknown as [string, string, string];
    const prefix = Number(bits);
    if (!isIPv4(ip) || prefix > 32) return null;
    return { kind: "cidr", cidr: `${intToIp4(network(ip4ToInt(ip), prefix))}/${prefix}` };
  }
  // Dotted numbers that are not an address are a typo, not a host name.
  if (/^[\d.]+$/.test(text)) return null;
  const name = text.replace(/\.$/, "").toLowerCase();
  if (name.length === 0 || name.length > 253) return null;
  return name.split(".").every((l) => HOST_LABEL.test(l)) ? { kind: "name", name } : null;
}

function network(address: number, prefix: number): number {
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return (address & mask) >>> 0;
}

/** A problem with an entry, phrased for the user (null when it parses). */
export function egressEntryProblem(entry: string): string | null {
  if (parseEgressEntry(entry) !== null) return null;
  return `'${entry}' is not an IPv4 CIDR, an IPv4 address or a host name`;
}

/**
 * CIDRs sorted, duplicates and those inside another dropped: nftables
 * refuses an anonymous interval set whose elements overlap.
 */
export function mergeCidrs(cidrs: string[]): string[] {
  const ranges = cidrs
    .map((c) => {
      const [ip, bits] = c.split("/") as [string, string];
      const start = ip4ToInt(ip);
      const size = 2 ** (32 - Number(bits));
      return { c, start, end: start + size - 1 };
    })
    .sort((a, b) => a.start - b.start || b.end - a.end);
  const out: typeof ranges = [];
  for (const r of ranges) {
    const last = out.at(-1);
    // CIDRs are either disjoint or nested: one that starts inside the last is inside it.
    if (last && r.start <= last.end) continue;
    out.push(r);
  }
  return out.map((r) => r.c);
}

export type Lookup = (name: string) => Promise<string[]>;

/** Every IPv4 address a name has now (getaddrinfo: /etc/hosts, then DNS). */
export const lookupIPv4: Lookup = async (name) =>
  (await dnsLookup(name, { family: 4, all: true })).map((a) => a.address);

/**
 * The rules as CIDRs. Names are looked up now; one that does not resolve
 * fails the whole set (invalid_argument naming it) rather than being left
 * out: a deny entry silently dropped would let the sandbox reach what its
 * owner denied.
 */
export async function resolveEgress(
  rules: EgressRules,
  lookup: Lookup = lookupIPv4,
): Promise<ResolvedEgress> {
  const side = async (field: "allow_out" | "deny_out", entries: string[]) => {
    const cidrs = await Promise.all(
      entries.map(async (entry) => {
        const parsed = parseEgressEntry(entry);
        if (parsed === null) {
          throw new WrennError("invalid_argument", `${field}: ${egressEntryProblem(entry)}`);
        }
        if (parsed.kind === "cidr") return [parsed.cidr];
        let addresses: string[];
        try {
          addresses = await lookup(parsed.name);
        } catch (err) {
          throw new WrennError(
            "invalid_argument",
            `${field}: host name '${entry}' does not resolve (${messageOf(err)}); names are resolved when the rules are applied`,
          );
        }
        if (addresses.length === 0) {
          throw new WrennError(
            "invalid_argument",
            `${field}: host name '${entry}' has no IPv4 address`,
          );
        }
        return addresses.map((a) => `${a}/32`);
      }),
    );
    return mergeCidrs(cidrs.flat());
  };
  const [allow, deny] = await Promise.all([
    side("allow_out", rules.allowOut),
    side("deny_out", rules.denyOut),
  ]);
  return { allow, deny };
}

export function hasEgressRules(rules: EgressRules | undefined | null): rules is EgressRules {
  return rules != null && (rules.allowOut.length > 0 || rules.denyOut.length > 0);
}
