import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { ENVD_VERSION } from "../src/e2b/mapping.ts";
import { DATABASES, startHarness } from "./harness.ts";
import { e2bCreate, expectError, otherTeamKey, type Json } from "./e2b-helpers.ts";

test("the envd version the API reports is the one envd implements", () => {
  const envdState = readFileSync(new URL("../../envd/src/state.ts", import.meta.url), "utf8");
  assert.match(envdState, new RegExp(`ENVD_VERSION = "${ENVD_VERSION.replace(/\./g, "\\.")}"`));
});

test(
  "E2B create (v2 and legacy): tokens, domain, metadata, env vars, egress rules; the agent keeps no idle timer",
  { timeout: 60_000 },
  async () => {
    const h = await startHarness("pglite", { domain: "sandboxes.example.test" });
    try {
      const before = Date.now();
      const sb = await e2bCreate(h, {
        timeout: 120,
        metadata: { user: "abc", "odd key": "a=b&c" },
        envVars: { FOO: "bar" },
        allow_internet_access: false,
        network: { allowOut: ["10.1.2.3/32", "example.com"], allowPublicTraffic: false },
        autoPause: true,
        autoResume: { enabled: true },
      });
      assert.match(sb.sandboxID, /^[a-z0-9]{16}$/);
      assert.equal(sb.templateID, "minimal", "`base` is the default base template");
      assert.equal(sb.envdVersion, ENVD_VERSION);
      assert.equal(sb.domain, "sandboxes.example.test");
      assert.equal(typeof sb.envdAccessToken, "string");
      assert.ok((sb.envdAccessToken as string).length >= 32);
      assert.equal(typeof sb.trafficAccessToken, "string", "its ports are not public");
      assert.notEqual(sb.trafficAccessToken, sb.envdAccessToken);
      const req = h.agents[0]!.createRequests.get(sb.sandboxID);
      assert.ok(req);
      assert.equal(req.envdAccessToken, sb.envdAccessToken, "envd gets the token in /init");
      assert.deepEqual(req.envVars, { FOO: "bar" });
      assert.equal(req.timeoutSec, 0, "the control plane owns the end, not the agent's idle timer");
      assert.deepEqual(h.agents[0]!.networks.get(sb.sandboxID), {
        allowOut: ["10.1.2.3/32", "example.com"],
        denyOut: ["0.0.0.0/0"],
      });

      const detail = (await (await h.api(`/sandboxes/${sb.sandboxID}`)).json()) as Json;
      assert.equal(detail.sandboxID, sb.sandboxID);
      assert.equal(detail.state, "running");
      assert.equal(detail.envdAccessToken, sb.envdAccessToken);
      assert.equal(detail.domain, "sandboxes.example.test");
      assert.deepEqual(detail.metadata, { user: "abc", "odd key": "a=b&c" });
      assert.equal(detail.cpuCount, 1);
      assert.equal(detail.memoryMB, 512);
      assert.equal(detail.diskSizeMB, 20480);
      assert.equal(detail.allowInternetAccess, false);
      assert.deepEqual(detail.lifecycle, { autoResume: true, onTimeout: "pause" });
      assert.deepEqual(detail.network, {
        allowOut: ["10.1.2.3/32", "example.com"],
        denyOut: ["0.0.0.0/0"],
        allowPublicTraffic: false,
      });
      const endAt = Date.parse(detail.endAt as string);
      assert.ok(endAt >= before + 119_000 && endAt <= Date.now() + 121_000, `${detail.endAt}`);
      assert.ok(Date.parse(detail.startedAt as string) >= before - 1000);

      // Legacy create: not secure unless asked, public ports, SDK's 15 s default timeout.
      const old = await e2bCreate(h, { templateID: "minimal" }, "/sandboxes");
      assert.equal(old.trafficAccessToken, null);
      assert.equal(typeof old.envdAccessToken, "string", "envd asks every sandbox's token");
      const oldDetail = (await (await h.api(`/sandboxes/${old.sandboxID}`)).json()) as Json;
      assert.ok(Date.parse(oldDetail.endAt as string) <= Date.now() + 16_000);
      assert.equal(oldDetail.allowInternetAccess, null);
      assert.deepEqual(oldDetail.lifecycle, { autoResume: false, onTimeout: "kill" });

      // /v1 sandboxes get their own envd token too; E2B's info shows them.
      const v1 = (await (
        await h.api("/v1/sandboxes", { method: "POST", json: {} })
      ).json()) as Json;
      const v1Req = h.agents[0]!.createRequests.get(v1.sandbox_id as string);
      assert.ok(v1Req && v1Req.envdAccessToken.length >= 32);
      assert.equal(v1Req.timeoutSec, 300, "/v1 keeps the agent's idle timeout");
      const tokens = new Set([sb.envdAccessToken, old.envdAccessToken, v1Req.envdAccessToken]);
      assert.equal(tokens.size, 3, "every sandbox has its own token");
      const v1Detail = (await (
        await h.api(`/sandboxes/${v1.sandbox_id as string}`)
      ).json()) as Json;
      assert.equal(v1Detail.envdAccessToken, v1Req.envdAccessToken);
    } finally {
      await h.close();
    }
  },
);

for (const kind of DATABASES)
  test(
    `E2B create errors: unknown template 404, bad bodies 400, never a 500; other teams see 404 (${kind})`,
    { timeout: 60_000 },
    async () => {
      const h = await startHarness(kind);
      try {
        await expectError(
          await h.api("/v2/sandboxes", { method: "POST", json: { templateID: "nope" } }),
          404,
          /template 'nope' not found/,
        );
        const bad: unknown[] = [
          {},
          { templateID: "" },
          { templateID: 5 },
          { templateID: "base", timeout: -1 },
          { templateID: "base", timeout: 1.5 },
          { templateID: "base", timeout: "10" },
          { templateID: "base", metadata: { k: 1 } },
          { templateID: "base", metadata: ["a"] },
          { templateID: "base", envVars: { "1BAD": "x" } },
          { templateID: "base", envVars: { A: "a\u0000b" } },
          { templateID: "base", autoResume: true },
          { templateID: "base", network: { denyOut: ["example.com"] } },
          { templateID: "base", network: { allowOut: ["10.0.0.0/33"] } },
          { templateID: "base", network: { allowOut: ["not a host"] } },
          { templateID: "base", network: { egressProxy: { address: "p:1080" } } },
          { templateID: "base", volumeMounts: [{ name: "v", path: "/data" }] },
          null,
          [],
          "text",
        ];
        for (const json of bad) {
          for (const path of ["/v2/sandboxes", "/sandboxes"]) {
            await expectError(await h.api(path, { method: "POST", json }), 400);
          }
        }
        await expectError(
          await h.api("/v2/sandboxes", {
            method: "POST",
            body: "{",
            headers: { "content-type": "application/json" },
          }),
          400,
        );
        assert.equal(h.agents[0]!.sandboxes.size, 0, "nothing was created");

        // Another team's sandbox does not exist for B, whatever B does with it.
        const sb = await e2bCreate(h);
        const b = await otherTeamKey(h);
        const id = sb.sandboxID;
        for (const [method, path, json] of [
          ["GET", `/sandboxes/${id}`],
          ["DELETE", `/sandboxes/${id}`],
          ["POST", `/sandboxes/${id}/pause`],
          ["POST", `/sandboxes/${id}/resume`, {}],
          ["POST", `/sandboxes/${id}/connect`, { timeout: 10 }],
          ["POST", `/v2/sandboxes/${id}/connect`, {}],
          ["POST", `/sandboxes/${id}/timeout`, { timeout: 10 }],
          ["POST", `/sandboxes/${id}/refreshes`, {}],
          ["GET", `/sandboxes/${id}/metrics`],
          ["PUT", `/sandboxes/${id}/network`, {}],
          ["POST", `/sandboxes/${id}/snapshots`, {}],
          ["POST", `/sandboxes/${id}/fork`, {}],
        ] as const) {
          const res = await h.api(path, { method, key: b, ...(json ? { json } : {}) });
          await expectError(res, 404, /not found/);
        }
        // A's snapshot: B neither lists, resolves nor deletes it.
        const snap = await h.api(`/sandboxes/${id}/snapshots`, {
          method: "POST",
          json: { name: "a-snap" },
        });
        assert.equal(snap.status, 201);
        await expectError(await h.api("/templates/aliases/a-snap", { key: b }), 404);
        await expectError(await h.api("/templates/a-snap", { method: "DELETE", key: b }), 404);
        await expectError(
          await h.api("/v2/sandboxes", { method: "POST", key: b, json: { templateID: "a-snap" } }),
          404,
        );
        assert.deepEqual(await (await h.api("/snapshots", { key: b })).json(), []);
        const bTemplates = (await (await h.api("/templates", { key: b })).json()) as Json[];
        assert.deepEqual(
          bTemplates.map((t) => t.templateID),
          ["minimal"],
        );
        const listed = (await (await h.api("/v2/sandboxes", { key: b })).json()) as Json[];
        assert.deepEqual(listed, []);
        assert.deepEqual(await (await h.api("/sandboxes", { key: b })).json(), []);
        assert.deepEqual(
          h.agents[0]!.calls,
          [`create:${id}`, `resume:${id}`],
          "B's calls never reached the agent (A's snapshot paused and resumed it)",
        );
        assert.equal(((await (await h.api(`/sandboxes/${id}`)).json()) as Json).state, "running");
      } finally {
        await h.close();
      }
    },
  );

for (const kind of DATABASES)
  test(
    `E2B list: metadata, state, template and time filters, order, paging with x-next-token; legacy list shows running ones (${kind})`,
    { timeout: 60_000 },
    async () => {
      const h = await startHarness(kind);
      try {
        const ids: string[] = [];
        for (let i = 0; i < 5; i++) {
          const sb = await e2bCreate(h, {
            metadata: { n: String(i), parity: i % 2 ? "odd" : "even", "a b": "c&d=e" },
          });
          ids.push(sb.sandboxID);
          await new Promise((r) => setTimeout(r, 5));
        }
        for (const id of [ids[1], ids[3]]) {
          assert.equal((await h.api(`/sandboxes/${id}/pause`, { method: "POST" })).status, 204);
        }
        const list = async (query: string) => {
          const res = await h.api(`/v2/sandboxes?${query}`);
          assert.equal(res.status, 200, await res.clone().text());
          const rows = (await res.json()) as Array<{ sandboxID: string; state: string }>;
          return { ids: rows.map((r) => r.sandboxID), rows, next: res.headers.get("x-next-token") };
        };
        const newestFirst = [...ids].reverse();
        assert.deepEqual((await list("")).ids, newestFirst);
        assert.deepEqual((await list("order=asc")).ids, ids);
        // As the SDK sends it: pairs URL-encoded, joined, then the whole value encoded again.
        const metadata = (m: Record<string, string>) =>
          encodeURIComponent(
            new URLSearchParams(
              Object.fromEntries(
                Object.entries(m).map(([k, v]) => [encodeURIComponent(k), encodeURIComponent(v)]),
              ),
            ).toString(),
          );
        assert.deepEqual((await list(`metadata=${metadata({ parity: "odd" })}`)).ids, [
          ids[3],
          ids[1],
        ]);
        assert.deepEqual(
          (await list(`metadata=${metadata({ parity: "even", n: "2", "a b": "c&d=e" })}`)).ids,
          [ids[2]],
        );
        assert.deepEqual((await list(`metadata=${metadata({ parity: "none" })}`)).ids, []);
        assert.deepEqual((await list("state=paused")).ids, [ids[3], ids[1]]);
        assert.deepEqual((await list("state=running")).ids, [ids[4], ids[2], ids[0]]);
        assert.deepEqual((await list("state=running,paused")).ids, newestFirst);
        assert.deepEqual((await list("state=running&state=paused")).ids, newestFirst);
        assert.deepEqual(
          (await list(`state=paused&metadata=${metadata({ n: "3" })}`)).rows.map((r) => r.state),
          ["paused"],
        );
        assert.deepEqual((await list("template=minimal")).ids, newestFirst);
        assert.deepEqual((await list("template=other")).ids, []);
        const detail = (await (await h.api(`/sandboxes/${ids[2]}`)).json()) as {
          startedAt: string;
        };
        assert.deepEqual((await list(`startedAfter=${encodeURIComponent(detail.startedAt)}`)).ids, [
          ids[4],
          ids[3],
        ]);

        // Pages of two, in both orders, follow x-next-token to the end.
        for (const order of ["desc", "asc"]) {
          const seen: string[] = [];
          let token: string | null = null;
          let pages = 0;
          do {
            const page = await list(
              `limit=2&order=${order}${token ? `&nextToken=${encodeURIComponent(token)}` : ""}`,
            );
            seen.push(...page.ids);
            token = page.next;
            pages++;
          } while (token);
          assert.equal(pages, 3);
          assert.deepEqual(seen, order === "desc" ? newestFirst : ids);
        }

        // Legacy list: running only, with the metadata filter.
        const legacy = (await (await h.api("/sandboxes")).json()) as Array<Json>;
        assert.deepEqual(
          legacy.map((r) => r.sandboxID),
          [ids[4], ids[2], ids[0]],
        );
        const first = legacy[0]!;
        assert.deepEqual(Object.keys(first).sort(), [
          "alias",
          "clientID",
          "cpuCount",
          "diskSizeMB",
          "endAt",
          "envdVersion",
          "memoryMB",
          "metadata",
          "sandboxID",
          "startedAt",
          "state",
          "templateID",
        ]);
        assert.ok(!JSON.stringify(legacy).includes("envdAccessToken"), "lists carry no tokens");
        const legacyOdd = (await (
          await h.api(`/sandboxes?metadata=${metadata({ parity: "odd" })}`)
        ).json()) as Json[];
        assert.deepEqual(legacyOdd, []);

        // Killed sandboxes are gone from every list.
        assert.equal((await h.api(`/sandboxes/${ids[4]}`, { method: "DELETE" })).status, 204);
        assert.ok(!(await list("")).ids.includes(ids[4]!));

        for (const q of [
          "state=stopped",
          "state=running,nope",
          "limit=0",
          "limit=101",
          "limit=abc",
          "order=up",
          "nextToken=bm9wZQ",
          "startedAfter=yesterday",
          "metadata=%25zz%3Dx",
          "metadata=%3Dx",
        ]) {
          await expectError(await h.api(`/v2/sandboxes?${q}`), 400);
        }
      } finally {
        await h.close();
      }
    },
  );

for (const kind of DATABASES)
  test(
    `E2B lifecycle: kill 204/404, pause 204 then 409, connect 201 when it resumed and 200 when running, timeout and refreshes (${kind})`,
    { timeout: 60_000 },
    async () => {
      const h = await startHarness(kind);
      try {
        const agent = h.agents[0]!;
        const sb = await e2bCreate(h, { timeout: 600 });
        const id = sb.sandboxID;
        const info = async () => (await (await h.api(`/sandboxes/${id}`)).json()) as Json;
        const endAt = async () => Date.parse((await info()).endAt as string);
        const post = (path: string, json?: unknown) =>
          h.api(path, { method: "POST", ...(json !== undefined ? { json } : {}) });

        assert.equal((await post(`/sandboxes/${id}/pause`)).status, 204);
        assert.equal((await info()).state, "paused");
        await expectError(await post(`/sandboxes/${id}/pause`), 409, /paused/);
        await expectError(await post(`/sandboxes/${id}/timeout`, { timeout: "x" }), 400);

        // connect resumes a paused sandbox (201) with the new timeout...
        const t0 = Date.now();
        const resumed = await post(`/v2/sandboxes/${id}/connect`, { timeout: 30 });
        assert.equal(resumed.status, 201);
        const body = (await resumed.json()) as Json;
        assert.equal(body.sandboxID, id);
        assert.equal(body.envdAccessToken, sb.envdAccessToken, "the token survives a pause");
        assert.equal((await info()).state, "running");
        let end = await endAt();
        assert.ok(end >= t0 + 29_000 && end <= Date.now() + 31_000);
        // ...and on a running one only ever extends it (200).
        const running = await post(`/v2/sandboxes/${id}/connect`, { timeout: 5 });
        assert.equal(running.status, 200);
        assert.equal(await endAt(), end, "a shorter connect timeout does not shorten");
        assert.equal((await post(`/sandboxes/${id}/connect`, { timeout: 100 })).status, 200);
        assert.ok((await endAt()) > end + 60_000);
        await expectError(await post(`/sandboxes/${id}/connect`, {}), 400, /timeout/);
        assert.equal(
          (await post(`/v2/sandboxes/${id}/connect`)).status,
          200,
          "v2's body is optional",
        );

        // timeout sets the end from now, shorter too; refreshes only extend.
        assert.equal((await post(`/sandboxes/${id}/timeout`, { timeout: 50 })).status, 204);
        end = await endAt();
        assert.ok(Math.abs(end - (Date.now() + 50_000)) < 2_000);
        assert.equal((await post(`/sandboxes/${id}/refreshes`, { duration: 10 })).status, 204);
        assert.equal(await endAt(), end);
        assert.equal((await post(`/sandboxes/${id}/refreshes`, { duration: 100 })).status, 204);
        assert.ok((await endAt()) > end + 40_000);
        assert.equal((await post(`/sandboxes/${id}/refreshes`)).status, 204);

        // Legacy resume: 409 while running, 201 when paused.
        await expectError(await post(`/sandboxes/${id}/resume`, {}), 409, /running/);
        assert.equal((await post(`/sandboxes/${id}/pause`)).status, 204);
        const legacy = await post(`/sandboxes/${id}/resume`, { timeout: 40 });
        assert.equal(legacy.status, 201);
        assert.ok(Math.abs((await endAt()) - (Date.now() + 40_000)) < 2_000);
        assert.deepEqual(
          agent.calls.filter((c) => c.endsWith(id)),
          [`create:${id}`, `pause:${id}`, `resume:${id}`, `pause:${id}`, `resume:${id}`],
        );

        assert.equal((await h.api(`/sandboxes/${id}`, { method: "DELETE" })).status, 204);
        assert.equal(agent.sandboxes.size, 0);
        await expectError(await h.api(`/sandboxes/${id}`, { method: "DELETE" }), 404);
        await expectError(await h.api(`/sandboxes/${id}`), 404);
        for (const path of ["pause", "timeout", "connect", "resume"]) {
          await expectError(await post(`/sandboxes/${id}/${path}`, { timeout: 1 }), 404);
        }
        await expectError(await h.api("/sandboxes/nosuchsandbox"), 404);
        await expectError(await h.api("/sandboxes/NOT-an-id"), 400);
      } finally {
        await h.close();
      }
    },
  );
