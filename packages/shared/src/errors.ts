/**
 * Error codes follow Connect's names so a failure keeps its meaning from the
 * guest, through the agent, to the REST API (which maps them to HTTP status).
 */
export type ErrorCode =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "failed_precondition"
  | "permission_denied"
  | "unauthenticated"
  | "resource_exhausted"
  | "deadline_exceeded"
  | "cancelled"
  | "unavailable"
  | "internal";

export class WrennError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "WrennError";
    this.code = code;
  }
}

export function isWrennError(err: unknown, code?: ErrorCode): err is WrennError {
  return err instanceof WrennError && (code === undefined || err.code === code);
}

/** The message of anything thrown, for logs and user-facing errors. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * What an error status from envd's `/files` means, for whoever relays it
 * (the agent's file calls, the control plane's reads through the proxy hop).
 */
export function envdFilesErrorCode(status: number): ErrorCode {
  if (status === 404) return "not_found";
  if (status === 400) return "invalid_argument";
  if (status === 401 || status === 403) return "permission_denied";
  if (status === 507) return "resource_exhausted";
  return "unavailable";
}
