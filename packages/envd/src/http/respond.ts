import type { ServerResponse } from "node:http";
import { messageOf, WrennError, type ErrorCode } from "@wrenn/shared/errors.ts";

const STATUS: Record<ErrorCode, number> = {
  invalid_argument: 400,
  not_found: 404,
  already_exists: 409,
  failed_precondition: 412,
  permission_denied: 403,
  unauthenticated: 401,
  // The e2b SDK reads 507 as "not enough space"; ENOSPC is the only exhaustion /files meets.
  resource_exhausted: 507,
  deadline_exceeded: 504,
  cancelled: 499,
  unavailable: 503,
  internal: 500,
};

/** An HTTP error as E2B's envd sends it: `{code, message}` with the status as code. */
export function sendError(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    // Mid-body the status is gone; cutting the connection is the only signal left.
    res.destroy(new Error(message));
    return;
  }
  const body = JSON.stringify({ code: status, message });
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

export function statusOf(err: unknown): number {
  return err instanceof WrennError ? STATUS[err.code] : 500;
}

export function sendFailure(res: ServerResponse, err: unknown): void {
  sendError(res, statusOf(err), messageOf(err));
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}
