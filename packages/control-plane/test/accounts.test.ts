import { test } from "node:test";
import assert from "node:assert/strict";
import { DATABASES, startHarness, type Harness } from "./harness.ts";

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

      // Keys: wrn_ + 32 hex, shown once, listed by prefix, last use recorded, revocable.
      const created = await h.api("/v1/api-keys", {
        method: "POST",
        key: null,
        headers: { authorization: `Bearer ${session}` },
        json: { name: "ci" },
      });
      const k = (await created.json()) as { id: string; key: string; prefix: string };
      assert.match(k.key, /^wrn_[0-9a-f]{32}$/);
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
      assert.equal((await h.api("/v1/me", { key: null })).status, 401);
    } finally {
      await h.close();
    }
  });

  test(`every query is scoped to the caller's team (${kind})`, async () => {
    const h = await startHarness(kind);
    try {
      const other = await signup(h, "other@example.com");
      const mine = await h.api("/v1/sandboxes", { method: "POST", json: {} });
      const id = ((await mine.json()) as { sandbox_id: string }).sandbox_id;
      for (const [method, path, json] of [
        ["GET", `/v1/sandboxes/${id}`, undefined],
        ["DELETE", `/v1/sandboxes/${id}`, undefined],
        ["POST", `/v1/sandboxes/${id}/exec`, { cmd: "id" }],
        ["POST", `/v1/sandboxes/${id}/pause`, undefined],
        ["POST", `/v1/sandboxes/${id}/ping`, undefined],
        ["POST", `/v1/sandboxes/${id}/files/read`, { path: "/etc/hostname" }],
        ["POST", "/v1/snapshots", { sandbox_id: id, name: "stolen" }],
      ] as const) {
        const res = await h.api(path, { method, key: other.key, ...(json ? { json } : {}) });
        assert.equal(res.status, 404, `${method} ${path} from another team`);
      }
      assert.deepEqual(await (await h.api("/v1/sandboxes", { key: other.key })).json(), []);
      // Admin-only routes refuse ordinary users.
      for (const path of ["/v1/admin/templates", "/v1/admin/hosts"]) {
        assert.equal((await h.api(path, { key: other.key })).status, 403);
        assert.equal((await h.api(path)).status, 200);
      }
      // The other team's keys are not visible here either.
      const mineKeys = (await (await h.api("/v1/api-keys")).json()) as unknown[];
      const theirKeys = (await (
        await h.api("/v1/api-keys", { key: other.key })
      ).json()) as unknown[];
      assert.equal(mineKeys.length, 1);
      assert.equal(theirKeys.length, 1);
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
