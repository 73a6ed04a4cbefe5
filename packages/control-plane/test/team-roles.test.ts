import { test } from "node:test";
import assert from "node:assert/strict";
import { DATABASES, startHarness, type Harness } from "./harness.ts";

type Json = Record<string, unknown>;

async function signup(h: Harness, email: string): Promise<{ token: string; userId: string }> {
  const res = await h.api("/v1/auth/signup", {
    method: "POST",
    key: null,
    json: { email, password: "a long password" },
  });
  assert.equal(res.status, 201, await res.clone().text());
  const body = (await res.json()) as { token: string; user: { id: string } };
  return { token: body.token, userId: body.user.id };
}

for (const kind of DATABASES) {
  test(
    `API keys act with their creator's current role and stop when the creator leaves; admins cannot remove or demote owners (${kind})`,
    {
      timeout: 120_000,
    },
    async () => {
      const h = await startHarness(kind);
      try {
        // The harness's admin owns a team "shared"; Bob joins it as an admin.
        const team = await h.api("/v1/teams", {
          method: "POST",
          key: null,
          headers: { authorization: `Bearer ${h.token}` },
          json: { name: "shared" },
        });
        const teamId = ((await team.json()) as { id: string }).id;
        const asOwner = {
          key: null,
          headers: { authorization: `Bearer ${h.token}`, "x-team-id": teamId },
        };
        const ownerId = (
          (await (await h.api("/v1/me", asOwner)).json()) as { user: { id: string } }
        ).user.id;
        const bob = await signup(h, "bob@example.com");
        const asBob = {
          key: null,
          headers: { authorization: `Bearer ${bob.token}`, "x-team-id": teamId },
        };
        const add = await h.api(`/v1/teams/${teamId}/members`, {
          method: "POST",
          ...asOwner,
          json: { email: "bob@example.com", role: "admin" },
        });
        assert.equal(add.status, 201);
        const created = await h.api("/v1/api-keys", {
          method: "POST",
          ...asBob,
          json: { name: "bob's" },
        });
        assert.equal(created.status, 201);
        const bobKey = ((await created.json()) as { key: string }).key;
        const me = async () => (await (await h.api("/v1/me", { key: bobKey })).json()) as Json;
        assert.equal((await me()).role, "admin", "the key acts as its creator: an admin");
        assert.equal((await me()).team_id, teamId);

        // An admin may neither remove nor demote an owner, nor make one.
        const removeOwner = await h.api(`/v1/teams/${teamId}/members/${ownerId}`, {
          method: "DELETE",
          ...asBob,
        });
        assert.equal(removeOwner.status, 403);
        assert.match(
          ((await removeOwner.json()) as { error: Json }).error.message as string,
          /only an owner/,
        );
        for (const [who, role] of [
          [ownerId, "member"],
          [ownerId, "admin"],
          [bob.userId, "owner"],
        ] as const) {
          const res = await h.api(`/v1/teams/${teamId}/members/${who}`, {
            method: "PATCH",
            ...asBob,
            json: { role },
          });
          assert.equal(
            res.status,
            403,
            `an admin setting ${who === ownerId ? "the owner" : "themselves"} to ${role}`,
          );
        }
        // Nor may their key, which is no more than they are.
        const byKey = await h.api(`/v1/teams/${teamId}/members/${ownerId}`, {
          method: "DELETE",
          key: bobKey,
        });
        assert.equal(byKey.status, 403);
        // The last owner cannot step down.
        const lastOwner = await h.api(`/v1/teams/${teamId}/members/${ownerId}`, {
          method: "PATCH",
          ...asOwner,
          json: { role: "admin" },
        });
        assert.equal(lastOwner.status, 409);
        const members = (await (
          await h.api(`/v1/teams/${teamId}/members`, asOwner)
        ).json()) as Json[];
        assert.deepEqual(members.map((m) => m.role).sort(), ["admin", "owner"], "nothing changed");

        // The owner demotes Bob: his key is a member's from the next request on.
        const demote = await h.api(`/v1/teams/${teamId}/members/${bob.userId}`, {
          method: "PATCH",
          ...asOwner,
          json: { role: "member" },
        });
        assert.equal(demote.status, 200);
        assert.equal(((await demote.json()) as Json).role, "member");
        assert.equal((await me()).role, "member");
        const keyByKey = await h.api("/v1/api-keys", {
          method: "POST",
          key: bobKey,
          json: { name: "x" },
        });
        assert.equal(keyByKey.status, 403, "a member's key may not make keys");
        assert.equal(
          (await h.api("/v1/sandboxes", { key: bobKey })).status,
          200,
          "but may use the team",
        );

        // The owner removes Bob: his key stops at once.
        const remove = await h.api(`/v1/teams/${teamId}/members/${bob.userId}`, {
          method: "DELETE",
          ...asOwner,
        });
        assert.equal(remove.status, 204);
        const after = await h.api("/v1/sandboxes", { key: bobKey });
        assert.equal(after.status, 401);
        const body = (await after.json()) as { error: Json };
        assert.equal(body.error.code, "unauthenticated");
        assert.match(String(body.error.message), /no longer a member/);
        // An owner may remove another owner, once there are two.
        const carol = await signup(h, "carol@example.com");
        await h.api(`/v1/teams/${teamId}/members`, {
          method: "POST",
          ...asOwner,
          json: { email: "carol@example.com", role: "owner" },
        });
        const asCarol = {
          key: null,
          headers: { authorization: `Bearer ${carol.token}`, "x-team-id": teamId },
        };
        const dethrone = await h.api(`/v1/teams/${teamId}/members/${ownerId}`, {
          method: "PATCH",
          ...asCarol,
          json: { role: "admin" },
        });
        assert.equal(dethrone.status, 200);
        assert.equal(
          ((await h.api("/v1/me", asOwner).then((r) => r.json())) as Json).role,
          "admin",
        );
      } finally {
        await h.close();
      }
    },
  );
}
