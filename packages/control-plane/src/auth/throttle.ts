import { isIPv6 } from "node:net";
import { LimitError } from "../errors.ts";
import { ClientAddresses } from "./client-address.ts";

/** A token bucket's shape: `burst` at once, refilled at `perMinute`. */
export interface Rate {
  burst: number;
  perMinute: number;
}

/**
 * What anonymous callers may make the control plane do (each is an scrypt
 * hash or a credential lookup), per client address, and failed logins per
 * account. Counted per control plane process: N replicas allow N times this.
 */
export interface RateLimits {
  /** Sign-ups per address. */
  signup: Rate;
  /** Login attempts per address. */
  login: Rate;
  /** Failed logins per account (email). */
  loginFailures: Rate;
  /** Requests per address whose API key or session token was refused. */
  badCredentials: Rate;
}

export const DEFAULT_RATE_LIMITS: RateLimits = {
  signup: { burst: 20, perMinute: 1 },
  login: { burst: 30, perMinute: 30 },
  loginFailures: { burst: 10, perMinute: 2 },
  badCredentials: { burst: 60, perMinute: 60 },
};

/** Token buckets by key, in memory; the oldest keys go first past `maxKeys`. */
export class Throttle {
  readonly #rate: Rate;
  readonly #what: string;
  readonly #maxKeys: number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(what: string, rate: Rate, maxKeys = 100_000) {
    this.#what = what;
    this.#rate = rate;
    this.#maxKeys = maxKeys;
  }

  #tokens(key: string, now: number): number {
    const b = this.#buckets.get(key);
    if (!b) return this.#rate.burst;
    return Math.min(this.#rate.burst, b.tokens + ((now - b.at) / 60_000) * this.#rate.perMinute);
  }

  /** Throws while `key`'s bucket is empty, without using a token. */
  check(key: string): void {
    const tokens = this.#tokens(key, Date.now());
    if (tokens < 1) {
      const sec = Math.max(1, Math.ceil(((1 - tokens) * 60) / this.#rate.perMinute));
      throw new LimitError("rate_limited", `too many ${this.#what}; try again in ${sec} s`, sec);
    }
  }

  /** Uses one of `key`'s tokens; throws when there is none. */
  take(key: string): void {
    this.check(key);
    const now = Date.now();
    const tokens = this.#tokens(key, now) - 1;
    // Re-inserting moves the key to the end: the map's order is least recently used first.
    this.#buckets.delete(key);
    this.#buckets.set(key, { tokens, at: now });
    if (this.#buckets.size > this.#maxKeys) {
      const oldest = this.#buckets.keys().next().value;
      if (oldest !== undefined) this.#buckets.delete(oldest);
    }
  }
}

export interface Throttles {
  signup: Throttle;
  login: Throttle;
  loginFailures: Throttle;
  badCredentials: Throttle;
  /** Which address a request counts under (the peer, or behind a trusted proxy its client). */
  clients: ClientAddresses;
}

/** `trustProxy`: the CIDRs of reverse proxies whose X-Forwarded-For is believed (`--trust-proxy`). */
export function createThrottles(
  limits: Partial<RateLimits> = {},
  trustProxy: readonly string[] = [],
): Throttles {
  const l = { ...DEFAULT_RATE_LIMITS, ...limits };
  return {
    clients: new ClientAddresses(trustProxy),
    signup: new Throttle("sign-ups from this address", l.signup),
    login: new Throttle("logins from this address", l.login),
    loginFailures: new Throttle("failed logins for this account", l.loginFailures),
    badCredentials: new Throttle("refused credentials from this address", l.badCredentials),
  };
}

/**
 * The key a client address is counted under: an IPv6 client usually holds
 * a whole /64, so it counts as one; IPv4-mapped addresses as IPv4.
 */
export function clientKey(address: string | undefined): string {
  if (!address) return "unknown";
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1]) return mapped[1];
  if (!isIPv6(address)) return address;
  const [head = "", tail = ""] = address.split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = address.includes("::")
    ? [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t]
    : h;
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(":")}::/64`;
}
