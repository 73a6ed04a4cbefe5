import { GUEST_IP, TAP_IP, TAP_MAC, TAP_NAME, TAP_PREFIX } from "./network.ts";
import { HOST_ADDRESS_RANGE, NS_VETH_NAME, VETH_RANGE, type SlotAddresses } from "./addresses.ts";
import type { ResolvedEgress } from "./egress.ts";
import { PRIVATE_RANGES } from "./private-ranges.ts";

/**
 * nftables and iproute2 scripts for the host table and for one slot
 * namespace. Kept as pure functions so their exact text can be read and
 * tested without root.
 */

/**
 * The host's own table. It holds no per-slot rules — everything matches the
 * host veth names by wildcard — so slot setup never touches it and an agent
 * restart can replace it atomically while sandboxes keep running.
 *
 * - input: a sandbox may not open connections to the host itself (its veth
 *   address, the host's other addresses, anything listening); replies to
 *   connections the host opened (the agent talking to envd) come back.
 * - forward: nothing may open connections into a slot through the host (that
 *   covers sandbox → sandbox); a sandbox never reaches the slot ranges, and
 *   reaches the private ranges (the host's LAN, cloud metadata, …; see
 *   PRIVATE_RANGES) only where the operator allowed them (`allowPrivate`,
 *   already parsed and merged) — through whichever interface routes there,
 *   as a LAN may hang off another interface than the default route's.
 *   Everything else goes only out of the egress interface. Private ranges
 *   are rejected, not dropped, so a sandbox's connection fails at once.
 *   This chain runs after the slot's own egress rules, so a sandbox's
 *   allowOut never opens what the operator did not.
 * - postrouting: egress, and traffic to allowed private ranges, is
 *   masqueraded behind the host's address on the way out.
 *
 * The first two commands make loading the script replace the table atomically
 * whether or not it exists.
 */
export function hostTableScript(
  prefix: string,
  egressInterface: string | null,
  allowPrivate: readonly string[] = [],
): string {
  const veths = `"${prefix}-vh-*"`;
  const privateSet = `{ ${PRIVATE_RANGES.join(", ")} }`;
  const allowedSet = `{ ${allowPrivate.join(", ")} }`;
  const allowed = allowPrivate.length === 0 ? [] : [`ip daddr ${allowedSet} accept`];
  const egress = egressInterface === null ? [] : [`oifname "${egressInterface}" accept`];
  const masquerade = [
    ...(allowPrivate.length === 0 ? [] : [`iifname ${veths} ip daddr ${allowedSet} masquerade`]),
    ...(egressInterface === null
      ? []
      : [`iifname ${veths} oifname "${egressInterface}" masquerade`]),
  ];
  return [
    `table inet ${prefix}`,
    `delete table inet ${prefix}`,
    `table inet ${prefix} {`,
    `  chain input {`,
    `    type filter hook input priority filter; policy accept;`,
    `    iifname ${veths} ct state established,related accept`,
    `    iifname ${veths} drop`,
    `  }`,
    `  chain forward {`,
    `    type filter hook forward priority filter; policy accept;`,
    `    oifname ${veths} ct state established,related accept`,
    `    oifname ${veths} drop`,
    `    iifname ${veths} jump sandbox_egress`,
    `  }`,
    `  chain sandbox_egress {`,
    `    ip daddr { ${HOST_ADDRESS_RANGE}, ${VETH_RANGE} } drop`,
    `    meta nfproto ipv6 drop`,
    ...allowed.map((r) => `    ${r}`),
    `    ip daddr ${privateSet} meta l4proto tcp reject with tcp reset`,
    `    ip daddr ${privateSet} reject with icmpx admin-prohibited`,
    ...egress.map((r) => `    ${r}`),
    `    drop`,
    `  }`,
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    ...masquerade.map((r) => `    ${r}`),
    `  }`,
    `}`,
    ``,
  ].join("\n");
}

/** Deletes the host table if it exists (one `nft -f -` transaction). */
export function deleteHostTableScript(prefix: string): string {
  return `table inet ${prefix}\ndelete table inet ${prefix}\n`;
}

/**
 * `ip -batch` lines run on the host: namespace, veth pair, then the claim —
 * the slot's /32 route, which the kernel gives only one agent on the host —
 * and only then the veth address: another agent holding the same index
 * never sees its /31 duplicated on our link, not even for a moment.
 */
export function hostSlotBatch(netns: string, hostVeth: string, addresses: SlotAddresses): string[] {
  return [
    `netns add ${netns}`,
    `link add ${hostVeth} type veth peer name ${NS_VETH_NAME} netns ${netns}`,
    `link set ${hostVeth} up`,
    `route add ${addresses.hostAddress}/32 dev ${hostVeth}`,
    `addr add ${addresses.hostVethIp}/31 dev ${hostVeth}`,
    `route replace ${addresses.hostAddress}/32 via ${addresses.nsVethIp} dev ${hostVeth}`,
  ];
}

/** Lines of `hostSlotBatch` whose "File exists" means the index is held by someone else. */
export const HOST_BATCH_CLAIM_LINES = new Set([1, 2, 4]);

/**
 * A shell script run inside the slot namespace (`nsenter --net=… sh -es`):
 * one process chain instead of one spawn per step. It turns on forwarding
 * (per namespace; `ip` cannot set sysctls), configures veth and TAP, and
 * loads the NAT table:
 * - DNAT: the host's connections to the slot's host address go to the guest;
 * - SNAT: the guest's traffic leaves with the namespace veth address, which
 *   the host can route back (every guest has the same address);
 * - forward: only the guest's own address may leave (no spoofing another
 *   slot's addresses), and only DNATed connections or replies come in.
 *   Every packet of a connection the guest opened first passes the
 *   sandbox's `egress` chain (its allow/deny rules, empty at first; see
 *   `egressScript`), before the established-connection shortcut, so new
 *   rules also cut connections already open. Replies on connections the
 *   host opened (envd, the traffic proxy) are not the guest's egress.
 * The namespace's table lives and dies with the namespace.
 */
export function namespaceScript(prefix: string, addresses: SlotAddresses): string {
  return [
    `echo 1 > /proc/sys/net/ipv4/ip_forward`,
    `ip -batch - <<'WRENN_IP'`,
    `link set lo up`,
    `addr add ${addresses.nsVethIp}/31 dev ${NS_VETH_NAME}`,
    `link set ${NS_VETH_NAME} up`,
    `tuntap add dev ${TAP_NAME} mode tap`,
    `addr add ${TAP_IP}/${TAP_PREFIX} dev ${TAP_NAME}`,
    `link set ${TAP_NAME} address ${TAP_MAC} up`,
    `route add default via ${addresses.hostVethIp} dev ${NS_VETH_NAME}`,
    `WRENN_IP`,
    `nft -f - <<'WRENN_NFT'`,
    `table inet ${prefix} {`,
    `  chain prerouting {`,
    `    type nat hook prerouting priority dstnat; policy accept;`,
    `    iifname "${NS_VETH_NAME}" ip daddr ${addresses.hostAddress} dnat ip to ${GUEST_IP}`,
    `  }`,
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    `    oifname "${NS_VETH_NAME}" ip saddr ${GUEST_IP} snat ip to ${addresses.nsVethIp}`,
    `  }`,
    `  chain egress {`,
    `  }`,
    `  chain forward {`,
    `    type filter hook forward priority filter; policy drop;`,
    `    iifname "${TAP_NAME}" oifname "${NS_VETH_NAME}" ct direction original jump egress`,
    `    ct state established,related accept`,
    `    iifname "${TAP_NAME}" oifname "${NS_VETH_NAME}" ip saddr ${GUEST_IP} accept`,
    `    iifname "${NS_VETH_NAME}" oifname "${TAP_NAME}" ct status dnat accept`,
    `  }`,
    `}`,
    `WRENN_NFT`,
    ``,
  ].join("\n");
}

/**
 * Replaces a slot's egress rules in one `nft -f` transaction (run inside
 * its namespace): the guest never sees a moment with neither the old nor
 * the new rules. allow is matched first, so it wins over deny; what neither
 * names passes. Denied packets are rejected, not dropped, so a connection
 * fails at once instead of hanging until its timeout: TCP with a reset
 * (which also ends a connection opened before the rule, at its next packet),
 * anything else with ICMP admin-prohibited.
 */
export function egressScript(prefix: string, rules: ResolvedEgress): string {
  const set = (cidrs: string[]) => `{ ${cidrs.join(", ")} }`;
  return [
    // Declaring the chain first makes the flush valid whatever the slot's age.
    `table inet ${prefix} {`,
    `  chain egress {`,
    `  }`,
    `}`,
    `flush chain inet ${prefix} egress`,
    ...(rules.allow.length > 0
      ? [`add rule inet ${prefix} egress ip daddr ${set(rules.allow)} accept`]
      : []),
    ...(rules.deny.length > 0
      ? [
          `add rule inet ${prefix} egress ip daddr ${set(rules.deny)} meta l4proto tcp reject with tcp reset`,
          `add rule inet ${prefix} egress ip daddr ${set(rules.deny)} reject with icmpx admin-prohibited`,
        ]
      : []),
    ``,
  ].join("\n");
}
