import assert from "node:assert/strict";
import { test } from "node:test";
import { Gate } from "../src/util/gate.ts";

test("gate: at most its size at once, the rest in arrival order; a failed call frees its slot", async () => {
  const gate = new Gate(2);
  let running = 0;
  let most = 0;
  const started: number[] = [];
  const release: (() => void)[] = [];
  const calls = [0, 1, 2, 3, 4].map((i) =>
    gate.run(async () => {
      started.push(i);
      running++;
      most = Math.max(most, running);
      await new Promise<void>((r) => (release[i] = r));
      running--;
      if (i === 1) throw new Error("call 1 failed");
      return i;
    }),
  );
  const settled = Promise.allSettled(calls);
  const tick = () => new Promise((r) => setImmediate(r));
  await tick();
  assert.deepEqual(started, [0, 1]);
  release[1]?.();
  await tick();
  assert.deepEqual(started, [0, 1, 2], "a failed call kept its slot");
  release[0]?.();
  await tick();
  assert.deepEqual(started, [0, 1, 2, 3]);
  release[2]?.();
  release[3]?.();
  await tick();
  release[4]?.();
  const results = await settled;
  assert.equal(most, 2);
  assert.deepEqual(started, [0, 1, 2, 3, 4]);
  assert.deepEqual(
    results.map((r) => (r.status === "fulfilled" ? r.value : (r.reason as Error).message)),
    [0, "call 1 failed", 2, 3, 4],
  );
  // Free again: a call runs at once.
  assert.equal(await gate.run(async () => "now"), "now");
});
