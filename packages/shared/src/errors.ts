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

/** The `message` of a JSON error answer, or the answer's text as it is. */
export function answerMessage(text: string): string {
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    if (typeof parsed.message === "string") return parsed.message;
  } catch {
    // Not JSON: the raw text.
  }
  return text;
}

/**
 * An error answer from envd's `/files` as an error, for whoever relays it
 * (the agent's file calls, the control plane's reads through the proxy hop).
 */
export function envdFilesError(status: number, message: string, path: string): WrennError {
  const code: ErrorCode =
    status === 404
      ? "not_found"
      : status === 400
        ? "invalid_argument"
        : status === 401 || status === 403
          ? "permission_denied"
          : status === 507
            ? "resource_exhausted"
            : "unavailable";
  return new WrennError(code, `${path}: ${message || `envd answered ${status}`}`);
}
