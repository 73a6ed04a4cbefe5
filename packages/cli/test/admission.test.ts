import { test } from "node:test";
import assert from "node:assert/strict";
import { admissionOptions } from "../src/commands/admission.ts";

test("--overcommit-cpu/--overcommit-memory/--reserve-memory/--trust-proxy become the control plane's options; bad values are one clear error", () => {
  assert.deepEqual(
    admissionOptions({
      "overcommit-cpu": "8",
      "overcommit-memory": "1.5",
      "reserve-memory": "2048",
      "trust-proxy": ["10.0.0.0/8,127.0.0.1", "::1"],
    }),
    {
      overcommit: { cpu: 8, memory: 1.5, reserveMemoryMb: 2048 },
      trustProxy: ["10.0.0.0/8", "127.0.0.1", "::1"],
    },
  );
  const saved = process.env.WRENN_TRUST_PROXY;
  delete process.env.WRENN_TRUST_PROXY;
  try {
    assert.deepEqual(admissionOptions({}), { overcommit: {} });
  } finally {
    if (saved !== undefined) process.env.WRENN_TRUST_PROXY = saved;
  }
  for (const [flag, value] of [
    ["overcommit-cpu", "0"],
    ["overcommit-cpu", "lots"],
    ["overcommit-memory", "-1"],
    ["reserve-memory", "1.5"],
  ] as const) {
    assert.throws(
      () => admissionOptions({ [flag]: value }),
      new RegExp(`--${flag} must be`),
      value,
    );
  }
});
