/**
 * The private-range boundary as text (no root): what --allow-private
 * accepts, and the host table's order — slot ranges dropped, then the
 * operator's allowed ranges, then every other private range refused, then
 * the egress interface. network-private.test.ts checks it on a real VM.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { WrennError } from "@wrenn/shared/errors.ts";
import {
  PRIVATE_RANGES,
  parseAllowPrivate,
  splitAllowPrivate,
} from "../src/network/private-ranges.ts";
import { hostTableScript } from "../src/network/rules.ts";
import { mergeCidrs } from "../src/network/egress.ts";

test("the private ranges are the issue's list and disjoint", { timeout: 5_000 }, () => {
  for (const r of [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "0.0.0.0/8",
    "127.0.0.0/8",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
  ]) {
    assert.ok(PRIVATE_RANGES.includes(r), r);
  }
  // nftables refuses overlapping elements in one interval set.
  assert.deepEqual(mergeCidrs([...PRIVATE_RANGES]), [...PRIVATE_RANGES]);
});

test("--allow-private: CIDRs or addresses inside one private range", { timeout: 5_000 }, () => {
  assert.deepEqual(parseAllowPrivate(["192.168.77.1", "10.1.2.3/8", "10.2.0.0/16"]), [
    "10.0.0.0/8",
    "192.168.77.1/32",
  ]);
  assert.deepEqual(parseAllowPrivate(["169.254.169.254"]), ["169.254.169.254/32"]);
  assert.deepEqual(splitAllowPrivate(["192.168.1.0/24, 10.0.0.0/8", "", "172.16.0.0/12"]), [
    "192.168.1.0/24",
    "10.0.0.0/8",
    "172.16.0.0/12",
  ]);
  const refused = (entry: string, pattern: RegExp) => {
    assert.throws(
      () => parseAllowPrivate([entry]),
      (e: unknown) =>
        e instanceof WrennError && e.code === "invalid_argument" && pattern.test(e.message),
      entry,
    );
  };
  refused("8.8.8.0/24", /--allow-private: '8\.8\.8\.0\/24' is not inside one private range/);
  refused("0.0.0.0/0", /not inside one private range/);
  // Spans 172.16/12 and public space beside it.
  refused("172.0.0.0/8", /not inside one private range/);
  refused("lan.example", /not an IPv4 CIDR or address/);
  refused("192.168.1.0/33", /not an IPv4 CIDR or address/);
});

test(
  "host table: slots dropped, allowed private accepted, other private refused, then egress",
  { timeout: 5_000 },
  () => {
    const closed = hostTableScript("wrenn", "eth0");
    const chain = (script: string) =>
      /chain sandbox_egress \{\n([\s\S]*?)\n {2}\}/
        .exec(script)?.[1]
        ?.split("\n")
        .map((l) => l.trim());
    const privateSet = `{ ${PRIVATE_RANGES.join(", ")} }`;
    assert.deepEqual(chain(closed), [
      "ip daddr { 10.11.0.0/16, 10.12.0.0/16 } drop",
      "meta nfproto ipv6 drop",
      `ip daddr ${privateSet} meta l4proto tcp reject with tcp reset`,
      `ip daddr ${privateSet} reject with icmpx admin-prohibited`,
      'oifname "eth0" accept',
      "drop",
    ]);
    assert.doesNotMatch(closed, /ip daddr \{ 192\.168/);

    const open = hostTableScript("wrenn", "eth0", ["10.0.0.0/8", "192.168.77.0/24"]);
    assert.deepEqual(chain(open)?.slice(0, 3), [
      "ip daddr { 10.11.0.0/16, 10.12.0.0/16 } drop",
      "meta nfproto ipv6 drop",
      // Before the refusal, and on any interface: a LAN may hang off another one.
      "ip daddr { 10.0.0.0/8, 192.168.77.0/24 } accept",
    ]);
    // Replies from an allowed LAN host must find their way back: masqueraded whatever the interface.
    assert.match(
      open,
      /iifname "wrenn-vh-\*" ip daddr \{ 10\.0\.0\.0\/8, 192\.168\.77\.0\/24 \} masquerade\n\s+iifname "wrenn-vh-\*" oifname "eth0" masquerade/,
    );
    const noEgress = hostTableScript("wrenn", null, ["192.168.77.0/24"]);
    assert.doesNotMatch(noEgress, /oifname "eth0"/);
    assert.match(noEgress, /ip daddr \{ 192\.168\.77\.0\/24 \} masquerade/);
  },
);
