import { createRoute } from "@hono/zod-openapi";
import { and, asc, eq, isNull } from "drizzle-orm";
import { WrennError } from "@wrenn/shared/errors.ts";
import { hashPassword, verifyPassword } from "../../auth/passwords.ts";
import { newApiKey } from "../../auth/tokens.ts";
import { apiKeys, teamMembers, teams, users, type TeamRole } from "../../db/schema.ts";
import type { Db } from "../../db/open.ts";
import type { Deps } from "../context.ts";
import { requireTeamRole, router, security } from "../router.ts";
import {
  AddMemberBody,
  ApiKey,
  CreateApiKeyBody,
  CreateTeamBody,
  CreatedApiKey,
  KeyParams,
  LoginBody,
  Me,
  Member,
  MemberParams,
  Session,
  SignupBody,
  Team,
  TeamParams,
  agentErrors,
  commonErrors,
  jsonBody,
  jsonResponse,
  noContent,
} from "../schemas.ts";
import { z } from "@hono/zod-openapi";

type UserRow = typeof users.$inferSelect;
type KeyRow = typeof apiKeys.$inferSelect;

const userJson = (u: UserRow) => ({
  id: u.id,
  email: u.email,
  name: u.name,
  is_admin: u.isAdmin,
  created_at: u.createdAt.toISOString(),
});

const keyJson = (k: KeyRow) => ({
  id: k.id,
  name: k.name,
  prefix: k.prefix,
  created_at: k.createdAt.toISOString(),
  last_used_at: k.lastUsedAt?.toISOString() ?? null,
  revoked_at: k.revokedAt?.toISOString() ?? null,
});

async function teamsOf(db: Db, userId: string) {
  const rows = await db
    .select({ id: teams.id, name: teams.name, role: teamMembers.role, createdAt: teams.createdAt })
    .from(teamMembers)
    .innerJoin(teams, eq(teams.id, teamMembers.teamId))
    .where(eq(teamMembers.userId, userId))
    .orderBy(asc(teamMembers.createdAt));
  return rows.map((t) => ({
    id: t.id,
    name: t.name,
    role: t.role,
    created_at: t.createdAt.toISOString(),
  }));
}

/** Sign-up, login, the caller, teams and members, API keys. */
export function accountRoutes(deps: Deps) {
  const { db, sessions } = deps;
  const app = router();

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/auth/signup",
      tags: ["accounts"],
      summary: "Create a user and their own team; the first user becomes an admin",
      request: { body: jsonBody(SignupBody) },
      responses: { 201: jsonResponse(Session, "Signed up and logged in"), 400: commonErrors[400] },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const email = body.email.toLowerCase();
      const passwordHash = await hashPassword(body.password);
      const { user, team } = await db.transaction(async (tx) => {
        const [anyUser] = await tx.select({ id: users.id }).from(users).limit(1);
        const [user] = await tx
          .insert(users)
          .values({ email, name: body.name ?? "", passwordHash, isAdmin: !anyUser })
          .onConflictDoNothing()
          .returning();
        if (!user)
          throw new WrennError("already_exists", `a user with email ${email} exists; log in`);
        const [team] = await tx
          .insert(teams)
          .values({ name: body.name ? `${body.name}'s team` : email })
          .returning();
        if (!team) throw new WrennError("internal", "team insert returned nothing");
        await tx.insert(teamMembers).values({ teamId: team.id, userId: user.id, role: "owner" });
        return { user, team };
      });
      const session = await sessions.issue(user.id);
      return c.json(
        {
          token: session.token,
          expires_at: session.expiresAt.toISOString(),
          user: userJson(user),
          team: {
            id: team.id,
            name: team.name,
            role: "owner" as const,
            created_at: team.createdAt.toISOString(),
          },
        },
        201,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/auth/login",
      tags: ["accounts"],
      summary: "Exchange email and password for a session token",
      request: { body: jsonBody(LoginBody) },
      responses: {
        200: jsonResponse(Session, "Logged in"),
        400: commonErrors[400],
        401: commonErrors[401],
      },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const [user] = await db.select().from(users).where(eq(users.email, body.email.toLowerCase()));
      // Hash even for unknown emails so timing does not reveal which emails exist.
      const ok = await verifyPassword(body.password, user?.passwordHash ?? DUMMY_HASH);
      if (!user || !ok) throw new WrennError("unauthenticated", "wrong email or password");
      const [team] = await teamsOf(db, user.id);
      if (!team) throw new WrennError("failed_precondition", "you belong to no team");
      const session = await sessions.issue(user.id);
      return c.json(
        {
          token: session.token,
          expires_at: session.expiresAt.toISOString(),
          user: userJson(user),
          team,
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/me",
      tags: ["accounts"],
      summary: "The caller: user, current team, role",
      security,
      responses: { 200: jsonResponse(Me, "The caller"), 401: commonErrors[401] },
    }),
    async (c) => {
      const caller = c.get("caller");
      const [user] = caller.userId
        ? await db.select().from(users).where(eq(users.id, caller.userId))
        : [];
      return c.json(
        {
          user: user ? userJson(user) : null,
          team_id: caller.teamId,
          role: caller.role,
          is_admin: caller.isAdmin,
          teams: caller.via === "session" && caller.userId ? await teamsOf(db, caller.userId) : [],
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/teams",
      tags: ["accounts"],
      summary: "The teams the caller belongs to",
      security,
      responses: { 200: jsonResponse(z.array(Team), "Teams"), 401: commonErrors[401] },
    }),
    async (c) => {
      const caller = c.get("caller");
      if (caller.via === "api_key" || !caller.userId) {
        const [t] = await db.select().from(teams).where(eq(teams.id, caller.teamId));
        return c.json(
          t
            ? [{ id: t.id, name: t.name, role: caller.role, created_at: t.createdAt.toISOString() }]
            : [],
          200,
        );
      }
      return c.json(await teamsOf(db, caller.userId), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/teams",
      tags: ["accounts"],
      summary: "Create a team; the caller becomes its owner (select it with X-Team-Id)",
      security,
      request: { body: jsonBody(CreateTeamBody) },
      responses: { 201: jsonResponse(Team, "Created"), ...commonErrors },
    }),
    async (c) => {
      const caller = c.get("caller");
      const userId = caller.userId;
      if (caller.via !== "session" || !userId) {
        throw new WrennError(
          "permission_denied",
          "teams are created by users: log in and use a session token",
        );
      }
      const team = await db.transaction(async (tx) => {
        const [team] = await tx
          .insert(teams)
          .values({ name: c.req.valid("json").name })
          .returning();
        if (!team) throw new WrennError("internal", "team insert returned nothing");
        await tx.insert(teamMembers).values({ teamId: team.id, userId, role: "owner" });
        return team;
      });
      return c.json(
        {
          id: team.id,
          name: team.name,
          role: "owner" as const,
          created_at: team.createdAt.toISOString(),
        },
        201,
      );
    },
  );

  const currentTeam = (teamId: string, callerTeam: string) => {
    // Members are managed in the team the caller acts for, so every query stays in one team.
    if (teamId !== callerTeam) throw new WrennError("not_found", `team ${teamId} not found`);
  };

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/teams/{id}/members",
      tags: ["accounts"],
      summary: "Members of the caller's current team",
      security,
      request: { params: TeamParams },
      responses: { 200: jsonResponse(z.array(Member), "Members"), ...commonErrors },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      currentTeam(id, c.get("caller").teamId);
      const rows = await db
        .select({
          userId: users.id,
          email: users.email,
          role: teamMembers.role,
          createdAt: teamMembers.createdAt,
        })
        .from(teamMembers)
        .innerJoin(users, eq(users.id, teamMembers.userId))
        .where(eq(teamMembers.teamId, id))
        .orderBy(asc(teamMembers.createdAt));
      return c.json(
        rows.map((r) => ({
          user_id: r.userId,
          email: r.email,
          role: r.role,
          created_at: r.createdAt.toISOString(),
        })),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/teams/{id}/members",
      tags: ["accounts"],
      summary: "Add an existing user to the team (owners and admins)",
      security,
      request: { params: TeamParams, body: jsonBody(AddMemberBody) },
      responses: { 201: jsonResponse(Member, "Added"), ...commonErrors, 409: agentErrors[409] },
    }),
    async (c) => {
      const caller = c.get("caller");
      const { id } = c.req.valid("param");
      currentTeam(id, caller.teamId);
      requireTeamRole(caller, "add members");
      const body = c.req.valid("json");
      if (body.role === "owner" && caller.role !== "owner") {
        throw new WrennError("permission_denied", "only an owner may add another owner");
      }
      const [user] = await db.select().from(users).where(eq(users.email, body.email.toLowerCase()));
      if (!user)
        throw new WrennError(
          "not_found",
          `no user with email ${body.email}; they must sign up first`,
        );
      const [m] = await db
        .insert(teamMembers)
        .values({ teamId: id, userId: user.id, role: body.role as TeamRole })
        .onConflictDoNothing()
        .returning();
      if (!m) throw new WrennError("already_exists", `${body.email} is already a member`);
      return c.json(
        {
          user_id: user.id,
          email: user.email,
          role: m.role,
          created_at: m.createdAt.toISOString(),
        },
        201,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/v1/teams/{id}/members/{user_id}",
      tags: ["accounts"],
      summary: "Remove a member (owners and admins)",
      security,
      request: { params: MemberParams },
      responses: { 204: noContent, ...commonErrors },
    }),
    async (c) => {
      const caller = c.get("caller");
      const { id, user_id } = c.req.valid("param");
      currentTeam(id, caller.teamId);
      requireTeamRole(caller, "remove members");
      const owners = await db
        .select({ userId: teamMembers.userId })
        .from(teamMembers)
        .where(and(eq(teamMembers.teamId, id), eq(teamMembers.role, "owner")));
      if (owners.length === 1 && owners[0]?.userId === user_id) {
        throw new WrennError("failed_precondition", "a team keeps at least one owner");
      }
      const gone = await db
        .delete(teamMembers)
        .where(and(eq(teamMembers.teamId, id), eq(teamMembers.userId, user_id)))
        .returning();
      if (gone.length === 0) throw new WrennError("not_found", `user ${user_id} is not a member`);
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/api-keys",
      tags: ["api keys"],
      summary: "Create an API key for the caller's team; the key is shown only in this response",
      security,
      request: { body: jsonBody(CreateApiKeyBody) },
      responses: { 201: jsonResponse(CreatedApiKey, "Created"), ...commonErrors },
    }),
    async (c) => {
      const caller = c.get("caller");
      requireTeamRole(caller, "create API keys");
      const k = newApiKey();
      const [row] = await db
        .insert(apiKeys)
        .values({
          teamId: caller.teamId,
          createdBy: caller.userId,
          name: c.req.valid("json").name,
          prefix: k.prefix,
          keyHash: k.hash,
        })
        .returning();
      if (!row) throw new WrennError("internal", "api key insert returned nothing");
      return c.json({ ...keyJson(row), key: k.key }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/api-keys",
      tags: ["api keys"],
      summary: "The team's API keys (prefix only), with last-used times",
      security,
      responses: { 200: jsonResponse(z.array(ApiKey), "Keys"), 401: commonErrors[401] },
    }),
    async (c) => {
      const rows = await db
        .select()
        .from(apiKeys)
        .where(eq(apiKeys.teamId, c.get("caller").teamId))
        .orderBy(asc(apiKeys.createdAt));
      return c.json(rows.map(keyJson), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/v1/api-keys/{id}",
      tags: ["api keys"],
      summary: "Revoke an API key",
      security,
      request: { params: KeyParams },
      responses: { 204: noContent, ...commonErrors },
    }),
    async (c) => {
      const caller = c.get("caller");
      requireTeamRole(caller, "revoke API keys");
      const revoked = await db
        .update(apiKeys)
        .set({ revokedAt: new Date() })
        .where(
          and(
            eq(apiKeys.id, c.req.valid("param").id),
            eq(apiKeys.teamId, caller.teamId),
            isNull(apiKeys.revokedAt),
          ),
        )
        .returning();
      if (revoked.length === 0)
        throw new WrennError("not_found", "no such active API key in this team");
      return c.body(null, 204);
    },
  );

  return app;
}

// A valid hash of a random password, so unknown emails cost the same as wrong passwords.
const DUMMY_HASH = await hashPassword(crypto.randomUUID());
