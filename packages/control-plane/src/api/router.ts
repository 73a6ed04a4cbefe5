import { OpenAPIHono } from "@hono/zod-openapi";
import { getConnInfo } from "@hono/node-server/conninfo";
import type { Context, MiddlewareHandler } from "hono";
import { authenticate } from "../auth/authenticate.ts";
import type { ClientAddresses } from "../auth/client-address.ts";
import { errorBody } from "../errors.ts";
import type { AppEnv, Deps } from "../context.ts";

interface Issue {
  path: PropertyKey[];
  message: string;
}

/** Zod's issues as one line a user can act on: `memory_mb: Too big: expected number to be <=262144`. */
export function describeIssues(issues: readonly Issue[]): string {
  return issues
    .slice(0, 5)
    .map((i) => (i.path.length ? `${i.path.map(String).join(".")}: ${i.message}` : i.message))
    .join("; ");
}

/** A router whose validation failures answer 400 in the API's error shape. */
export function router(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result, c) => {
      if (!result.success) {
        return c.json(errorBody("invalid_argument", describeIssues(result.error.issues)), 400);
      }
    },
  });
}

export function credentialsOf(c: Context) {
  const auth = c.req.header("authorization");
  return {
    apiKey: c.req.header("x-api-key") ?? null,
    bearer: auth?.toLowerCase().startsWith("bearer ") ? auth.slice(7).trim() : null,
    teamId: c.req.header("x-team-id") ?? null,
  };
}

/**
 * The client's address: the peer's, or behind a trusted proxy (`--trust-proxy`)
 * the client it forwarded for; "" for in-process requests.
 */
export function clientAddress(c: Context, clients: ClientAddresses): string {
  let peer: string;
  try {
    peer = getConnInfo(c).remote.address ?? "";
  } catch {
    return "";
  }
  return clients.of(peer, c.req.header("x-forwarded-for"));
}

export function requireAuth(deps: Deps): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    c.set(
      "caller",
      await authenticate(deps, credentialsOf(c), clientAddress(c, deps.throttles.clients)),
    );
    await next();
  };
}

export const security: Array<Record<string, string[]>> = [{ ApiKeyAuth: [] }, { BearerAuth: [] }];
