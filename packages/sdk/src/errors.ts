/**
 * Errors the API answers with (`{"error":{"code","message"}}`), as classes a
 * caller can `instanceof` or switch on by `code`. The codes are Connect's
 * names, as the control plane uses them.
 */
export type ErrorCode =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "failed_precondition"
  | "permission_denied"
  | "unauthenticated"
  | "resource_exhausted"
  /** Too many requests from this address (429, with Retry-After). */
  | "rate_limited"
  /** The team holds as much as its quota allows (429; the message names the limit). */
  | "quota_exceeded"
  | "deadline_exceeded"
  | "cancelled"
  | "unavailable"
  | "internal";

export class WrennApiError extends Error {
  readonly code: ErrorCode;
  /** The HTTP status, or 0 when no response arrived. */
  readonly status: number;

  constructor(code: ErrorCode, message: string, status: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "WrennApiError";
    this.code = code;
    this.status = status;
  }
}

export class InvalidArgumentError extends WrennApiError {
  override name = "InvalidArgumentError";
}
export class NotFoundError extends WrennApiError {
  override name = "NotFoundError";
}
/** already_exists and failed_precondition: the request conflicts with the current state. */
export class ConflictError extends WrennApiError {
  override name = "ConflictError";
}
export class AuthenticationError extends WrennApiError {
  override name = "AuthenticationError";
}
export class PermissionDeniedError extends WrennApiError {
  override name = "PermissionDeniedError";
}
export class ResourceExhaustedError extends WrennApiError {
  override name = "ResourceExhaustedError";
}
export class TimeoutError extends WrennApiError {
  override name = "TimeoutError";
}
/** The API, a host or the sandbox could not be reached (or answered 5xx). */
export class UnavailableError extends WrennApiError {
  override name = "UnavailableError";
}

const CLASSES: Record<ErrorCode, typeof WrennApiError> = {
  invalid_argument: InvalidArgumentError,
  not_found: NotFoundError,
  already_exists: ConflictError,
  failed_precondition: ConflictError,
  permission_denied: PermissionDeniedError,
  unauthenticated: AuthenticationError,
  resource_exhausted: ResourceExhaustedError,
  rate_limited: ResourceExhaustedError,
  quota_exceeded: ResourceExhaustedError,
  deadline_exceeded: TimeoutError,
  cancelled: TimeoutError,
  unavailable: UnavailableError,
  internal: WrennApiError,
};

const BY_STATUS: Record<number, ErrorCode> = {
  400: "invalid_argument",
  401: "unauthenticated",
  403: "permission_denied",
  404: "not_found",
  409: "failed_precondition",
  413: "invalid_argument",
  429: "resource_exhausted",
  502: "unavailable",
  503: "unavailable",
  504: "deadline_exceeded",
};

function isCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && Object.hasOwn(CLASSES, value);
}

/** The typed error for a code (e.g. from the exec stream's error event). */
export function errorOf(code: ErrorCode, message: string, status: number): WrennApiError {
  return new CLASSES[code](code, message, status);
}

/** The typed error for a failed response, from its body when it has the API's shape. */
export function errorFromBody(status: number, body: unknown): WrennApiError {
  const e = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  const code = isCode(e?.code)
    ? e.code
    : (BY_STATUS[status] ?? (status >= 500 ? "internal" : "invalid_argument"));
  const message = typeof e?.message === "string" ? e.message : `the API answered HTTP ${status}`;
  return errorOf(code, message, status);
}

/** A request that got no answer: the URL is wrong or the control plane is down. */
export function unreachable(url: string, cause: unknown): UnavailableError {
  const why = (cause as { cause?: { code?: string; message?: string } })?.cause;
  const detail =
    why?.code ?? why?.message ?? (cause instanceof Error ? cause.message : String(cause));
  return new UnavailableError(
    "unavailable",
    `cannot reach the Wrenn API at ${url} (${detail})`,
    0,
    { cause },
  );
}
