import { createRoute, z } from "@hono/zod-openapi";
import { memberJson, teamJson, userJson, type AccountService } from "../../accounts.ts";
import { keyJson, type ApiKeyService } from "../../api-keys.ts";
import { isWrennError } from "@wrenn/shared/errors.ts";
import { clientKey, type Throttles } from "../../auth/throttle.ts";
import { clientAddress, router, security } from "../router.ts";
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
  UpdateMemberBody,
  agentErrors,
  commonErrors,
  jsonBody,
  jsonResponse,
  limitError,
  noContent,
} from "../schemas.ts";
import type { SignedIn } from "../../accounts.ts";

const sessionJson = (s: SignedIn) => ({
  token: s.session.token,
  expires_at: s.session.expiresAt.toISOString(),
  user: userJson(s.user),
  team: teamJson(s.team),
});

/** Sign-up, login, the caller, teams and members, API keys. */
export function accountRoutes(accounts: AccountService, keys: ApiKeyService, throttles: Throttles) {
  const app = router();

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/auth/signup",
      tags: ["accounts"],
      summary:
        "Sign up: the first user becomes the platform's admin; later ones need an invite (they join its team) unless sign-up is open (then they get a team of their own)",
      request: { body: jsonBody(SignupBody) },
      responses: {
        201: jsonResponse(Session, "Signed up and logged in"),
        400: commonErrors[400],
        403: commonErrors[403],
        429: limitError,
      },
    }),
    async (c) => {
      // Counted after validation: only a well-formed request costs an scrypt hash.
      throttles.signup.take(clientKey(clientAddress(c, throttles.clients)));
      return c.json(sessionJson(await accounts.signup(c.req.valid("json"))), 201);
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
        429: limitError,
      },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const account = body.email.toLowerCase();
      throttles.login.take(clientKey(clientAddress(c, throttles.clients)));
      throttles.loginFailures.check(account);
      try {
        return c.json(sessionJson(await accounts.login(body)), 200);
      } catch (err) {
        if (isWrennError(err, "unauthenticated")) throttles.loginFailures.take(account);
        throw err;
      }
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
      const user = caller.userId ? await accounts.user(caller.userId) : undefined;
      return c.json(
        {
          user: user ? userJson(user) : null,
          team_id: caller.teamId,
          role: caller.role,
          is_admin: caller.isAdmin,
          teams:
            caller.via === "session" && caller.userId
              ? (await accounts.teamsOf(caller.userId)).map(teamJson)
              : [],
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
      return c.json((await accounts.callerTeams(c.get("caller"))).map(teamJson), 200);
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
      const team = await accounts.createTeam(c.get("caller"), c.req.valid("json").name);
      return c.json(teamJson(team), 201);
    },
  );

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
      const rows = await accounts.members(c.get("caller"), c.req.valid("param").id);
      return c.json(rows.map(memberJson), 200);
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
      const body = c.req.valid("json");
      const m = await accounts.addMember(c.get("caller"), c.req.valid("param").id, {
        email: body.email,
        role: body.role,
      });
      return c.json(memberJson(m), 201);
    },
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/v1/teams/{id}/members/{user_id}",
      tags: ["accounts"],
      summary: "Remove a member (owners and admins; only owners remove owners)",
      security,
      request: { params: MemberParams },
      responses: { 204: noContent, ...commonErrors, 409: agentErrors[409] },
    }),
    async (c) => {
      const { id, user_id } = c.req.valid("param");
      await accounts.removeMember(c.get("caller"), id, user_id);
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: "patch",
      path: "/v1/teams/{id}/members/{user_id}",
      tags: ["accounts"],
      summary: "Change a member's role (owners and admins; only owners make or unmake owners)",
      security,
      request: { params: MemberParams, body: jsonBody(UpdateMemberBody) },
      responses: { 200: jsonResponse(Member, "Changed"), ...commonErrors, 409: agentErrors[409] },
    }),
    async (c) => {
      const { id, user_id } = c.req.valid("param");
      const m = await accounts.changeRole(c.get("caller"), id, user_id, c.req.valid("json").role);
      return c.json(memberJson(m), 200);
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
      const { row, key } = await keys.create(c.get("caller"), c.req.valid("json").name);
      return c.json({ ...keyJson(row), key }, 201);
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
      const rows = await keys.list(c.get("caller"));
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
      await keys.revoke(c.get("caller"), c.req.valid("param").id);
      return c.body(null, 204);
    },
  );

  return app;
}
