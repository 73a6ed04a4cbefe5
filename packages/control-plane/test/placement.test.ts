import { test } from "node:test";
import assert from "node:assert/strict";
import { inArray } from "drizzle-orm";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { Db } from "../src/db/open.ts";
import { sandboxes } from "../src/db/schema.ts";
import { Quotas } from "../src/quotas.ts";
import { Placement, type HostRow, type Reservation } from "../src/scheduler.ts";
import { DATABASES, startHarness, type Harness } from "./harness.ts";

const demand = { vcpus: 1, memoryMb: 256, diskSizeMb: 0 };

/** Counts the transactions `db` opens until `restore`. */
function countTransactions(db: Db): { count: () => number; restore: () => void } {
  const original = db.transaction.bind(db);
  let n = 0;
  db.transaction = ((...args: Parameters<Db["transaction"]>) => {
    n++;
    return original(...args);
  }) as Db["transaction"];
  return {
    count: () => n,
    restore: () => {
      db.transaction = original;
    },
  };
}

async function teamOf(h: Harness): Promise<string> {
  return ((await (await h.api("/v1/me")).json()) as { team_id: string }).team_id;
}

/** A create's reservation: a pending row for `id` on the chosen host. */
function pendingRow(teamId: string, id: string): Reservation {
  return {
    insert: (host: HostRow) => ({
      id,
      teamId,
      hostId: host.id,
      template: "minimal",
      status: "pending",
      vcpus: demand.vcpus,
      memoryMb: demand.memoryMb,
      diskSizeMb: 0,
      timeoutSec: 60,
    }),
  };
}

async function rows(db: Db, ids: string[]): Promise<string[]> {
  const found = await db
    .select({ id: sandboxes.id })
    .from(sandboxes)
    .where(inArray(sandboxes.id, ids));
  return found.map((r) => r.id).sort();
}

for (const kind of DATABASES) {
  test(`placement: requests that arrive together share one transaction, each placed against the load of those before it (${kind})`, async () => {
    const h = await startHarness(kind, { agents: 2 });
    const tx = countTransactions(h.cp.db);
    try {
      const teamId = await teamOf(h);
      const placement = new Placement(h.cp.db);
      const ids = Array.from({ length: 6 }, (_, i) => `sb-together-${i}`);
      const placed = await Promise.all(
        ids.map((id) => placement.place({ demand, reservation: pendingRow(teamId, id) })),
      );
      assert.equal(tx.count(), 1, "one transaction for the six");
      const perHost = new Map<string, number>();
      for (const { host, row } of placed) {
        assert.equal(row?.hostId, host.id);
        perHost.set(host.id, (perHost.get(host.id) ?? 0) + 1);
      }
      assert.deepEqual([...perHost.values()], [3, 3], "spread as if placed one by one");
      assert.deepEqual(await rows(h.cp.db, ids), [...ids].sort());

      // One that comes while a transaction runs waits for the next, with the others that came meanwhile.
      let release = () => {};
      const held = new Promise<void>((resolve) => (release = resolve));
      const first = placement.place({
        demand,
        admit: () => held,
        reservation: pendingRow(teamId, "sb-later-0"),
      });
      await new Promise((r) => setTimeout(r, 50));
      const later = ["sb-later-1", "sb-later-2", "sb-later-3"].map((id) =>
        placement.place({ demand, reservation: pendingRow(teamId, id) }),
      );
      release();
      await Promise.all([first, ...later]);
      assert.equal(tx.count(), 3, "the three that waited shared the third transaction");
    } finally {
      tx.restore();
      await h.close();
    }
  });

  test(`placement: a refused request fails alone; a failed transaction rolls back and its requests are placed one by one (${kind})`, async () => {
    const h = await startHarness(kind, { agents: 1 });
    const tx = countTransactions(h.cp.db);
    try {
      const teamId = await teamOf(h);
      const placement = new Placement(h.cp.db);
      const refusal = new WrennError("resource_exhausted", "not this one");
      const ids = ["sb-ok-0", "sb-refused", "sb-ok-1", "sb-too-big"];
      const results = await Promise.allSettled([
        placement.place({ demand, reservation: pendingRow(teamId, ids[0]!) }),
        placement.place({
          demand,
          admit: () => Promise.reject(refusal),
          reservation: pendingRow(teamId, ids[1]!),
        }),
        placement.place({ demand, reservation: pendingRow(teamId, ids[2]!) }),
        placement.place({
          demand: { ...demand, vcpus: 1_000_000 },
          reservation: pendingRow(teamId, ids[3]!),
        }),
      ]);
      assert.deepEqual(
        results.map((r) => r.status),
        ["fulfilled", "rejected", "fulfilled", "rejected"],
      );
      assert.equal((results[1] as PromiseRejectedResult).reason, refusal);
      assert.match(String((results[3] as PromiseRejectedResult).reason), /no host has room/);
      assert.equal(tx.count(), 1, "refusals do not cost the others their transaction");
      assert.deepEqual(await rows(h.cp.db, ids), ["sb-ok-0", "sb-ok-1"]);

      // A row the database refuses (here: no such team) takes the whole transaction with it.
      const again = ["sb-retry-0", "sb-retry-1", "sb-broken", "sb-retry-2"];
      const retried = await Promise.allSettled(
        again.map((id) =>
          placement.place({
            demand,
            reservation: pendingRow(
              id === "sb-broken" ? "00000000-0000-4000-8000-000000000000" : teamId,
              id,
            ),
          }),
        ),
      );
      assert.deepEqual(
        retried.map((r) => r.status),
        ["fulfilled", "fulfilled", "rejected", "fulfilled"],
      );
      assert.equal(tx.count(), 1 + 1 + again.length, "rolled back, then one transaction each");
      assert.deepEqual(
        await rows(h.cp.db, again),
        ["sb-retry-0", "sb-retry-1", "sb-retry-2"],
        "each placed once; the refused one's row rolled back",
      );

      // A resume's row turns pending only if it is still paused.
      await h.cp.db
        .update(sandboxes)
        .set({ status: "paused" })
        .where(inArray(sandboxes.id, ["sb-ok-0"]));
      const [paused, notPaused] = await Promise.all(
        ["sb-ok-0", "sb-ok-1"].map((id) =>
          placement.place({ demand, reservation: { resume: id } }),
        ),
      );
      assert.equal(paused?.row?.status, "pending");
      assert.equal(notPaused?.row, undefined, "sb-ok-1 was pending, not paused: untouched");
      assert.equal(tx.count(), 1 + 1 + again.length + 1);
    } finally {
      tx.restore();
      await h.close();
    }
  });

  test(`quotas: what one transaction admits counts against the rest of it (${kind})`, async () => {
    const h = await startHarness(kind, { agents: 0 });
    try {
      const teamId = await teamOf(h);
      const quotas = new Quotas(h.cp.db, { sandboxes: 2 });
      const one = { sandboxes: 1, vcpus: 1, memoryMb: 256, diskMb: 0 };
      await h.cp.db.transaction(async (t) => {
        await quotas.admit(t, teamId, one);
        await quotas.admit(t, teamId, one);
        await assert.rejects(quotas.admit(t, teamId, one), /running sandboxes exceeded: 2 in use/);
      });
      // Another transaction reads the team afresh: nothing was written, nothing is held.
      await h.cp.db.transaction(async (t) => {
        await quotas.admit(t, teamId, one);
      });
    } finally {
      await h.close();
    }
  });
}
