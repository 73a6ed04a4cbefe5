import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { startFakeAgent } from "./fake-agent.ts";
import { DATABASES, startHarness, type Harness } from "./harness.ts";

type Json = Record<string, unknown>;

/** The status a WebSocket handshake is refused with (0 if it opened). */
function handshakeStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
    ws.on("open", () => {
      ws.close();
      resolve(0);
    });
    ws.on("error", () => {});
  });
}

async function signup(h: Harness, email: string) {
  const res = await h.api("/v1/auth/signup", {
    method: "POST",
    key: null,
    json: { email, password: "a long password" },
  });
  assert.equal(res.status, 201, await res.clone().text());
  const body = (await res.json()) as {
    token: string;
    user: { is_admin: boolean };
    team: { id: string };
  };
  const key = await h.api("/v1/api-keys", {
    method: "POST",
    key: null,
    headers: { authorization: `Bearer ${body.token}` },
    json: { name: "k" },
  });
  return { ...body, key: ((await key.json()) as { key: string }).key };
}

for (const kind of DATABASES) {
  test(`users, sessions, API keys and team isolation (${kind})`, async () => {
    const h = await startHarness(kind);
    try {
      // Signing up again with the same email is refused; login checks the password.
      const dup = await h.api("/v1/auth/signup", {
        method: "POST",
        key: null,
        json: { email: "x@example.com", password: "a long password" },
      });
      assert.equal(dup.status, 201);
      const dup2 = await h.api("/v1/auth/signup", {
        method: "POST",
        key: null,
        json: { email: "X@example.com", password: "a long password" },
      });
      assert.equal(dup2.status, 409);
      const short = await h.api("/v1/auth/signup", {
        method: "POST",
        key: null,
        json: { email: "y@example.com", password: "short" },
      });
      assert.equal(short.status, 400);
      const bad = await h.api("/v1/auth/login", {
        method: "POST",
        key: null,
        json: { email: "x@example.com", password: "wrong password" },
      });
      assert.equal(bad.status, 401);
      const good = await h.api("/v1/auth/login", {
        method: "POST",
        key: null,
        json: { email: "x@example.com", password: "a long password" },
      });
      assert.equal(good.status, 200);
      const session = ((await good.json()) as { token: string }).token;
      const me = await h.api("/v1/me", {
        key: null,
        headers: { authorization: `Bearer ${session}` },
      });
      const meBody = (await me.json()) as { is_admin: boolean; role: string; teams: unknown[] };
      assert.equal(meBody.is_admin, false, "only the first user is an admin");
      assert.equal(meBody.role, "owner");
      assert.equal(meBody.teams.length, 1);
      const forged = await h.api("/v1/me", {
        key: null,
        headers: { authorization: `Bearer ${session}x` },
      });
      assert.equal(forged.status, 401);

      // Keys: e2b_ + 40 hex (E2B's SDKs accept them), shown once, listed by prefix, last use recorded, revocable.
      const created = await h.api("/v1/api-keys", {
        method: "POST",
        key: null,
        headers: { authorization: `Bearer ${session}` },
        json: { name: "ci" },
      });
      const k = (await created.json()) as { id: string; key: string; prefix: string };
      assert.match(k.key, /^e2b_[0-9a-f]{40}$/);
      assert.ok(k.key.startsWith(k.prefix));
      assert.equal((await h.api("/v1/me", { key: k.key })).status, 200);
      const listed = (await (await h.api("/v1/api-keys", { key: k.key })).json()) as Array<
        Record<string, unknown>
      >;
      const entry = listed.find((e) => e.id === k.id);
      assert.ok(entry);
      assert.equal(entry.key, undefined, "the key is never shown again");
      assert.ok(!JSON.stringify(listed).includes(k.key));
      // last_used_at is written in the background of the request that used it.
      let lastUsed: unknown = null;
      for (let i = 0; i < 50 && !lastUsed; i++) {
        const rows = (await (await h.api("/v1/api-keys", { key: k.key })).json()) as Array<
          Record<string, unknown>
        >;
        lastUsed = rows.find((e) => e.id === k.id)?.last_used_at;
        if (!lastUsed) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(lastUsed, "last_used_at is recorded");
      assert.equal(
        (await h.api(`/v1/api-keys/${k.id}`, { method: "DELETE", key: k.key })).status,
        204,
      );
      const revoked = await h.api("/v1/me", { key: k.key });
      assert.equal(revoked.status, 401);
      assert.equal(
        ((await revoked.json()) as { error: { code: string } }).error.code,
        "unauthenticated",
      );
      assert.equal((await h.api("/v1/me", { key: "wrn_nope" })).status, 401);
      assert.equal((await h.api("/v1/me", { key: "e2b_nope" })).status, 401);
      assert.equal((await h.api("/v1/me", { key: null })).status, 401);
    } finally {
      await h.close();
    }
  });

  test(`team isolation on every route: another team can neither see nor touch (${kind})`, async () => {
    const h = await startHarness(kind);
    try {
      // Team A (the harness's admin): running and paused sandboxes, a snapshot, a key, members.
      const me = (await (await h.api("/v1/me")).json()) as {
        team_id: string;
        user: { id: string };
      };
      const mk = async (json: Json = {}) => {
        const res = await h.api("/v1/sandboxes", { method: "POST", json });
        assert.equal(res.status, 201);
        return String(((await res.json()) as Json).sandbox_id);
      };
      const run = await mk({ client_request_id: "shared-request" });
      const paused = await mk();
      await h.api(`/v1/sandboxes/${paused}/pause`, { method: "POST" });
      const snapSource = await mk();
      const snap = await h.api("/v1/snapshots", {
        method: "POST",
        json: { sandbox_id: snapSource, name: "a-snap" },
      });
      assert.equal(snap.status, 201);
      const form = new FormData();
      form.set("path", "/a-file");
      form.set("file", new Blob(["team A's"]));
      await h.api(`/v1/sandboxes/${run}/files/write`, { method: "POST", body: form });
      const keyIds = ((await (await h.api("/v1/api-keys")).json()) as Json[]).map((k) => k.id);
      const inviteId = String(
        ((await (await h.api("/v1/invites", { method: "POST", json: {} })).json()) as Json).id,
      );
      const hostId = String(((await (await h.api("/v1/admin/hosts")).json()) as Json[])[0]?.id);
      const stateOfA = async () => ({
        sandboxes: await (await h.api("/v1/sandboxes")).json(),
        snapshots: await (await h.api("/v1/snapshots")).json(),
        // A's own reads move last_used_at when the walk takes over 5 s (a loaded host).
        keys: ((await (await h.api("/v1/api-keys")).json()) as Json[]).map(
          ({ last_used_at: _, ...k }) => k,
        ),
        members: await (await h.api(`/v1/teams/${me.team_id}/members`)).json(),
        invites: await (await h.api("/v1/invites")).json(),
        hosts: await (await h.api("/v1/admin/hosts")).json(),
      });
      const before = await stateOfA();
      const agentCalls = h.agents[0]!.calls.length;

      // Team B: an ordinary user, by API key and by session.
      const other = await signup(h, "other@example.com");
      const asB = [
        { key: other.key },
        { key: null, headers: { authorization: `Bearer ${other.token}` } },
      ];
      const covered = new Set<string>();
      const call = async (
        method: string,
        route: string,
        path: string,
        json: unknown,
        expect: number[],
      ) => {
        covered.add(`${method} ${route}`);
        for (const creds of asB) {
          const init: RequestInit & { key?: string | null; json?: unknown } = { method, ...creds };
          if (json instanceof FormData) init.body = json;
          else if (json !== undefined) init.json = json;
          const res = await h.api(path, init);
          const text = await res.text();
          assert.ok(
            expect.includes(res.status),
            `${method} ${path} as team B (${creds.key ? "key" : "session"}) → ${res.status} ${text}`,
          );
          if (res.status >= 400) {
            assert.deepEqual(Object.keys(JSON.parse(text) as object), ["error"]);
          }
        }
      };
      const files = new FormData();
      files.set("path", "/a-file");
      files.set("file", new Blob(["team B's"]));
      const denied = [404];
      for (const id of [run, paused]) {
        await call("GET", "/v1/sandboxes/{id}", `/v1/sandboxes/${id}`, undefined, denied);
        await call("DELETE", "/v1/sandboxes/{id}", `/v1/sandboxes/${id}`, undefined, denied);
        for (const action of ["ping", "pause", "resume"]) {
          const route = `/v1/sandboxes/{id}/${action}`;
          await call("POST", route, `/v1/sandboxes/${id}/${action}`, undefined, denied);
        }
        const exec = { cmd: "id" };
        await call("POST", "/v1/sandboxes/{id}/exec", `/v1/sandboxes/${id}/exec`, exec, denied);
        const read = { path: "/a-file" };
        const readPath = `/v1/sandboxes/${id}/files/read`;
        await call("POST", "/v1/sandboxes/{id}/files/read", readPath, read, denied);
        const writePath = `/v1/sandboxes/${id}/files/write`;
        await call("POST", "/v1/sandboxes/{id}/files/write", writePath, files, denied);
        // The dashboard's routes: listing, directories, removal, metrics.
        const listPath = `/v1/sandboxes/${id}/files/list?path=/`;
        await call("GET", "/v1/sandboxes/{id}/files/list", listPath, undefined, denied);
        for (const action of ["mkdir", "remove"]) {
          const route = `/v1/sandboxes/{id}/files/${action}`;
          const path = `/v1/sandboxes/${id}/files/${action}`;
          await call("POST", route, path, { path: "/tmp/b" }, denied);
        }
        const metrics = `/v1/sandboxes/${id}/metrics`;
        await call("GET", "/v1/sandboxes/{id}/metrics", metrics, undefined, denied);
        const logs = `/v1/sandboxes/${id}/logs`;
        await call("GET", "/v1/sandboxes/{id}/logs", logs, undefined, denied);
        const steal = { sandbox_id: id, name: "b-steal" };
        await call("POST", "/v1/snapshots", "/v1/snapshots", steal, denied);
        // The exec and terminal WebSockets: the handshake is refused the same way.
        const sockets = [
          ["exec/stream", [`?api_key=${other.key}`, `?token=${other.token}`]],
          // The dashboard's terminal takes a session only.
          ["terminal", [`?token=${other.token}`]],
        ] as const;
        for (const [socket, queries] of sockets) {
          covered.add(`GET /v1/sandboxes/{id}/${socket}`);
          for (const query of queries) {
            const url = `${h.cp.url.replace("http", "ws")}/v1/sandboxes/${id}/${socket}${query}`;
            assert.equal(await handshakeStatus(url), 404, `${socket} of A's sandbox ${query}`);
          }
        }
      }
      // Another team's snapshot is neither a template nor deletable; its names stay taken.
      await call("POST", "/v1/sandboxes", "/v1/sandboxes", { template: "a-snap" }, denied);
      await call("DELETE", "/v1/snapshots/{name}", "/v1/snapshots/a-snap", undefined, denied);
      // The same client request id in another team is another sandbox.
      const sameRequest = await h.api("/v1/sandboxes", {
        method: "POST",
        key: other.key,
        json: { client_request_id: "shared-request" },
      });
      assert.equal(sameRequest.status, 201);
      assert.notEqual(((await sameRequest.json()) as Json).sandbox_id, run);
      // Keys, teams and members of A.
      for (const id of keyIds) {
        await call("DELETE", "/v1/api-keys/{id}", `/v1/api-keys/${String(id)}`, undefined, denied);
      }
      const members = `/v1/teams/${me.team_id}/members`;
      await call("GET", "/v1/teams/{id}/members", members, undefined, denied);
      const add = { email: "other@example.com", role: "owner" };
      await call("POST", "/v1/teams/{id}/members", members, add, denied);
      const remove = `${members}/${me.user.id}`;
      await call("PATCH", "/v1/teams/{id}/members/{user_id}", remove, { role: "member" }, denied);
      await call("DELETE", "/v1/teams/{id}/members/{user_id}", remove, undefined, denied);
      const invite = `/v1/invites/${inviteId}`;
      await call("DELETE", "/v1/invites/{id}", invite, undefined, denied);
      // A session naming A's team in X-Team-Id is refused.
      const pretend = await h.api("/v1/sandboxes", {
        key: null,
        headers: { authorization: `Bearer ${other.token}`, "x-team-id": me.team_id },
      });
      assert.equal(pretend.status, 403);
      // Admin routes refuse B (admin-only routes have their own test below).
      const admin = [403];
      await call("GET", "/v1/admin/hosts", "/v1/admin/hosts", undefined, admin);
      await call("GET", "/v1/admin/templates", "/v1/admin/templates", undefined, admin);
      await call("POST", "/v1/admin/host-tokens", "/v1/admin/host-tokens", {}, admin);
      const limits = `/v1/admin/teams/${me.team_id}/limits`;
      await call("GET", "/v1/admin/teams/{id}/limits", limits, undefined, admin);
      await call("PUT", "/v1/admin/teams/{id}/limits", limits, { sandboxes: 0 }, admin);
      const host = `/v1/admin/hosts/${hostId}`;
      await call("DELETE", "/v1/admin/hosts/{id}", host, undefined, admin);
      // Host routes authenticate hosts, not teams: B's credentials are no host secret.
      const beat = { total_vcpus: 1, total_memory_mb: 1, free_disk_mb: 1 };
      const heartbeat = `/v1/hosts/${hostId}/heartbeat`;
      await call("POST", "/v1/hosts/{id}/heartbeat", heartbeat, beat, [401]);
      const register = { token: "wrh_guess", address: "10.0.0.9:1" };
      await call("POST", "/v1/hosts/register", "/v1/hosts/register", register, [401]);

      // What B lists and creates is B's alone.
      const listed = async (path: string) =>
        JSON.stringify(await (await h.api(path, { key: other.key })).json());
      const mine = [run, paused, snapSource, "a-snap", me.team_id, inviteId, ...keyIds.map(String)];
      for (const [route, path] of [
        ["/v1/sandboxes", "/v1/sandboxes?limit=1000"],
        ["/v1/snapshots", "/v1/snapshots"],
        ["/v1/api-keys", "/v1/api-keys"],
        ["/v1/invites", "/v1/invites"],
        ["/v1/teams", "/v1/teams"],
        ["/v1/me", "/v1/me"],
      ] as const) {
        covered.add(`GET ${route}`);
        const text = await listed(path);
        for (const id of mine) assert.ok(!text.includes(id), `${path} shows A's ${id}`);
      }
      await call("POST", "/v1/sandboxes", "/v1/sandboxes", {}, [201]);
      await call("POST", "/v1/api-keys", "/v1/api-keys", { name: "b" }, [201]);
      await call("POST", "/v1/invites", "/v1/invites", {}, [201]);
      // Teams are made by sessions; the API key is refused, the session makes B's own.
      await call("POST", "/v1/teams", "/v1/teams", { name: "b-team" }, [201, 403]);
      for (const route of ["POST /v1/auth/signup", "POST /v1/auth/login"]) covered.add(route);

      // Nothing of A's changed, on the control plane or on its agent.
      assert.deepEqual(await stateOfA(), before);
      const touched = h.agents[0]!.calls.slice(agentCalls);
      for (const id of [run, paused, snapSource]) {
        assert.ok(!touched.some((c) => c.endsWith(`:${id}`)), `${id}: ${touched.join(" ")}`);
      }
      const read = await h.api(`/v1/sandboxes/${run}/files/read`, {
        method: "POST",
        json: { path: "/a-file" },
      });
      assert.equal(await read.text(), "team A's");

      // Every route of the API was tried as team B.
      const doc = (await (await h.api("/openapi.json", { key: null })).json()) as {
        paths: Record<string, Record<string, unknown>>;
      };
      // E2B's paths: test/e2b-sandboxes.test.ts tries team B on each of them.
      const routes = Object.entries(doc.paths)
        .filter(([path]) => path.startsWith("/v1/"))
        .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
      for (const route of routes) assert.ok(covered.has(route), `${route} untried as team B`);
    } finally {
      await h.close();
    }
  });

  test(`admin-only routes refuse everyone but platform admins (${kind})`, async () => {
    const h = await startHarness(kind);
    try {
      const other = await signup(h, "owner-not-admin@example.com");
      const extra = await startFakeAgent();
      h.agents.push(extra);
      const spareHost = await h.registerAgent(extra);
      const doc = (await (await h.api("/openapi.json", { key: null })).json()) as {
        paths: Record<string, Record<string, unknown>>;
      };
      const adminRoutes = Object.entries(doc.paths)
        .filter(([path]) => path.startsWith("/v1/admin/"))
        .flatMap(([path, ops]) => Object.keys(ops).map((m) => [m.toUpperCase(), path] as const));
      assert.equal(adminRoutes.length, 6, JSON.stringify(adminRoutes));
      for (const [method, route] of adminRoutes) {
        const path = route.replace("{id}", route.includes("/teams/") ? other.team.id : spareHost);
        const json = method === "POST" || method === "PUT" ? {} : undefined;
        // The owner of a team, by key and by session, is still no platform admin.
        for (const creds of [
          { key: other.key },
          { key: null, headers: { authorization: `Bearer ${other.token}` } },
        ]) {
          const res = await h.api(path, { method, ...creds, ...(json ? { json } : {}) });
          assert.equal(res.status, 403, `${method} ${path}`);
          const body = (await res.json()) as { error: { code: string } };
          assert.equal(body.error.code, "permission_denied");
        }
        const unauthenticated = await h.api(path, { method, key: null, ...(json ? { json } : {}) });
        assert.equal(unauthenticated.status, 401, `${method} ${path} without credentials`);
        // The platform admin (the first user), by key and by session.
        for (const creds of [
          { key: h.key },
          { key: null, headers: { authorization: `Bearer ${h.token}` } },
        ]) {
          if (method === "DELETE" && creds.key === null) continue; // deleted once is enough
          const res = await h.api(path, { method, ...creds, ...(json ? { json } : {}) });
          assert.ok(
            res.status >= 200 && res.status < 300,
            `${method} ${path} as admin: ${res.status}`,
          );
        }
      }
    } finally {
      await h.close();
    }
  });

  test(`teams and roles (${kind})`, async () => {
    const h = await startHarness(kind);
    try {
      const bob = await signup(h, "bob@example.com");
      const bobAuth = { authorization: `Bearer ${bob.token}` };
      const team = await h.api("/v1/teams", {
        method: "POST",
        key: null,
        headers: { authorization: `Bearer ${h.token}` },
        json: { name: "shared" },
      });
      assert.equal(team.status, 201);
      const teamId = ((await team.json()) as { id: string }).id;
      const adminInShared = { authorization: `Bearer ${h.token}`, "x-team-id": teamId };
      const add = await h.api(`/v1/teams/${teamId}/members`, {
        method: "POST",
        key: null,
        headers: adminInShared,
        json: { email: "bob@example.com", role: "member" },
      });
      assert.equal(add.status, 201);
      // Bob, a plain member, may use the team but not manage its keys or members.
      const asBob = { ...bobAuth, "x-team-id": teamId };
      assert.equal((await h.api("/v1/sandboxes", { key: null, headers: asBob })).status, 200);
      const bobKey = await h.api("/v1/api-keys", {
        method: "POST",
        key: null,
        headers: asBob,
        json: { name: "b" },
      });
      assert.equal(bobKey.status, 403);
      const members = (await (
        await h.api(`/v1/teams/${teamId}/members`, { key: null, headers: asBob })
      ).json()) as unknown[];
      assert.equal(members.length, 2);
      const notMember = await h.api("/v1/sandboxes", {
        key: null,
        headers: { ...bobAuth, "x-team-id": crypto.randomUUID() },
      });
      assert.equal(notMember.status, 403);
    } finally {
      await h.close();
    }
  });
}
