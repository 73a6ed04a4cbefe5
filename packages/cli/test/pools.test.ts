import { test } from "node:test";
import assert from "node:assert/strict";
import { isWrennError } from "@wrenn/shared/errors.ts";
import { poolsOf } from "../src/commands/host-agent.ts";

test("--network-pool/--warm-pool become the agent's pool sizes; a bad value is one clear error naming its flag", () => {
  assert.deepEqual(poolsOf({ "network-pool": "3", "warm-pool": " 0 " }), {
    networkPool: 3,
    warmPool: 0,
  });
  for (const [flag, value, max] of [
    ["network-pool", "-1", 64],
    ["network-pool", "65", 64],
    ["warm-pool", "1.5", 16],
    ["warm-pool", "17", 16],
    ["warm-pool", "many", 16],
  ] as const) {
    const values = { "network-pool": "2", "warm-pool": "2", [flag]: value };
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
