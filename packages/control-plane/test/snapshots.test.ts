import { test } from "node:test";
import assert from "node:assert/strict";
import { DATABASES, startHarness } from "./harness.ts";

type Json = Record<string, unknown>;

for (const kind of DATABASES) {
  test(`snapshots: create, duplicate names, overwrite, list, delete, admin view (${kind})`, async () => {
    const h = await startHarness(kind);
    try {
      const mk = async () =>
        String(
          ((await (await h.api("/v1/sandboxes", { method: "POST", json: {} })).json()) as Json)
            .sandbox_id,
        );
      const s1 = await mk();
      const snap = await h.api("/v1/snapshots", {
        method: "POST",
        json: { sandbox_id: s1, name: "py.v1" },
      });
      assert.equal(snap.status, 201);
      const tpl = (await snap.json()) as Json;
      assert.equal(tpl.type, "snapshot");
      assert.equal(tpl.name, "py.v1");
      const s1Status = ((await (await h.api(`/v1/sandboxes/${s1}`)).json()) as Json).status;
      assert.equal(s1Status, "paused", "the snapshotted sandbox is paused and stays paused");

      const s2 = await mk();
      const dup = await h.api("/v1/snapshots", {
        method: "POST",
        json: { sandbox_id: s2, name: "py.v1" },
      });
      assert.equal(dup.status, 409);
      const over = await h.api("/v1/snapshots?overwrite=true", {
        method: "POST",
        json: { sandbox_id: s2, name: "py.v1" },
      });
      assert.equal(over.status, 201);
      const unnamed = await h.api("/v1/snapshots", {
        method: "POST",
        json: { sandbox_id: await mk() },
      });
      assert.equal(unnamed.status, 201);
      const badName = await h.api("/v1/snapshots", {
        method: "POST",
        json: { sandbox_id: s2, name: ".hidden" },
      });
      assert.equal(badName.status, 400);
      const longName = await h.api("/v1/snapshots", {
        method: "POST",
        json: { sandbox_id: s2, name: "a".repeat(65) },
      });
      assert.equal(longName.status, 400);

      const all = (await (await h.api("/v1/snapshots")).json()) as Json[];
      assert.equal(all.length, 3);
      const snapsOnly = (await (await h.api("/v1/snapshots?type=snapshot")).json()) as Json[];
      assert.equal(snapsOnly.length, 2);
      assert.equal((await h.api("/v1/snapshots?type=weird")).status, 400);

      // Start from the template; platform templates are visible to other teams, snapshots are not.
      const fromTpl = await h.api("/v1/sandboxes", { method: "POST", json: { template: "py.v1" } });
      assert.equal(fromTpl.status, 201);
      const other = await h.api("/v1/auth/signup", {
        method: "POST",
        key: null,
        json: { email: "o@example.com", password: "a long password" },
      });
      const otherToken = ((await other.json()) as { token: string }).token;
      const asOther = { key: null, headers: { authorization: `Bearer ${otherToken}` } };
      const theirs = (await (await h.api("/v1/snapshots", asOther)).json()) as Json[];
      assert.deepEqual(
        theirs.map((t) => [t.name, t.type, t.team_id]),
        [["minimal", "base", "00000000-0000-0000-0000-000000000000"]],
        "the platform team's templates, and none of another team's",
      );
      // The other team's own snapshot: theirs to see, the admin's to see in the admin list only.
      const otherSandbox = await h.api("/v1/sandboxes", { method: "POST", ...asOther, json: {} });
      const otherId = ((await otherSandbox.json()) as Json).sandbox_id;
      const otherSnap = await h.api("/v1/snapshots", {
        method: "POST",
        ...asOther,
        json: { sandbox_id: otherId, name: "theirs.v1" },
      });
      assert.equal(otherSnap.status, 201);
      const taken = await h.api("/v1/snapshots?overwrite=true", {
        method: "POST",
        json: { sandbox_id: s2, name: "theirs.v1" },
      });
      assert.equal(taken.status, 409, "another team's name is taken, even with overwrite");
      const mine = (await (await h.api("/v1/snapshots")).json()) as Json[];
      assert.ok(!mine.some((t) => t.name === "theirs.v1"));
      const steal = await h.api("/v1/sandboxes", {
        method: "POST",
        ...asOther,
        json: { template: "py.v1" },
      });
      assert.equal(steal.status, 404);
      const squat = await h.api("/v1/snapshots/py.v1", { method: "DELETE", ...asOther });
      assert.equal(squat.status, 404);
      const admin = (await (await h.api("/v1/admin/templates")).json()) as Json[];
      assert.deepEqual(
        admin.map((t) => t.name).sort(),
        [
          "minimal",
          "py.v1",
          String(((await unnamed.clone().json()) as Json).name),
          "theirs.v1",
        ].sort(),
        "every team's templates",
      );
      const teams = new Set(admin.map((t) => t.team_id));
      assert.equal(teams.size, 3, "the platform's, this team's and the other team's");
      assert.equal((await h.api("/v1/admin/templates", asOther)).status, 403);

      assert.equal((await h.api("/v1/snapshots/minimal", { method: "DELETE" })).status, 403);
      assert.equal((await h.api("/v1/snapshots/py.v1", { method: "DELETE" })).status, 204);
      assert.equal(h.agents[0]!.templates.has("py.v1"), false, "the agent's files are deleted too");
      assert.equal((await h.api("/v1/snapshots/py.v1", { method: "DELETE" })).status, 404);
    } finally {
      await h.close();
    }
  });
}

for (const kind of DATABASES) {
  test(
    `snapshots: two teams racing for one new name: one gets it, the other 409, nobody gets the other's files (${kind})`,
    {
      timeout: 120_000,
    },
    async () => {
      const h = await startHarness(kind);
      try {
        const other = await h.api("/v1/auth/signup", {
          method: "POST",
          key: null,
          json: { email: "racer@example.com", password: "a long password" },
        });
        const otherToken = ((await other.json()) as { token: string }).token;
        const asOther = { key: null, headers: { authorization: `Bearer ${otherToken}` } };
        const mine = (await (
          await h.api("/v1/sandboxes", { method: "POST", json: {} })
        ).json()) as Json;
        const theirs = (await (
          await h.api("/v1/sandboxes", { method: "POST", ...asOther, json: {} })
        ).json()) as Json;
        // Both requests pass any check before either reaches the agent.
        h.agents[0]!.snapshotDelayMs = 300;
        for (let round = 0; round < 3; round++) {
          const name = `race.v${round}`;
          const [a, b] = await Promise.all([
            h.api("/v1/snapshots?overwrite=true", {
              method: "POST",
              json: { sandbox_id: mine.sandbox_id, name },
            }),
            h.api("/v1/snapshots?overwrite=true", {
              method: "POST",
              ...asOther,
              json: { sandbox_id: theirs.sandbox_id, name },
            }),
          ]);
          const statuses = [a.status, b.status].sort();
          assert.deepEqual(statuses, [201, 409], `round ${round}: one team gets the name`);
          const winner = (await (a.status === 201 ? a : b).json()) as Json;
          const loserBody = (await (a.status === 201 ? b : a).json()) as { error: Json };
          assert.equal(loserBody.error.code, "already_exists");
          const winnerSandbox = a.status === 201 ? mine.sandbox_id : theirs.sandbox_id;
          assert.equal(
            h.agents[0]!.snapshotSources.get(name),
            winnerSandbox,
            "the files under the name are the winner's sandbox's",
          );
          const rows = (await (await h.api("/v1/admin/templates")).json()) as Json[];
          const row = rows.find((t) => t.name === name);
          assert.equal(row?.team_id, winner.team_id, "the row is the winner's team's");
          // Resume both sandboxes for the next round (a snapshot leaves them paused).
          for (const [id, as] of [
            [mine.sandbox_id, {}],
            [theirs.sandbox_id, asOther],
          ] as const) {
            const st = ((await (await h.api(`/v1/sandboxes/${id}`, as)).json()) as Json).status;
            if (st === "paused") {
              const r = await h.api(`/v1/sandboxes/${id}/resume`, {
                method: "POST",
                ...as,
                json: {},
              });
              assert.equal(r.status, 200);
            }
          }
        }
      } finally {
        await h.close();
      }
    },
  );
}
