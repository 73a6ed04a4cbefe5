import { createRoute, z } from "@hono/zod-openapi";
import { inviteJson, type InviteService } from "../../invites.ts";
import { router, security } from "../router.ts";
import {
  CreateInviteBody,
  CreatedInvite,
  Invite,
  KeyParams,
  commonErrors,
  jsonBody,
  jsonResponse,
  noContent,
} from "../schemas.ts";

/** Invites into the caller's team: how people sign up once sign-up is closed. */
export function inviteRoutes(invites: InviteService) {
  const app = router();

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/invites",
      tags: ["accounts"],
      summary:
        "Invite someone into the caller's team (owners and admins); they sign up with the token, once",
      security,
      request: { body: jsonBody(CreateInviteBody) },
      responses: {
        201: jsonResponse(CreatedInvite, "The invite, its token shown once"),
        ...commonErrors,
      },
    }),
    async (c) => {
      const { row, token } = await invites.create(c.get("caller"), c.req.valid("json"));
      return c.json({ ...inviteJson(row), token }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/invites",
      tags: ["accounts"],
      summary: "The team's unused, unexpired invites (owners and admins)",
      security,
      responses: { 200: jsonResponse(z.array(Invite), "Invites"), ...commonErrors },
    }),
    async (c) => c.json((await invites.pending(c.get("caller"))).map(inviteJson), 200),
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/v1/invites/{id}",
      tags: ["accounts"],
      summary: "Revoke an unused invite (owners and admins)",
      security,
      request: { params: KeyParams },
      responses: { 204: noContent, ...commonErrors },
    }),
    async (c) => {
      await invites.revoke(c.get("caller"), c.req.valid("param").id);
      return c.body(null, 204);
    },
  );

  return app;
}
