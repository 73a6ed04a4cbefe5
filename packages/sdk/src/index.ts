export { Wrenn, type ConnectOptions, type Template } from "./wrenn.ts";
export {
  Sandbox,
  type CreateSandboxOptions,
  type ExecOptions,
  type ExecResult,
  type MetricSample,
  type SandboxLogs,
  type SandboxInfo,
  type SandboxStatus,
  type StreamOptions,
} from "./sandbox.ts";
export type { ExecEvent } from "./exec-stream.ts";
export { Files, type FileData, type FileOptions } from "./files.ts";
export {
  AuthenticationError,
  ConflictError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  TimeoutError,
  UnavailableError,
  WrennApiError,
  errorFromBody,
  type ErrorCode,
} from "./errors.ts";
export type { components, paths } from "./gen/openapi.d.ts";
