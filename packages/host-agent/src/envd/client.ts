/**
 * The host agent's client of one guest's envd, over both of envd's surfaces
 * (plain HTTP: health, /init, /metrics, /files; Connect: processes and
 * terminals) on one connection pool and one abort signal per VM run.
 * Over 400 lines on purpose: every call shares the pool, the token, the
 * "VM gone" abort and the bounds on what the guest may send back; split by
 * surface, each half would re-implement them.
 */
import { randomBytes } from "node:crypto";
import { Agent, request, type IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { z } from "zod";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Filesystem } from "@wrenn/proto/filesystem/filesystem_pb.js";
import { Process, Signal } from "@wrenn/proto/process/process_pb.js";
import { WrennError, answerMessage, envdFilesError, messageOf } from "@wrenn/shared/errors.ts";
import { ControlChannel, ControlRefusal } from "./control.ts";

/**
 * The guest is not trusted: no message or answer it sends is buffered past
 * these. envd's output events are small chunks; a process stream message
 * past 4 MiB is an error, as is a JSON answer past 1 MiB.
 */
const ENVD_MESSAGE_MAX_BYTES = 4 * 1024 * 1024;
const ENVD_TEXT_MAX_BYTES = 1024 * 1024;

export interface ExecOptions {
  cmd: string;
  args: string[];
  envs?: Record<string, string>;
  cwd?: string;
  user?: string;
  signal?: AbortSignal;
  /**
   * Connect's JSON, as E2B's SDKs call envd, instead of the agent's binary:
   * for the warm-up, so a user's first E2B command does not pay for that
   * path's first run.
   */
  json?: boolean;
}

export type ExecEvent =
  | { type: "start"; pid: number }
  | { type: "stdout" | "stderr"; data: Uint8Array }
  | { type: "end"; exitCode: number; error?: string };

/** envd's GET /metrics (E2B's names); the guest is not trusted, so it is checked. */
const metricsSchema = z.object({
  ts: z.number().int().nonnegative(),
  cpu_count: z.number().int().nonnegative(),
  cpu_used_pct: z.number().min(0).max(100),
  mem_total: z.number().int().nonnegative(),
  mem_used: z.number().int().nonnegative(),
  disk_used: z.number().int().nonnegative(),
  disk_total: z.number().int().nonnegative(),
});

export type GuestMetrics = z.infer<typeof metricsSchema>;

export type PtyEvent =
  | { type: "start"; pid: number }
  | { type: "data"; data: Uint8Array }
  | { type: "end"; exitCode: number; error?: string };

export interface InitOptions {
  envVars: Record<string, string>;
  accessToken?: string;
  defaultUser?: string;
  /** The guest's name for itself: the sandbox's id (a pool entry keeps its snapshot's). */
  hostname?: string;
}

/**
 * The host agent's view of one guest's envd: health, /init, process streams
 * and /files. Speaks the same protocol the e2b SDK does, in binary.
 */
export class EnvdClient {
  readonly baseUrl: string;
  /** The token envd expects now; /init replaces it with the one it sets. */
  private accessToken: string | undefined;
  private readonly process: Client<typeof Process>;
  private readonly processJson: Client<typeof Process>;
  /** envd's filesystem service in Connect's JSON format, as E2B's SDKs call it. */
  private readonly filesystem: Client<typeof Filesystem>;
  /** Aborts every request when the VM behind this envd is gone (a dead guest sends no RST). */
  private readonly gone: AbortSignal | undefined;

  /**
   * One connection pool per guest incarnation: slot addresses are reused,
   * and a pooled connection to an earlier VM at the same address (or to the
   * VM a snapshot was taken from) must never carry this one's requests.
   */
  private readonly agent = new Agent({
    keepAlive: true,
    maxSockets: 64,
    // TCP keepalive probes start after this much silence and give up 10
    // probes (1 s apart) later: a TCG guest on a loaded host can be starved
    // for seconds, and its connection must not die of it (1 s by default).
    keepAliveMsecs: 30_000,
  });

  /**
   * /init's way in once openControl() was called: envd's control channel
   * (envd/control.ts), whose request costs a TCG guest less of its VMM's
   * CPU than POST /init.
   */
  private readonly control: ControlChannel;

  constructor(address: string, accessToken?: string, gone?: AbortSignal) {
    this.baseUrl = `http://${address}`;
    this.control = new ControlChannel(address);
    this.accessToken = accessToken || undefined;
    this.gone = gone;
    const transport = (useBinaryFormat: boolean) =>
      createConnectTransport({
        baseUrl: this.baseUrl,
        httpVersion: "1.1",
        useBinaryFormat,
        readMaxBytes: ENVD_MESSAGE_MAX_BYTES,
        writeMaxBytes: ENVD_MESSAGE_MAX_BYTES,
        nodeOptions: { agent: this.agent },
      });
    this.process = createClient(Process, transport(true));
    this.processJson = createClient(Process, transport(false));
    this.filesystem = createClient(Filesystem, transport(false));
  }

  /** Drops every pooled connection; the client is not used afterwards. */
  close(): void {
    this.agent.destroy();
    this.control.close();
  }

  /** One plain HTTP request on this guest's pool; the body may be a stream. */
  private http(
    method: string,
    path: string,
    opts: {
      headers?: Record<string, string>;
      body?: Readable | Uint8Array | string;
      signal?: AbortSignal;
    } = {},
  ): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = request(`${this.baseUrl}${path}`, {
        method,
        agent: this.agent,
        headers: opts.headers,
        signal: opts.signal,
      });
      req.once("response", resolve);
      req.once("error", (err) => reject(this.gone?.aborted ? this.gone.reason : err));
      if (opts.body instanceof Readable) {
        pipeline(opts.body, req).catch((err: unknown) => req.destroy(err as Error));
      } else {
        req.end(opts.body);
      }
    });
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
      const res = await this.http("GET", "/health", { signal: AbortSignal.timeout(timeoutMs) });
      res.resume();
      return res.statusCode === 204 || res.statusCode === 200;
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

  /**
   * POST /init. Transport failures (a restored guest's stack still settling:
   * reset or refused connections) are retried until `deadlineMs`; an HTTP
   * error answer is not, since envd gave its reason.
   *
   * Every call carries fresh random bytes that envd mixes into the guest
   * kernel's pool and reseeds it with: guests restored from one memory
   * snapshot otherwise share its CRNG state, and /dev/urandom with it.
   */
  async init(options: InitOptions, abort?: AbortSignal, deadlineMs = 10_000): Promise<void> {
    const init = {
      envVars: options.envVars,
      accessToken: options.accessToken,
      defaultUser: options.defaultUser,
      hostname: options.hostname,
      timestamp: new Date().toISOString(),
      entropy: randomBytes(64).toString("base64"),
    };
    const signal = this.signal(
      AbortSignal.any([AbortSignal.timeout(deadlineMs), ...(abort ? [abort] : [])]),
    );
    if (this.control.usable && signal) {
      try {
        await this.control.init(this.accessToken, init, signal);
        this.accessToken = options.accessToken || undefined;
        return;
      } catch (err) {
        if (err instanceof ControlRefusal) {
          throw new WrennError("unavailable", `envd /init answered ${err.status}: ${err.message}`);
        }
        if (abort?.aborted) throw abort.reason;
        // Not connected, or an envd without the channel: the same over HTTP.
      }
    }
    const body = JSON.stringify(init);
    const until = Date.now() + deadlineMs;
    let res: IncomingMessage;
    for (;;) {
      try {
        res = await this.http("POST", "/init", {
          headers: { "content-type": "application/json", ...this.headers() },
          body,
          signal,
        });
        break;
      } catch (err) {
        if (abort?.aborted) throw abort.reason;
        if (Date.now() >= until) {
          throw new WrennError(
            "unavailable",
            `envd at ${this.baseUrl} did not take /init: ${messageOf(err)}`,
            { cause: err },
          );
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const text = await readText(res);
    if (!ok(res)) {
      throw new WrennError("unavailable", `envd /init answered ${res.statusCode}: ${text}`);
    }
    this.accessToken = options.accessToken || undefined;
  }

  /** Whether envd's control channel is open (the next /init takes it). */
  get controlOpen(): boolean {
    return this.control.connected;
  }

  /**
   * Opens envd's control channel for the inits to come (ControlChannel.open
   * says when that pays). An envd without it, or one that cannot be
   * reached, leaves /init on HTTP: only the inits' own errors count.
   */
  async openControl(timeoutMs = 10_000): Promise<void> {
    const signal = this.signal(AbortSignal.timeout(timeoutMs));
    if (signal) await this.control.open(signal).catch(() => undefined);
  }

  /** One resource sample from the guest (envd's CPU % is since its previous sample). */
  async metrics(timeoutMs: number): Promise<GuestMetrics> {
    const res = await this.http("GET", "/metrics", {
      headers: this.headers(),
      signal: this.signal(AbortSignal.timeout(timeoutMs)),
    });
    const text = await readText(res);
    if (!ok(res)) {
      throw new WrennError("unavailable", `envd /metrics answered ${res.statusCode}: ${text}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new WrennError("unavailable", "envd /metrics answered something that is not JSON");
    }
    const result = metricsSchema.safeParse(parsed);
    if (!result.success) {
      throw new WrennError(
        "unavailable",
        `envd /metrics answered an unexpected shape: ${result.error.issues[0]?.message ?? ""}`,
      );
    }
    return result.data;
  }

  async *execStream(options: ExecOptions): AsyncGenerator<ExecEvent> {
    const stream = (options.json ? this.processJson : this.process).start(
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

  /**
   * A terminal: starts a login bash on a PTY (pid 0) or reattaches to a PTY by
   * pid. envd keeps the process when the stream drops, so a reattach after a
   * reload or a resume finds the same shell.
   */
  async *ptyStream(options: {
    pid: number;
    cols: number;
    rows: number;
    user?: string;
    signal?: AbortSignal;
  }): AsyncGenerator<PtyEvent> {
    const call = { headers: this.headers(options.user), signal: this.signal(options.signal) };
    const stream =
      options.pid === 0
        ? this.process.start(
            {
              process: { cmd: "/bin/bash", args: ["-l"], envs: {} },
              pty: { size: { cols: options.cols, rows: options.rows } },
              stdin: true,
            },
            call,
          )
        : this.process.connect(
            { process: { selector: { case: "pid", value: options.pid } } },
            call,
          );
    try {
      for await (const res of stream) {
        const ev = res.event?.event;
        if (ev === undefined) continue;
        if (ev.case === "start") yield { type: "start", pid: ev.value.pid };
        else if (ev.case === "data") {
          const out = ev.value.output;
          if (out.case === "pty" || out.case === "stdout" || out.case === "stderr")
            yield { type: "data", data: out.value };
        } else if (ev.case === "end") {
          yield { type: "end", exitCode: ev.value.exitCode, error: ev.value.error };
        }
      }
    } catch (err) {
      if (this.gone?.aborted) throw this.gone.reason;
      throw fromConnect(err);
    }
  }

  async ptyInput(pid: number, data: Uint8Array): Promise<void> {
    await this.process
      .sendInput(
        {
          process: { selector: { case: "pid", value: pid } },
          input: { input: { case: "pty", value: data } },
        },
        { headers: this.headers(), signal: this.signal(), timeoutMs: 10_000 },
      )
      .catch((err: unknown) => {
        throw fromConnect(err);
      });
  }

  async ptyResize(pid: number, cols: number, rows: number): Promise<void> {
    await this.process
      .update(
        { process: { selector: { case: "pid", value: pid } }, pty: { size: { cols, rows } } },
        { headers: this.headers(), signal: this.signal(), timeoutMs: 10_000 },
      )
      .catch((err: unknown) => {
        throw fromConnect(err);
      });
  }

  /** Streams `body` into a file in the guest (never buffered whole). */
  async writeFile(path: string, body: Readable | Uint8Array, user?: string): Promise<void> {
    const query = new URLSearchParams({ path, ...(user ? { username: user } : {}) });
    const res = await this.http("POST", `/files?${query}`, {
      headers: { "content-type": "application/octet-stream", ...this.headers() },
      body,
      signal: this.signal(),
    });
    if (!ok(res)) throw await filesError(res, path);
    res.resume();
  }

  /**
   * Writes `data` to `path` as E2B's SDKs do: one multipart/form-data part
   * with the path as its filename (a path of quotes or line breaks cannot be
   * sent so).
   */
  async writeFileForm(path: string, data: Uint8Array, user?: string): Promise<void> {
    if (/["\r\n]/.test(path)) {
      throw new WrennError("invalid_argument", `a form cannot name '${path}'`);
    }
    const boundary = `wrenn-${randomBytes(12).toString("hex")}`;
    const body = Buffer.concat([
      Buffer.from(
        `--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="${path}"\r\n` +
          "content-type: application/octet-stream\r\n\r\n",
      ),
      data,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const query = new URLSearchParams(user ? { username: user } : {});
    const res = await this.http("POST", `/files?${query}`, {
      headers: {
        "content-type": `multipart/form-data; boundary=${boundary}`,
        "content-length": String(body.length),
        ...this.headers(),
      },
      body,
      signal: this.signal(),
    });
    if (!ok(res)) throw await filesError(res, path);
    res.resume();
  }

  /** The names in a directory (envd's ListDir, as E2B's `files.list` calls it). */
  async listDir(path: string, user?: string): Promise<string[]> {
    const res = await this.filesystem
      .listDir(
        { path, depth: 1 },
        { headers: this.headers(user), signal: this.signal(), timeoutMs: 30_000 },
      )
      .catch((err: unknown) => {
        throw fromConnect(err);
      });
    return res.entries.map((e) => e.name);
  }

  /** A stream of the guest file's bytes. */
  async readFile(path: string, user?: string): Promise<Readable> {
    const query = new URLSearchParams({ path, ...(user ? { username: user } : {}) });
    const res = await this.http("GET", `/files?${query}`, {
      headers: this.headers(),
      signal: this.signal(),
    });
    if (!ok(res)) throw await filesError(res, path);
    return res;
  }
}

function ok(res: IncomingMessage): boolean {
  return (res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300;
}

/** A small answer's body as text; a longer one is an error (and its connection is dropped). */
async function readText(res: IncomingMessage, max = ENVD_TEXT_MAX_BYTES): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of res) {
    size += (c as Buffer).length;
    if (size > max) {
      res.destroy();
      throw new WrennError(
        "unavailable",
        `envd answered more than ${max} bytes where it should not`,
      );
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

async function filesError(res: IncomingMessage, path: string): Promise<WrennError> {
  const text = await readText(res).catch(() => "");
  return envdFilesError(res.statusCode ?? 0, answerMessage(text), path);
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
