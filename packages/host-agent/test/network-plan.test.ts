/**
 * The parts of sandbox networking that need no root: address arithmetic,
 * names, the allocator, the generated scripts and `ip` error parsing. The
 * behaviour on a real host is in network.test.ts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { CommandError } from "@wrenn/shared/command.ts";
import { isWrennError } from "@wrenn/shared/errors.ts";
import {
  LAST_INDEX,
  checkPrefix,
  indexFromName,
  slotAddresses,
  slotNames,
} from "../src/network/addresses.ts";
import { SlotAllocator } from "../src/network/allocator.ts";
import { failedBatchLine, saysFileExists } from "../src/network/ip.ts";
import { hostSlotBatch, hostTableScript, namespaceScript } from "../src/network/rules.ts";
import { createNetworkManager } from "../src/network/netns-network.ts";

test("slot addresses: /31 veth pairs and host addresses across the whole /16", () => {
  assert.deepEqual(slotAddresses(1), {
    hostVethIp: "10.12.0.2",
    nsVethIp: "10.12.0.3",
    hostAddress: "10.11.0.1",
  });
  assert.deepEqual(slotAddresses(127), {
    hostVethIp: "10.12.0.254",
    nsVethIp: "10.12.0.255",
    hostAddress: "10.11.0.127",
  });
  // Past one /24 the pairs continue into the next, never overlapping.
  assert.deepEqual(slotAddresses(128), {
    hostVethIp: "10.12.1.0",
    nsVethIp: "10.12.1.1",
    hostAddress: "10.11.0.128",
  });
  assert.deepEqual(slotAddresses(LAST_INDEX), {
    hostVethIp: "10.12.255.254",
    nsVethIp: "10.12.255.255",
    hostAddress: "10.11.127.255",
  });
  for (const bad of [0, -1, LAST_INDEX + 1, 1.5]) {
    assert.throws(
      () => slotAddresses(bad),
      (e) => isWrennError(e, "invalid_argument"),
    );
  }
});

test("names fit in an interface name and parse back to the index", () => {
  const names = slotNames("wrenn", LAST_INDEX);
  assert.deepEqual(names, { netns: "wrenn-ns-32767", hostVeth: "wrenn-vh-32767" });
  assert.ok(names.hostVeth.length <= 15);
  assert.equal(indexFromName("wrenn", "vh", "wrenn-vh-42"), 42);
  assert.equal(indexFromName("wrenn", "ns", "wrenn-ns-7"), 7);
  for (const other of ["wrenn-ns-7", "wrenn-vh-", "wrenn-vh-01", "wrenn-vh-99999", "wnt-vh-3"]) {
    assert.equal(indexFromName("wrenn", "vh", other), null, other);
  }
  assert.equal(checkPrefix("wnt1"), "wnt1");
  for (const bad of ["", "Wrenn", "wrenn-x", "toolong1", "1abc"]) {
    assert.throws(
      () => checkPrefix(bad),
      (e) => isWrennError(e, "invalid_argument"),
      bad,
    );
  }
  assert.throws(() => createNetworkManager({ prefix: "bad-prefix" }));
});

test("allocator: smallest free index, reuse after free, skip, exhaustion", () => {
  const slots = new SlotAllocator(1, 3);
  assert.deepEqual([slots.take(), slots.take()], [1, 2]);
  slots.free(1);
  assert.equal(slots.take(), 1);
  assert.throws(
    () => slots.take(new Set([3])),
    (e) => isWrennError(e, "resource_exhausted"),
  );
  assert.equal(slots.take(), 3);
});

test("allocator: exhaustion says what to do", () => {
  const slots = new SlotAllocator(5, 6);
  assert.equal(slots.take(new Set([5])), 6);
  assert.throws(
    () => slots.take(new Set([5])),
    (e) => isWrennError(e, "resource_exhausted") && /held by other processes/.test(e.message),
  );
  assert.equal(slots.mark(5), true);
  assert.equal(slots.mark(5), false);
  assert.deepEqual(slots.taken, [5, 6]);
  assert.equal(slots.inRange(7), false);
});

test("ip -batch failures: which line, and whether it was a name clash", () => {
  const err = new CommandError(
    "ip -batch -",
    1,
    'Cannot create namespace file "/run/netns/wrenn-ns-1": File exists\nCommand failed -:1\n',
  );
  assert.equal(failedBatchLine(err), 1);
  assert.equal(saysFileExists(err), true);
  assert.equal(failedBatchLine(new Error("x")), null);
  assert.equal(failedBatchLine(new CommandError("ip", 1, "RTNETLINK answers: busy")), null);
});

test("scripts: host batch, namespace NAT and host isolation rules", () => {
  const a = slotAddresses(3);
  assert.deepEqual(hostSlotBatch("wrenn-ns-3", "wrenn-vh-3", a), [
    "netns add wrenn-ns-3",
    "link add wrenn-vh-3 type veth peer name veth0 netns wrenn-ns-3",
    "link set wrenn-vh-3 up",
    "route add 10.11.0.3/32 dev wrenn-vh-3",
    "addr add 10.12.0.6/31 dev wrenn-vh-3",
    "route replace 10.11.0.3/32 via 10.12.0.7 dev wrenn-vh-3",
  ]);
  const ns = namespaceScript("wrenn", a);
  assert.match(ns, /^echo 1 > \/proc\/sys\/net\/ipv4\/ip_forward$/m);
  assert.match(ns, /tuntap add dev tap0 mode tap/);
  assert.match(ns, /addr add 169\.254\.0\.22\/30 dev tap0/);
  assert.match(ns, /route add default via 10\.12\.0\.6 dev veth0/);
  assert.match(ns, /iifname "veth0" ip daddr 10\.11\.0\.3 dnat ip to 169\.254\.0\.21/);
  assert.match(ns, /oifname "veth0" ip saddr 169\.254\.0\.21 snat ip to 10\.12\.0\.7/);

  const host = hostTableScript("wrenn", "eth0");
  // Loading it replaces the table atomically whether or not it exists.
  assert.match(host, /^table inet wrenn\ndelete table inet wrenn\ntable inet wrenn \{/);
  assert.match(
    host,
    /iifname "wrenn-vh-\*" ct state established,related accept\n\s+iifname "wrenn-vh-\*" drop/,
  );
  assert.match(host, /oifname "wrenn-vh-\*" drop/);
  assert.match(host, /iifname "wrenn-vh-\*" oifname "eth0" masquerade/);
  const noEgress = hostTableScript("wrenn", null);
  assert.doesNotMatch(noEgress, /masquerade|oifname "eth0"/);
});
