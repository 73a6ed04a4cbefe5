import { test } from "node:test";
import assert from "node:assert/strict";
import { isWrennError } from "@wrenn/shared/errors.ts";
import { poolsOf } from "../src/commands/host-agent.ts";

test("--network-pool/--warm-pool/--standby-vmms become the agent's pool sizes; a bad value is one clear error naming its flag", () => {
  assert.deepEqual(poolsOf({ "network-pool": "3", "warm-pool": " 0 ", "standby-vmms": "4" }), {
    networkPool: 3,
    warmPool: 0,
    warmPoolTemplates: {},
    standbyVmms: 4,
  });
  for (const [flag, value, max] of [
    ["network-pool", "-1", 64],
    ["network-pool", "65", 64],
    ["warm-pool", "1.5", 16],
    ["warm-pool", "17", 16],
    ["warm-pool", "many", 16],
    ["standby-vmms", "17", 16],
    ["standby-vmms", "one", 16],
  ] as const) {
    const values = { "network-pool": "2", "warm-pool": "2", "standby-vmms": "1", [flag]: value };
    assert.throws(
      () => poolsOf(values),
      (err: unknown) =>
        isWrennError(err) &&
        err.code === "invalid_argument" &&
        err.message.startsWith(`--${flag} must be a whole number from 0 to ${max}`),
      `${flag}=${value}`,
    );
  }
});

test("--warm-pool sizes templates of their own after the size for all; a bad one is one clear error", () => {
  assert.deepEqual(
    poolsOf({
      "network-pool": "2",
      "warm-pool": "1,python=6, big-snap.v2 =0",
      "standby-vmms": "0",
    }),
    {
      networkPool: 2,
      warmPool: 1,
      warmPoolTemplates: { python: 6, "big-snap.v2": 0 },
      standbyVmms: 0,
    },
  );
  // Only templates of their own: the rest keep none.
  const own = { "network-pool": "2", "warm-pool": "0,python=3", "standby-vmms": "1" };
  assert.deepEqual(poolsOf(own).warmPoolTemplates, {
    python: 3,
  });
  for (const [value, message] of [
    ["2,python", "'python' is not TEMPLATE=N"],
    ["2,=3", "'=3' is not TEMPLATE=N"],
    ["2,../etc=1", "'../etc=1' is not TEMPLATE=N"],
    ["2,python=1,python=2", "names template 'python' twice"],
    ["2,python=17", "--warm-pool's python must be a whole number from 0 to 16"],
    ["2,python=x", "--warm-pool's python must be a whole number from 0 to 16"],
    [",python=1", "--warm-pool must be a whole number from 0 to 16"],
  ] as const) {
    assert.throws(
      () => poolsOf({ "network-pool": "2", "warm-pool": value, "standby-vmms": "1" }),
      (err: unknown) =>
        isWrennError(err) && err.code === "invalid_argument" && err.message.includes(message),
      value,
    );
  }
});
