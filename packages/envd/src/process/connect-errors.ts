import { Code, ConnectError } from "@connectrpc/connect";
import { messageOf, WrennError, type ErrorCode } from "@wrenn/shared/errors.ts";

const CODES: Record<ErrorCode, Code> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  permission_denied: Code.PermissionDenied,
  unauthenticated: Code.Unauthenticated,
  resource_exhausted: Code.ResourceExhausted,
  deadline_exceeded: Code.DeadlineExceeded,
  cancelled: Code.Canceled,
  unavailable: Code.Unavailable,
  internal: Code.Internal,
};

/**
 * Connect would report a plain WrennError as `unknown`; clients (the e2b SDK
 * among them) branch on the code, e.g. `not_found` from kill() means "false".
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof WrennError)
    return new ConnectError(err.message, CODES[err.code], undefined, undefined, err);
  return new ConnectError(messageOf(err), Code.Internal, undefined, undefined, err);
}
