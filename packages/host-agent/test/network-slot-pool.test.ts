/**
 * The slot pool's bookkeeping without root: when it builds, how many at a
 * time, and what pause, failure and drain do. Builds here are promises the
 * test settles by hand; network-pool.test.ts runs the same pool on real
 * namespaces.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { pino } from "pino";
import { SlotAllocator } from "../src/network/allocator.ts";
import { SlotPool } from "../src/network/slot-pool.ts";

interface Pending {
  resolve: (index: number | null) => void;
  reject: (err: Error) => void;
}

/** A pool whose builds wait for the test; `destroyed` lists what drain tore down. */
function harness(size: number) {
  const pending: Pending[] = [];
  const destroyed: number[] = [];
  const warnings: string[] = [];
  const log = pino(
    { level: "warn" },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        warnings.push(String((JSON.parse(chunk.toString()) as { msg: string }).msg));
        done();
      },
    }),
  );
  const pool = new SlotPool({
    size,
    build: () => new Promise<number | null>((resolve, reject) => pending.push({ resolve, reject })),
    destroy: async (index) => {
      destroyed.push(index);
    },
    log,
  });
  return { pool, pending, destroyed, warnings };
}

const tick = () => new Promise((r) => setImmediate(r));

test("refill builds one slot at a time up to the size; take hands each out once", async () => {
  const { pool, pending } = harness(2);
  pool.refill();
  pool.refill();
  assert.equal(pending.length, 0, "builds start after the taker's own continuation");
  await tick();
  assert.equal(pending.length, 1, "one build at a time");
  pending.shift()?.resolve(7);
  await tick();
  assert.equal(pending.length, 1);
  pending.shift()?.resolve(8);
  await pool.settled();
  assert.deepEqual(pool.ready, [7, 8]);
  assert.equal(pool.building, false);
  pool.refill();
  assert.equal(pending.length, 0, "full: nothing to build");
  assert.deepEqual([pool.take(), pool.take(), pool.take()], [7, 8, undefined]);
});

test("a failed build ends the round with a warning; the next refill tries again", async () => {
  const { pool, pending, warnings } = harness(2);
  pool.refill();
  await tick();
  pending.shift()?.reject(new Error("injected"));
  await pool.settled();
  assert.deepEqual(pool.ready, []);
  assert.equal(pending.length, 0, "no retry loop");
  assert.match(warnings.join("\n"), /network pool refill failed/);
  pool.refill();
  await tick();
  pending.shift()?.resolve(3);
  await tick();
  assert.deepEqual(pool.ready, [3]);
});

test("a build that declines (no index to spare) ends the round", async () => {
  const { pool, pending } = harness(3);
  pool.refill();
  await tick();
  pending.shift()?.resolve(null);
  await pool.settled();
  assert.deepEqual(pool.ready, []);
  assert.equal(pending.length, 0);
});

test("paused: waits for the build in flight, starts none, keeps what it built, refills after", async () => {
  const { pool, pending } = harness(2);
  pool.refill();
  await tick();
  const order: string[] = [];
  const sweep = pool.paused(async () => {
    order.push(`sweep sees ${pool.ready.join(",")}`);
    pool.refill();
    assert.equal(pending.length, 0, "no build starts during the sweep");
  });
  await tick();
  assert.deepEqual(order, [], "the sweep waits for the build in flight");
  pending.shift()?.resolve(5);
  await sweep;
  assert.deepEqual(order, ["sweep sees 5"]);
  await tick();
  assert.equal(pending.length, 1, "refilling again after the sweep");
  pending.shift()?.resolve(6);
  await pool.settled();
  assert.deepEqual(pool.ready, [5, 6]);
});

test("drain waits for the build in flight, tears everything down, and ends refills", async () => {
  const { pool, pending, destroyed } = harness(2);
  pool.refill();
  await tick();
  pending.shift()?.resolve(1);
  await tick();
  const drained = pool.drain();
  pending.shift()?.resolve(2); // finished after the drain began: still torn down
  await drained;
  assert.deepEqual(destroyed.sort(), [1, 2]);
  assert.deepEqual(pool.ready, []);
  pool.refill();
  assert.equal(pending.length, 0, "a drained pool builds nothing");
});

test("remove and has: an index adopted out of the pool is no longer handed out", async () => {
  const { pool, pending } = harness(2);
  pool.refill();
  await tick();
  pending.shift()?.resolve(4);
  await tick();
  pending.shift()?.resolve(9);
  await pool.settled();
  assert.equal(pool.has(4), true);
  assert.equal(pool.remove(4), true);
  assert.equal(pool.remove(4), false);
  assert.equal(pool.has(4), false);
  assert.deepEqual([pool.take(), pool.take()], [9, undefined]);
});

test("size must be a whole number ≥ 0", () => {
  for (const size of [-1, 1.5, Number.NaN]) {
    assert.throws(() => harness(size), RangeError);
  }
  const { pool, pending } = harness(0);
  pool.refill();
  assert.equal(pending.length, 0);
});

test("allocator.available: what take() could still hand out, skipped indexes aside", () => {
  const slots = new SlotAllocator(1, 4);
  assert.equal(slots.available(), 4);
  slots.take();
  assert.equal(slots.available(new Set([1, 2, 9])), 2, "1 is taken already, 9 is out of range");
  slots.mark(3);
  assert.equal(slots.available(new Set([2])), 1);
});
