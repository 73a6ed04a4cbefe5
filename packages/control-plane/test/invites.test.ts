import { test } from "node:test";
import assert from "node:assert/strict";
import { eq } from "drizzle-orm";
import { invites } from "../src/db/schema.ts";
import { DATABASES, startHarness } from "./harness.ts";

type Json = Record<string, unknown>;
type ErrorJson = { error: { code: string; message: string } };

for (const kind of DATABASES) {
  test(
    `sign-up is closed once the admin exists: invites let people in, once, into the inviting team (${kind})`,
    {
      timeout: 120_000,
    },
    async () => {
      // The harness's own first sign-up (the admin) works with sign-up closed.
      const h = await startHarness(kind, { openSignup: false });
      try {
        const signup = (json: Json) =>
          h.api("/v1/auth/signup", {
            method: "POST",
            key: null,
            json: { password: "a long password", ...json },
          });
        const closed = await signup({ email: "amy@example.com" });
        assert.equal(closed.status, 403);
        const closedBody = (await closed.json()) as ErrorJson;
        assert.equal(closedBody.error.code, "permission_denied");
        assert.match(
          closedBody.error.message,
          /sign-up is closed: ask an admin of your team for an invite/,
        );

        const me = (await (await h.api("/v1/me")).json()) as { team_id: string };
        const made = await h.api("/v1/invites", {
          method: "POST",
          json: { email: "Amy@Example.com", role: "admin" },
        });
        assert.equal(made.status, 201);
        const invite = (await made.json()) as Json;
        assert.match(String(invite.token), /^wri_[0-9a-f]{48}$/);
        assert.equal(invite.team_id, me.team_id);
        assert.equal(invite.email, "amy@example.com");
        const listed = (await (await h.api("/v1/invites")).json()) as Json[];
        assert.deepEqual(
          listed.map((i) => i.id),
          [invite.id],
        );
        assert.ok(!("token" in listed[0]!), "the token is shown once");

        const wrongEmail = await signup({ email: "bob@example.com", invite: invite.token });
        assert.equal(wrongEmail.status, 403);
        assert.match(((await wrongEmail.json()) as ErrorJson).error.message, /ask for a new one/);
        const amy = await signup({ email: "amy@example.com", invite: invite.token });
        assert.equal(amy.status, 201);
        const session = (await amy.json()) as { token: string; team: Json; user: Json };
        assert.equal(session.team.id, me.team_id, "Amy joins the inviting team");
        assert.equal(session.team.role, "admin");
        assert.equal(session.user.is_admin, false);
        const amyMe = (await (
          await h.api("/v1/me", {
            key: null,
            headers: { authorization: `Bearer ${session.token}` },
          })
        ).json()) as Json;
        assert.equal(amyMe.team_id, me.team_id);
        assert.equal((amyMe.teams as Json[]).length, 1, "and gets no team of her own");
        const again = await signup({ email: "amy2@example.com", invite: invite.token });
        assert.equal(again.status, 403, "an invite is used once");
        assert.deepEqual(await (await h.api("/v1/invites")).json(), []);

        // An open invite (no email), revoked before use; an expired one.
        const open = (await (
          await h.api("/v1/invites", { method: "POST", json: {} })
        ).json()) as Json;
        assert.equal(open.role, "member");
        assert.equal(
          (await h.api(`/v1/invites/${String(open.id)}`, { method: "DELETE" })).status,
          204,
        );
        assert.equal((await signup({ email: "cy@example.com", invite: open.token })).status, 403);
        const old = (await (
          await h.api("/v1/invites", { method: "POST", json: {} })
        ).json()) as Json;
        await h.cp.db
          .update(invites)
          .set({ expiresAt: new Date(Date.now() - 1000) })
          .where(eq(invites.id, String(old.id)));
        assert.equal((await signup({ email: "cy@example.com", invite: old.token })).status, 403);
        const fresh = (await (
          await h.api("/v1/invites", { method: "POST", json: {} })
        ).json()) as Json;
        assert.equal((await signup({ email: "cy@example.com", invite: fresh.token })).status, 201);

        // Members may not invite; admins may not invite owners; other teams do not see invites.
        const member = (await (
          await h.api("/v1/auth/login", {
            method: "POST",
            key: null,
            json: { email: "cy@example.com", password: "a long password" },
          })
        ).json()) as { token: string };
        const asMember = { key: null, headers: { authorization: `Bearer ${member.token}` } };
        assert.equal(
          (await h.api("/v1/invites", { method: "POST", ...asMember, json: {} })).status,
          403,
        );
        const asAmy = { key: null, headers: { authorization: `Bearer ${session.token}` } };
        const ownerInvite = await h.api("/v1/invites", {
          method: "POST",
          ...asAmy,
          json: { role: "owner" },
        });
        assert.equal(ownerInvite.status, 403);
        assert.equal(
          (await h.api("/v1/invites", { method: "POST", ...asAmy, json: {} })).status,
          201,
        );
        assert.equal(
          (await h.api("/v1/invites", { method: "POST", json: { ttl_sec: 10 } })).status,
          400,
        );
      } finally {
        await h.close();
      }
    },
  );
}

test("with open sign-up anyone gets a team of their own", { timeout: 60_000 }, async () => {
  const h = await startHarness("pglite", { openSignup: true });
  try {
    const res = await h.api("/v1/auth/signup", {
      method: "POST",
      key: null,
      json: { email: "free@example.com", password: "a long password" },
    });
    assert.equal(res.status, 201);
    const body = (await res.json()) as { team: Json };
    assert.equal(body.team.role, "owner");
  } finally {
    await h.close();
  }
});
