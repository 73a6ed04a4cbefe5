import { test } from "node:test";
import assert from "node:assert/strict";
import { DATABASES, startHarness, type Harness } from "./harness.ts";
import { expectError } from "./e2b-helpers.ts";

type Json = Record<string, unknown>;
type ErrorJson = { error: { code: string; message: string } };

async function refused(res: Response, pattern: RegExp): Promise<void> {
  const body = (await res.json()) as ErrorJson;
  assert.equal(res.status, 429, JSON.stringify(body));
  assert.equal(body.error.code, "quota_exceeded");
  assert.match(body.error.message, pattern);
}

const create = (
  h: Harness,
  json: Json = {},
  init: { key?: string | null; headers?: Record<string, string> } = {},
) =>
  h.api("/v1/sandboxes", {
    method: "POST",
    json: { vcpus: 2, memory_mb: 512, disk_size_mb: 1024, ...json },
    ...init,
  });

for (const kind of DATABASES) {
  test(
    `team quotas: creates and resumes past a limit answer 429 quota_exceeded naming it; an admin sets a team's limits (${kind})`,
    {
      timeout: 120_000,
    },
    async () => {
      const h = await startHarness(kind, {
        teamQuota: { sandboxes: 2, vcpus: 4, memoryMb: 8192, diskMb: 4096 },
      });
      try {
        const teamId = ((await (await h.api("/v1/me")).json()) as { team_id: string }).team_id;
        const limits = `/v1/admin/teams/${teamId}/limits`;
        // Five at once against a limit of two: the placement lock lets exactly two in.
        const first = await Promise.all([1, 2, 3, 4, 5].map(() => create(h, { vcpus: 1 })));
        const statuses = first.map((r) => r.status).sort();
        assert.deepEqual(statuses, [201, 201, 429, 429, 429]);
        const ids: string[] = [];
        for (const r of first) {
          if (r.status === 201) ids.push(String(((await r.json()) as Json).sandbox_id));
          else await refused(r, /running sandboxes exceeded: 2 in use \+ 1 asked > 2/);
        }
        const [a, b] = ids as [string, string];
        // A paused sandbox does not run: another may start, and then it cannot resume.
        assert.equal((await h.api(`/v1/sandboxes/${a}/pause`, { method: "POST" })).status, 200);
        const c = await create(h, { vcpus: 2 });
        assert.equal(c.status, 201);
        const resume = () => h.api(`/v1/sandboxes/${a}/resume`, { method: "POST", json: {} });
        await refused(await resume(), /running sandboxes exceeded: 2 in use \+ 1 asked > 2/);
        assert.equal(
          ((await (await h.api(`/v1/sandboxes/${a}`)).json()) as Json).status,
          "paused",
          "a refused resume leaves it paused",
        );
        // E2B's create path, in E2B's error shape.
        await expectError(
          await h.api("/sandboxes", { method: "POST", json: { templateID: "minimal" } }),
          429,
          /running sandboxes exceeded/,
        );

        const got = (await (await h.api(limits)).json()) as Json;
        assert.deepEqual(got, {
          team_id: teamId,
          sandboxes: { limit: 2, used: 2, custom: false },
          vcpus: { limit: 4, used: 3, custom: false },
          memory_mb: { limit: 8192, used: 1024, custom: false },
          disk_mb: { limit: 4096, used: 3072, custom: false },
        });
        // More sandboxes, but the vCPUs still do not fit: the message names them.
        const raised = await h.api(limits, { method: "PUT", json: { sandboxes: 5 } });
        assert.equal(raised.status, 200);
        assert.deepEqual(((await raised.json()) as Json).sandboxes, {
          limit: 5,
          used: 2,
          custom: true,
        });
        await refused(await create(h, { vcpus: 2 }), /vCPUs exceeded: 3 in use \+ 2 asked > 4/);
        await h.api(limits, { method: "PUT", json: { vcpus: 8 } });
        assert.equal((await resume()).status, 200);
        // Disks count paused sandboxes too.
        await refused(
          await create(h, { vcpus: 1, disk_size_mb: 2048 }),
          /disk \(MiB\) exceeded: 3072 in use \+ 2048 asked > 4096/,
        );
        await refused(
          await create(h, { vcpus: 1, memory_mb: 8192 }),
          /memory \(MiB\) exceeded: 1536 in use \+ 8192 asked > 8192/,
        );
        // null: back to the default.
        const reset = (await (
          await h.api(limits, { method: "PUT", json: { sandboxes: null, vcpus: null } })
        ).json()) as Json;
        assert.deepEqual(reset.sandboxes, { limit: 2, used: 3, custom: false });
        assert.equal((await h.api(limits, { method: "PUT", json: { vcpus: -1 } })).status, 400);
        assert.equal((await h.api(`/v1/admin/teams/${crypto.randomUUID()}/limits`)).status, 404);

        // Only platform admins see or set limits; another team has its own count.
        const other = await h.api("/v1/auth/signup", {
          method: "POST",
          key: null,
          json: { email: "q@example.com", password: "a long password" },
        });
        const token = ((await other.json()) as { token: string }).token;
        const asOther = { key: null, headers: { authorization: `Bearer ${token}` } };
        assert.equal((await h.api(limits, asOther)).status, 403);
        assert.equal(
          (await h.api(limits, { method: "PUT", ...asOther, json: { sandboxes: 99 } })).status,
          403,
        );
        const theirs = await create(h, {}, asOther);
        assert.equal(theirs.status, 201, "another team's first sandbox is its own");
        void b;
      } finally {
        await h.close();
      }
    },
  );
}
