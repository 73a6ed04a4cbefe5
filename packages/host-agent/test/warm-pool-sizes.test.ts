/**
 * How many entries the warm pool keeps of each source: the size for every
 * template, a template's own size instead, none for a template sized 0.
 * The pool's actions here only count what it asks for; warm-pool.test.ts
 * runs the same pool on real VMs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createLogger } from "@wrenn/shared/log.ts";
import { WarmPool, type PoolOptions, type Recipe } from "../src/sandbox/pool.ts";

const recipe = (template: string): Recipe => ({
  template,
  vcpus: 1,
  memoryMb: 256,
  diskSizeMb: 2048,
});
const keyOf = (template: string) => `template:${template}`;

function poolWith(opts: PoolOptions) {
  const made: string[] = [];
  const destroyed: string[] = [];
  const pool = new WarmPool(
    opts,
    {
      make: async (id, r) => {
        made.push(id);
        return keyOf(r.template);
      },
      destroy: async (id) => {
        destroyed.push(id);
      },
    },
    createLogger("warm-pool-sizes", "warn"),
  );
  return { pool, made, destroyed };
}

/** Three creates of each template in a minute ask for three entries of each. */
function demand(pool: WarmPool, templates: string[]): void {
  for (let i = 0; i < 3; i++) for (const t of templates) pool.wanted(keyOf(t), recipe(t));
}

async function settled(pool: WarmPool, want: Record<string, number>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (JSON.stringify(pool.counts()) !== JSON.stringify(want)) {
    if (Date.now() > deadline) {
      assert.deepEqual(pool.counts(), want, "the pool's entries per source");
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  // Its refills are instant here: one too many would have been made by now.
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(pool.counts(), want, "the pool's entries per source, settled");
}

test("a template's own size replaces the size for all; a template sized 0 keeps none", async () => {
  const { pool, made, destroyed } = poolWith({ size: 2, templates: { python: 1, heavy: 0 } });
  assert.equal(pool.sizeOf("minimal"), 2);
  assert.equal(pool.sizeOf("python"), 1);
  assert.equal(pool.sizeOf("heavy"), 0);
  demand(pool, ["minimal", "python", "heavy"]);
  await settled(pool, { [keyOf("minimal")]: 2, [keyOf("python")]: 1 });
  assert.equal(made.length, 3);
  await pool.close();
  assert.deepEqual(destroyed.sort(), made.sort(), "closing destroys every entry");
});

test("with no size for all, only templates of their own keep entries", async () => {
  const { pool, made } = poolWith({ size: 0, templates: { python: 2 } });
  assert.equal(pool.enabled, true);
  demand(pool, ["minimal", "python"]);
  await settled(pool, { [keyOf("python")]: 2 });
  assert.equal(made.length, 2);
  await pool.close();
});

test("sizes of 0 everywhere turn the pool off", () => {
  assert.equal(poolWith({ size: 0 }).pool.enabled, false);
  assert.equal(poolWith({ size: 0, templates: { python: 0 } }).pool.enabled, false);
  assert.equal(poolWith({ size: 1, templates: { python: 0 } }).pool.enabled, true);
});
