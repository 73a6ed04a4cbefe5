import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { messageOf, WrennError, type ErrorCode } from "./errors.ts";

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
 * Connect would report a plain WrennError as `unknown`; clients (the e2b SDK,
 * the control plane) branch on the code, so it must survive the wire.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof WrennError) {
    return new ConnectError(err.message, CODES[err.code], undefined, undefined, err);
  }
  return new ConnectError(messageOf(err), Code.Internal, undefined, undefined, err);
}

async function* mapStreamErrors<T>(messages: AsyncIterable<T>): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (err) {
    throw toConnectError(err);
  }
}

/** Services throw WrennError; clients see the matching Connect code, also mid-stream. */
export function wrennErrorInterceptor(): Interceptor {
  return (next) => async (req) => {
    try {
      const res = await next(req);
      return res.stream ? { ...res, message: mapStreamErrors(res.message) } : res;
    } catch (err) {
      throw toConnectError(err);
    }
  };
}

/** An RPC handler whose WrennErrors reach the client with their Connect code. */
export function guard<A extends unknown[], R>(
  fn: (...args: A) => Promise<R>,
): (...args: A) => Promise<R> {
  return async (...args) => {
    try {
      return await fn(...args);
    } catch (err) {
      throw toConnectError(err);
    }
  };
}

/** The same for a server-streaming handler, also for errors mid-stream. */
export function guardStream<A extends unknown[], R>(
  fn: (...args: A) => AsyncIterable<R>,
): (...args: A) => AsyncIterable<R> {
  return async function* (...args) {
    try {
      yield* fn(...args);
    } catch (err) {
      throw toConnectError(err);
    }
  };
}
