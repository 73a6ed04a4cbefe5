import { BlockList, isIP } from "node:net";
import { WrennError } from "@wrenn/shared/errors.ts";

/** An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) as IPv4; anything else unchanged. */
function plain(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped?.[1] ?? address;
}

/** `10.0.0.0/8`, `fd00::/8`, or one address (a /32 or /128). */
function addCidr(list: BlockList, text: string): void {
  const [addr = "", bits, ...rest] = text.trim().split("/");
  const ip = plain(addr);
  const family = isIP(ip);
  const max = family === 6 ? 128 : 32;
  const prefix = bits === undefined ? max : Number(bits);
  if (
    family === 0 ||
    rest.length > 0 ||
    (bits !== undefined && !/^\d{1,3}$/.test(bits)) ||
    prefix > max
  ) {
    throw new WrennError(
      "invalid_argument",
      `--trust-proxy takes addresses or CIDRs (e.g. 10.0.0.0/8,127.0.0.1,::1), got '${text}'`,
    );
  }
  list.addSubnet(ip, prefix, family === 6 ? "ipv6" : "ipv4");
}

/** Longest forwarded hop taken as a client address (an IPv6 address with a zone fits). */
const MAX_HOP = 64;

/**
 * Which address a request counts as coming from, for rate limits. By
 * default the peer's: anyone can write X-Forwarded-For. Behind a reverse
 * proxy every peer is the proxy, so the operator names the proxies
 * (`--trust-proxy`): when the peer is one of them, the client is the
 * rightmost X-Forwarded-For hop that is not a trusted proxy. Hops to its
 * left were written by the client itself and are never believed.
 */
export class ClientAddresses {
  readonly #trusted: BlockList;
  readonly #any: boolean;

  constructor(trustProxy: readonly string[] = []) {
    this.#trusted = new BlockList();
    for (const cidr of trustProxy) addCidr(this.#trusted, cidr);
    this.#any = trustProxy.length > 0;
  }

  #isTrusted(address: string): boolean {
    const ip = plain(address);
    const family = isIP(ip);
    if (family === 0) return false;
    return this.#trusted.check(ip, family === 6 ? "ipv6" : "ipv4");
  }

  /** The client's address: the peer's, or, from a trusted proxy, the rightmost untrusted forwarded hop. */
  of(peer: string | undefined, forwardedFor: string | string[] | undefined): string {
    const from = peer ?? "";
    if (!this.#any || !this.#isTrusted(from) || forwardedFor === undefined) return from;
    const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(",") : forwardedFor)
      .split(",")
      .map((h) => h.trim())
      .filter(Boolean);
    let client = from;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = (hops[i] ?? "").slice(0, MAX_HOP);
      client = hop;
      // A hop that is not an address ends the chain: nothing left of it is believable either.
      if (!this.#isTrusted(hop)) break;
    }
    return plain(client);
  }
}
