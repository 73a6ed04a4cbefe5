import { Readable } from "node:stream";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Process, Signal } from "@wrenn/proto/process/process_pb.js";
import { WrennError } from "@wrenn/shared/errors.ts";

export const ENVD_PORT = 49983;

export interface ExecOptions {
  cmd: string;
  args: string[];
  envs?: Record<string, string>;
  cwd?: string;
  user?: string;
  signal?: AbortSignal;
}

export type ExecEvent =
  | { type: "start"; pid: number }
  | { type: "stdout" | "stderr"; data: Uint8Array }
  | { type: "end"; exitCode: number; error?: string };

export interface InitOptions {
  envVars: Record<string, string>;
  accessToken?: string;
  defaultUser?: string;
}

/**
 * The host agent's view of one guest's envd: health, /init, process streams
 * and /files. Speaks the same protocol the e2b SDK does, in binary.
 */
export class EnvdClient {
  readonly baseUrl: string;
  private readonly accessToken: string | undefined;
  private readonly process: Client<typeof Process>;
  /** Aborts every request when the VM behind this envd is gone (a dead guest sends no RST). */
  private readonly gone: AbortSignal | undefined;

  constructor(address: string, accessToken?: string, gone?: AbortSignal) {
    this.baseUrl = `http://${address}`;
    this.accessToken = accessToken || undefined;
    this.gone = gone;
    this.process = createClient(
      Process,
      createConnectTransport({ baseUrl: this.baseUrl, httpVersion: "1.1", useBinaryFormat: true }),
    );
  }

  private signal(own?: AbortSignal): AbortSignal | undefined {
    const all = [own, this.gone].filter((s): s is AbortSignal => s !== undefined);
    return all.length > 1 ? AbortSignal.any(all) : all[0];
  }

  private headers(user?: string): Record<string, string> {
    const h: Record<string, string> = {};
    if (this.accessToken) h["x-access-token"] = this.accessToken;
    if (user) h.authorization = `Basic ${Buffer.from(`${user}:`).toString("base64")}`;
    return h;
  }

  async healthy(timeoutMs = 1000): Promise<boolean> {
    try {
      const res = await fetch(`${this.baseUrl}/health`, { signal: AbortSignal.timeout(timeoutMs) });
      await res.body?.cancel();
      return res.status === 204 || res.status === 200;
    } catch {
      return false;
    }
  }

  /** Polls /health until it answers, the deadline passes, or `abort` fires (e.g. the VM died). */
  async waitHealthy(deadlineMs: number, abort?: AbortSignal): Promise<void> {
    const until = Date.now() + deadlineMs;
    while (Date.now() < until) {
      if (abort?.aborted) throw abort.reason;
      if (await this.healthy(Math.min(1000, Math.max(100, until - Date.now())))) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new WrennError(
      "deadline_exceeded",
      `envd at ${this.baseUrl} did not answer within ${deadlineMs} ms`,
    );
  }

  async init(options: InitOptions): Promise<void> {
    const res = await fetch(`${this.baseUrl}/init`, {
      method: "POST",
      headers: { "content-type": "application/json", ...this.headers() },
      body: JSON.stringify({
        envVars: options.envVars,
        accessToken: options.accessToken,
        defaultUser: options.defaultUser,
        timestamp: new Date().toISOString(),
      }),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    if (!res.ok) {
      throw new WrennError("unavailable", `envd /init answered ${res.status}: ${text}`);
    }
  }

  async *execStream(options: ExecOptions): AsyncGenerator<ExecEvent> {
    const stream = this.process.start(
      {
        process: {
          cmd: options.cmd,
          args: options.args,
          envs: options.envs ?? {},
          cwd: options.cwd,
        },
        stdin: false,
      },
      { headers: this.headers(options.user), signal: this.signal(options.signal) },
    );
    try {
      for await (const res of stream) {
        const ev = res.event?.event;
        if (ev === undefined) continue;
        if (ev.case === "start") yield { type: "start", pid: ev.value.pid };
        else if (ev.case === "data") {
          const out = ev.value.output;
          if (out.case === "stdout" || out.case === "stderr")
            yield { type: out.case, data: out.value };
        } else if (ev.case === "end") {
          yield { type: "end", exitCode: ev.value.exitCode, error: ev.value.error };
        }
      }
    } catch (err) {
      if (this.gone?.aborted) throw this.gone.reason;
      throw fromConnect(err);
    }
  }

  async kill(pid: number): Promise<void> {
    await this.process
      .sendSignal(
        { process: { selector: { case: "pid", value: pid } }, signal: Signal.SIGKILL },
        { headers: this.headers(), timeoutMs: 5000 },
      )
      .catch(() => {
        // Already gone: nothing to kill.
      });
  }

  /** Streams `body` into a file in the guest (never buffered whole). */
  async writeFile(path: string, body: Readable | Uint8Array, user?: string): Promise<void> {
    const url = `${this.baseUrl}/files?${new URLSearchParams({ path, ...(user ? { username: user } : {}) })}`;
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/octet-stream", ...this.headers() },
      body:
        body instanceof Uint8Array ? body : (Readable.toWeb(body) as ReadableStream<Uint8Array>),
      duplex: "half",
      signal: this.signal(),
    } as RequestInit).catch((err: unknown) => {
      throw this.gone?.aborted ? this.gone.reason : err;
    });
    if (!res.ok) throw await filesError(res, path);
    await res.body?.cancel();
  }

  /** A stream of the guest file's bytes. */
  async readFile(path: string, user?: string): Promise<ReadableStream<Uint8Array>> {
    const url = `${this.baseUrl}/files?${new URLSearchParams({ path, ...(user ? { username: user } : {}) })}`;
    const res = await fetch(url, { headers: this.headers(), signal: this.signal() }).catch(
      (err: unknown) => {
        throw this.gone?.aborted ? this.gone.reason : err;
      },
    );
    if (!res.ok || res.body === null) throw await filesError(res, path);
    return res.body;
  }
}

async function filesError(res: Response, path: string): Promise<WrennError> {
  const text = await res.text().catch(() => "");
  let message = text;
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    if (typeof parsed.message === "string") message = parsed.message;
  } catch {
    // Not JSON: keep the raw text.
  }
  const code =
    res.status === 404
      ? "not_found"
      : res.status === 400
        ? "invalid_argument"
        : res.status === 401 || res.status === 403
          ? "permission_denied"
          : res.status === 507
            ? "resource_exhausted"
            : "unavailable";
  return new WrennError(code, `${path}: ${message || `envd answered ${res.status}`}`);
}

function fromConnect(err: unknown): unknown {
  if (!(err instanceof ConnectError)) return err;
  switch (err.code) {
    case Code.NotFound:
      return new WrennError("not_found", err.rawMessage, { cause: err });
    case Code.InvalidArgument:
      return new WrennError("invalid_argument", err.rawMessage, { cause: err });
    case Code.Unauthenticated:
    case Code.PermissionDenied:
      return new WrennError("permission_denied", err.rawMessage, { cause: err });
    case Code.Canceled:
      return new WrennError("cancelled", err.rawMessage, { cause: err });
    case Code.DeadlineExceeded:
      return new WrennError("deadline_exceeded", err.rawMessage, { cause: err });
    default:
      return new WrennError("unavailable", `envd: ${err.rawMessage}`, { cause: err });
  }
}
