/**
 * Egress rules without root: entry parsing, CIDR merging, name resolution
 * and the exact nft text (the real-VM test in egress.test.ts runs it).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  egressEntryProblem,
  mergeCidrs,
  parseEgressEntry,
  resolveEgress,
} from "../src/network/egress.ts";
import { egressScript, namespaceScript } from "../src/network/rules.ts";
import { slotAddresses } from "../src/network/addresses.ts";
import { isWrennError } from "@wrenn/shared/errors.ts";

test("entries: IPv4 addresses, CIDRs (host bits cleared) and host names; anything else refused", () => {
  assert.deepEqual(parseEgressEntry("198.18.0.1"), { kind: "cidr", cidr: "198.18.0.1/32" });
  assert.deepEqual(parseEgressEntry("0.0.0.0/0"), { kind: "cidr", cidr: "0.0.0.0/0" });
  assert.deepEqual(parseEgressEntry("10.1.2.3/8"), { kind: "cidr", cidr: "10.0.0.0/8" });
  assert.deepEqual(parseEgressEntry(" 198.18.4.0/22 "), { kind: "cidr", cidr: "198.18.4.0/22" });
  assert.deepEqual(parseEgressEntry("Example.COM."), { kind: "name", name: "example.com" });
  assert.deepEqual(parseEgressEntry("localhost"), { kind: "name", name: "localhost" });
  for (const bad of [
    "",
    "300.1.1.1",
    "10.0.0.0/33",
    "10.0.0/8",
    "1.2.3",
    "::1",
    "2001:db8::/32",
    "-bad.example",
    "a..b",
    "with space.example",
    "http://example.com",
    `${"a".repeat(64)}.example`,
  ]) {
    assert.equal(parseEgressEntry(bad), null, bad);
    assert.match(
      egressEntryProblem(bad) ?? "",
      /is not an IPv4 CIDR, an IPv4 address or a host name/,
    );
  }
});

test("CIDRs are merged: duplicates and nested ones go, order is by address", () => {
  assert.deepEqual(mergeCidrs(["10.0.0.0/8", "10.1.0.0/16", "1.2.3.4/32", "10.0.0.0/8"]), [
    "1.2.3.4/32",
    "10.0.0.0/8",
  ]);
  assert.deepEqual(mergeCidrs(["198.18.1.0/24", "0.0.0.0/0"]), ["0.0.0.0/0"]);
  assert.deepEqual(mergeCidrs(["198.18.1.1/32", "198.18.1.2/32"]), [
    "198.18.1.1/32",
    "198.18.1.2/32",
  ]);
  assert.deepEqual(mergeCidrs([]), []);
});

test("names resolve when the rules are applied; one that does not fails naming it", async () => {
  const resolved = await resolveEgress({
    allowOut: ["localhost", "198.18.0.0/15"],
    denyOut: ["0.0.0.0/0"],
  });
  assert.deepEqual(resolved, { allow: ["127.0.0.1/32", "198.18.0.0/15"], deny: ["0.0.0.0/0"] });
  const lookups: string[] = [];
  const fixed = async (name: string) => {
    lookups.push(name);
    return ["198.18.3.4", "198.18.3.5"];
  };
  assert.deepEqual(await resolveEgress({ allowOut: [], denyOut: ["api.test"] }, fixed), {
    allow: [],
    deny: ["198.18.3.4/32", "198.18.3.5/32"],
  });
  assert.deepEqual(lookups, ["api.test"]);
  const failing = await resolveEgress({ allowOut: [], denyOut: ["nowhere.invalid"] }).catch(
    (e: unknown) => e,
  );
  assert.ok(isWrennError(failing, "invalid_argument"), String(failing));
  assert.match(failing.message, /deny_out: host name 'nowhere\.invalid' does not resolve/);
  const bad = await resolveEgress({ allowOut: ["1.2.3.4/40"], denyOut: [] }).catch(
    (e: unknown) => e,
  );
  assert.ok(isWrennError(bad, "invalid_argument"));
  assert.match(bad.message, /allow_out: '1\.2\.3\.4\/40' is not/);
});

test("nft text: the slot's forward path passes the egress chain; rules replace it in one transaction", () => {
  const ns = namespaceScript("wrenn", slotAddresses(3));
  assert.match(ns, / {2}chain egress \{\n {2}\}\n/);
  // Before the established shortcut, only for connections the guest opened.
  assert.match(
    ns,
    /policy drop;\n\s+iifname "tap0" oifname "veth0" ct direction original jump egress\n\s+ct state established,related accept/,
  );

  assert.equal(
    egressScript("wrenn", { allow: ["198.18.10.1/32"], deny: ["0.0.0.0/0"] }),
    [
      "table inet wrenn {",
      "  chain egress {",
      "  }",
      "}",
      "flush chain inet wrenn egress",
      "add rule inet wrenn egress ip daddr { 198.18.10.1/32 } accept",
      "add rule inet wrenn egress ip daddr { 0.0.0.0/0 } meta l4proto tcp reject with tcp reset",
      "add rule inet wrenn egress ip daddr { 0.0.0.0/0 } reject with icmpx admin-prohibited",
      "",
    ].join("\n"),
  );
  // No rules: the chain is emptied, everything passes.
  assert.equal(
    egressScript("wt1", { allow: [], deny: [] }),
    "table inet wt1 {\n  chain egress {\n  }\n}\nflush chain inet wt1 egress\n",
  );
  const denyOnly = egressScript("wrenn", { allow: [], deny: ["198.18.10.1/32", "198.18.12.0/24"] });
  assert.doesNotMatch(denyOnly, /accept/);
  assert.match(denyOnly, /ip daddr \{ 198\.18\.10\.1\/32, 198\.18\.12\.0\/24 \} reject/);
});
