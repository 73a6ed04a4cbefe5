import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { Logger } from "@wrenn/shared/log.ts";
import type { AppEnv, Deps } from "../context.ts";
import { clientAddress, credentialsOf, describeIssues } from "../api/router.ts";
import { authenticate } from "../auth/authenticate.ts";
import { toErrorResponse } from "../errors.ts";

/** E2B's error shape: the HTTP status again as `code`, and a message. */
export interface E2bErrorBody {
  code: number;
  message: string;
}

export function e2bError(err: unknown): {
  status: ContentfulStatusCode;
  body: E2bErrorBody;
  headers?: Record<string, string>;
} {
  const { status, body, headers } = toErrorResponse(err);
  return {
    status,
    body: { code: status, message: body.error.message },
    ...(headers ? { headers } : {}),
  };
}

/** A router whose validation failures answer 400 in E2B's error shape. */
export function e2bRouter(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result, c) => {
      if (!result.success) {
        return c.json({ code: 400, message: describeIssues(result.error.issues) }, 400);
      }
    },
  });
}

const JSON_LIMIT = 1 << 20;

/**
 * Authenticates like /v1 (X-API-Key, or a Bearer key or dashboard session)
 * and turns every error under E2B's paths into E2B's shape: those thrown here
 * and those the app's error handler already answered in /v1's.
 */
export function e2bGuard(deps: Deps): MiddlewareHandler<AppEnv> {
  const limit = bodyLimit({
    maxSize: JSON_LIMIT,
    onError: (c) =>
      c.json({ code: 413, message: `request bodies are limited to ${JSON_LIMIT} bytes` }, 413),
  });
  const answer = (c: Context, err: unknown, log: Logger) => {
    const { status, body, headers } = e2bError(err);
    if (status >= 500) log.error({ err, path: c.req.path }, "request failed");
    return c.json(body, status, headers);
  };
  return async (c, next) => {
    try {
      c.set(
        "caller",
        await authenticate(deps, credentialsOf(c), clientAddress(c, deps.throttles.clients)),
      );
    } catch (err) {
      return answer(c, err, deps.log);
    }
    // bodyLimit answers a declared oversize body itself, without calling next.
    const refused: unknown = await limit(c, next);
    if (refused instanceof Response) return refused;
    // The app's onError or notFound has answered (and logged) in /v1's shape
    // already: only the shape changes.
    if (c.res.status >= 400) {
      const v1 = (await c.res
        .clone()
        .json()
        .catch(() => null)) as { error?: { message?: unknown } } | null;
      const message = v1?.error?.message;
      if (typeof message === "string") {
        const body: E2bErrorBody = { code: c.res.status, message };
        c.res = new Response(JSON.stringify(body), {
          status: c.res.status,
          headers: { "content-type": "application/json" },
        });
      }
    }
  };
}
