import type { ContentfulStatusCode } from "hono/utils/http-status";
import { HTTPException } from "hono/http-exception";
import { Code, ConnectError } from "@connectrpc/connect";
import { WrennError, isWrennError, type ErrorCode } from "@wrenn/shared/errors.ts";

/** Every error leaves the API as `{"error": {"code", "message"}}` with one of these statuses. */
const STATUS: Record<ErrorCode, ContentfulStatusCode> = {
  invalid_argument: 400,
  unauthenticated: 401,
  permission_denied: 403,
  not_found: 404,
  already_exists: 409,
  failed_precondition: 409,
  resource_exhausted: 503,
  cancelled: 408,
  deadline_exceeded: 504,
  unavailable: 502,
  internal: 500,
};

export function statusOf(code: ErrorCode): ContentfulStatusCode {
  return STATUS[code];
}

/** Codes beyond the shared ones that only the API speaks: refusals by a limit (429). */
export type LimitCode = "rate_limited" | "quota_exceeded";

export interface ErrorBody {
  error: { code: ErrorCode | LimitCode; message: string };
}

/**
 * Too many requests (`rate_limited`, with when to try again) or more than
 * the team may have (`quota_exceeded`): 429, in the API's error shape.
 */
export class LimitError extends WrennError {
  readonly limit: LimitCode;
  readonly retryAfterSec: number | undefined;

  constructor(limit: LimitCode, message: string, retryAfterSec?: number) {
    super("resource_exhausted", message);
    this.limit = limit;
    this.retryAfterSec = retryAfterSec;
  }
}

export function errorBody(code: ErrorCode | LimitCode, message: string): ErrorBody {
  return { error: { code, message } };
}

const BY_STATUS: Partial<Record<number, ErrorCode>> = {
  400: "invalid_argument",
  401: "unauthenticated",
  403: "permission_denied",
  404: "not_found",
  405: "invalid_argument",
  408: "cancelled",
  409: "failed_precondition",
  413: "invalid_argument",
  415: "invalid_argument",
};

/** The SQLSTATE of a PostgreSQL error (pg and PGlite), looking through drizzle's wrapper. */
function sqlState(err: unknown): string | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

/**
 * A database verdict on the request's data, should a value get past the
 * schemas: class 22 (data exception: a value the column cannot hold) is bad
 * input, 23505 (unique violation) a conflict; neither is the server's fault.
 */
function fromDatabaseError(err: unknown): WrennError | undefined {
  const state = sqlState(err);
  if (state?.startsWith("22"))
    return new WrennError("invalid_argument", "the request holds a value that cannot be stored");
  if (state === "23505") return new WrennError("already_exists", "that already exists");
  return undefined;
}

/** Whatever was thrown, as a status and the error shape; unknown errors are internal. */
export function toErrorResponse(err: unknown): {
  status: ContentfulStatusCode;
  body: ErrorBody;
  headers?: Record<string, string>;
} {
  if (err instanceof LimitError) {
    const retry = err.retryAfterSec;
    return {
      status: 429,
      body: errorBody(err.limit, err.message),
      ...(retry !== undefined ? { headers: { "retry-after": String(retry) } } : {}),
    };
  }
  const known = isWrennError(err) ? err : fromDatabaseError(err);
  if (known) return { status: statusOf(known.code), body: errorBody(known.code, known.message) };
  if (err instanceof HTTPException) {
    const code = BY_STATUS[err.status] ?? (err.status >= 500 ? "internal" : "invalid_argument");
    const status = err.status as ContentfulStatusCode;
    return { status, body: errorBody(code, err.message || "bad request") };
  }
  return { status: 500, body: errorBody("internal", "internal error; see the control plane log") };
}

/**
 * A failed call to a host agent, in the API's terms: the agent's verdict on
 * the request keeps its meaning (not_found, invalid_argument,
 * failed_precondition); anything else means the host could not do it → 502.
 */
export function fromAgentError(err: unknown, address: string): WrennError {
  if (isWrennError(err)) return err;
  const ce = ConnectError.from(err);
  const message = ce.rawMessage || ce.message;
  switch (ce.code) {
    case Code.NotFound:
      return new WrennError("not_found", message, { cause: err });
    case Code.InvalidArgument:
      return new WrennError("invalid_argument", message, { cause: err });
    case Code.FailedPrecondition:
      return new WrennError("failed_precondition", message, { cause: err });
    case Code.AlreadyExists:
      return new WrennError("already_exists", message, { cause: err });
    default:
      return new WrennError("unavailable", `host agent at ${address}: ${message}`, { cause: err });
  }
}
