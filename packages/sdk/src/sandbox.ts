import { execEvents, type ExecEvent, type ExecRequest } from "./exec-stream.ts";
import { Files } from "./files.ts";
import type { components } from "./gen/openapi.d.ts";
import type { Template, Wrenn } from "./wrenn.ts";

export type SandboxInfo = components["schemas"]["Sandbox"];
export type SandboxStatus = SandboxInfo["status"];
export type CreateSandboxOptions = Partial<components["schemas"]["CreateSandbox"]>;
export type MetricSample = components["schemas"]["MetricSample"];
export type SandboxLogs = components["schemas"]["SandboxLogs"];

export interface ExecOptions {
  /** Seconds the command may run (default 60, at most 3600). */
  timeoutSec?: number;
  envs?: Record<string, string>;
  cwd?: string;
  user?: string;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
  durationMs: number;
}

export interface StreamOptions extends ExecOptions {
  onStdout?: (data: Uint8Array) => void;
  onStderr?: (data: Uint8Array) => void;
  /** Aborting closes the stream, which stops the command. */
  signal?: AbortSignal;
}

function execBody(cmd: string, args: string[], o: ExecOptions): ExecRequest {
  return {
    cmd,
    args,
    timeout_sec: o.timeoutSec ?? 60,
    ...(o.envs ? { envs: o.envs } : {}),
    ...(o.cwd ? { cwd: o.cwd } : {}),
    ...(o.user ? { user: o.user } : {}),
  };
}

/** One sandbox: its last known state, and what can be done with it. */
export class Sandbox {
  readonly #wrenn: Wrenn;
  #info: SandboxInfo;
  /** Reading and writing the sandbox's files. */
  readonly files: Files;

  private constructor(wrenn: Wrenn, info: SandboxInfo) {
    this.#wrenn = wrenn;
    this.#info = info;
    this.files = new Files(wrenn, info.sandbox_id);
  }

  /** Creates a sandbox (default template `minimal`) and returns once it runs. */
  static async create(wrenn: Wrenn, options: CreateSandboxOptions = {}): Promise<Sandbox> {
    // The document marks fields with server-side defaults as required; the API fills them in.
    const body = options as components["schemas"]["CreateSandbox"];
    const info = await wrenn.call(wrenn.api.POST("/v1/sandboxes", { body }));
    return new Sandbox(wrenn, info);
  }

  static async get(wrenn: Wrenn, id: string): Promise<Sandbox> {
    return new Sandbox(wrenn, await Sandbox.#fetchInfo(wrenn, id));
  }

  /** The team's pending, running and paused sandboxes, newest first (every page). */
  static async list(wrenn: Wrenn): Promise<Sandbox[]> {
    const all: Sandbox[] = [];
    let next: string | undefined;
    do {
      const query: { limit: number; next_token?: string } = { limit: 1000 };
      if (next) query.next_token = next;
      const answer = await wrenn.api.GET("/v1/sandboxes", { params: { query } });
      const page = await wrenn.call(Promise.resolve(answer));
      all.push(...page.map((info) => new Sandbox(wrenn, info)));
      next = answer.response.headers.get("x-next-token") ?? undefined;
    } while (next);
    return all;
  }

  static async #fetchInfo(wrenn: Wrenn, id: string): Promise<SandboxInfo> {
    return wrenn.call(wrenn.api.GET("/v1/sandboxes/{id}", { params: { path: { id } } }));
  }

  get id(): string {
    return this.#info.sandbox_id;
  }

  /** The state as of the last call that returned it; refresh() asks again. */
  get info(): SandboxInfo {
    return this.#info;
  }

  get status(): SandboxStatus {
    return this.#info.status;
  }

  async refresh(): Promise<SandboxInfo> {
    this.#info = await Sandbox.#fetchInfo(this.#wrenn, this.id);
    return this.#info;
  }

  /** Runs a command to completion and returns its output. */
  async exec(cmd: string, args: string[] = [], options: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.#wrenn.call(
      this.#wrenn.api.POST("/v1/sandboxes/{id}/exec", {
        params: { path: { id: this.id } },
        body: execBody(cmd, args, options),
      }),
    );
    const text = (s: string) =>
      r.encoding === "base64" ? Buffer.from(s, "base64").toString("utf8") : s;
    return {
      stdout: text(r.stdout),
      stderr: text(r.stderr),
      exitCode: r.exit_code,
      durationMs: r.duration_ms,
    };
  }

  /** The command's events (start, stdout/stderr chunks, end) as they happen. */
  stream(
    cmd: string,
    args: string[] = [],
    options: ExecOptions & { signal?: AbortSignal } = {},
  ): AsyncGenerator<ExecEvent, void, undefined> {
    return execEvents(
      this.#wrenn.apiUrl,
      this.#wrenn.apiKey,
      this.id,
      execBody(cmd, args, options),
      options.signal,
    );
  }

  /** Runs a command, handing output to the callbacks as it arrives; resolves with the exit code. */
  async execStream(
    cmd: string,
    args: string[] = [],
    options: StreamOptions = {},
  ): Promise<{ exitCode: number; error: string }> {
    for await (const ev of this.stream(cmd, args, options)) {
      if (ev.type === "stdout") options.onStdout?.(ev.data);
      else if (ev.type === "stderr") options.onStderr?.(ev.data);
      else if (ev.type === "end") return { exitCode: ev.exitCode, error: ev.error };
    }
    throw new Error("unreachable: the stream ends with an end event or an error");
  }

  /** Pauses it: memory and disk are kept, it stops costing CPU. */
  async pause(): Promise<SandboxInfo> {
    this.#info = await this.#wrenn.call(
      this.#wrenn.api.POST("/v1/sandboxes/{id}/pause", { params: { path: { id: this.id } } }),
    );
    return this.#info;
  }

  /** Resumes a paused sandbox exactly where it was; `timeoutSec` sets a new lifetime. */
  async resume(options: { timeoutSec?: number } = {}): Promise<SandboxInfo> {
    const body = options.timeoutSec ? { timeout_sec: options.timeoutSec } : {};
    this.#info = await this.#wrenn.call(
      this.#wrenn.api.POST("/v1/sandboxes/{id}/resume", {
        params: { path: { id: this.id } },
        body,
      }),
    );
    return this.#info;
  }

  /** Keeps it alive and checks it answers. */
  async ping(): Promise<void> {
    await this.#wrenn.call(
      this.#wrenn.api.POST("/v1/sandboxes/{id}/ping", { params: { path: { id: this.id } } }),
    );
  }

  /** CPU, memory and disk samples of the running sandbox, oldest first (`sinceMs`: Unix ms). */
  async metrics(options: { sinceMs?: number } = {}): Promise<MetricSample[]> {
    const query = options.sinceMs ? { since_ms: options.sinceMs } : {};
    return this.#wrenn.call(
      this.#wrenn.api.GET("/v1/sandboxes/{id}/metrics", {
        params: { path: { id: this.id }, query },
      }),
    );
  }

  /**
   * The guest's console (kernel, init and envd output) of the running VM,
   * from byte `offset` (default: the oldest kept); read again from
   * `next_offset` to follow it.
   */
  async logs(options: { offset?: number; limit?: number } = {}): Promise<SandboxLogs> {
    return this.#wrenn.call(
      this.#wrenn.api.GET("/v1/sandboxes/{id}/logs", {
        params: { path: { id: this.id }, query: options },
      }),
    );
  }

  /** Turns it into a template new sandboxes start from; the sandbox is left paused. */
  async snapshot(name?: string, options: { overwrite?: boolean } = {}): Promise<Template> {
    const query = options.overwrite ? { overwrite: "true" as const } : {};
    const template = await this.#wrenn.call(
      this.#wrenn.api.POST("/v1/snapshots", {
        params: { query },
        body: name ? { sandbox_id: this.id, name } : { sandbox_id: this.id },
      }),
    );
    await this.refresh();
    return template;
  }

  /** Destroys it and everything in it. */
  async destroy(): Promise<void> {
    await this.#wrenn.call(
      this.#wrenn.api.DELETE("/v1/sandboxes/{id}", { params: { path: { id: this.id } } }),
    );
  }
}
