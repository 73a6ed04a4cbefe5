import { createReadStream, createWriteStream } from "node:fs";
import { stat } from "node:fs/promises";
import { basename, join, posix } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { Sandbox, type SandboxInfo } from "../../../sdk/src/index.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import { Bar, withSpinner } from "../ui/progress.ts";
import { paint, status } from "../ui/style.ts";
import { ago, bytes, fields, table } from "../ui/table.ts";
import { connect, printJson } from "./connect.ts";

export interface JsonOption {
  json?: boolean;
}

export interface CreateOptions extends JsonOption {
  template: string;
  vcpus?: number;
  memory?: number;
  disk?: number;
  timeout?: number;
  env?: Record<string, string>;
  metadata?: Record<string, string>;
}

export async function create(o: CreateOptions): Promise<void> {
  const wrenn = await connect();
  const body = {
    template: o.template,
    ...(o.vcpus ? { vcpus: o.vcpus } : {}),
    ...(o.memory ? { memory_mb: o.memory } : {}),
    ...(o.disk ? { disk_size_mb: o.disk } : {}),
    ...(o.timeout ? { timeout_sec: o.timeout } : {}),
    ...(o.env ? { env_vars: o.env } : {}),
    ...(o.metadata ? { metadata: o.metadata } : {}),
  };
  const sb = await quietUnlessTty(o, `creating a sandbox from '${o.template}'`, () =>
    Sandbox.create(wrenn, body),
  );
  if (o.json) printJson(sb.info);
  else process.stdout.write(`${sb.id}\n`);
}

/** The spinner goes to stderr; with --json it stays off so stderr is clean for scripts too. */
function quietUnlessTty<T>(o: JsonOption, label: string, work: () => Promise<T>): Promise<T> {
  return o.json ? work() : withSpinner(label, work);
}

export async function list(o: JsonOption): Promise<void> {
  const sandboxes = await Sandbox.list(await connect());
  if (o.json) {
    printJson(sandboxes.map((s) => s.info));
    return;
  }
  if (sandboxes.length === 0) {
    process.stderr.write("no sandboxes: 'wrenn sandbox create' makes one\n");
    return;
  }
  process.stdout.write(
    table(
      ["ID", "TEMPLATE", "STATUS", "VCPUS", "MEMORY", "CREATED"],
      sandboxes.map(({ info: s }) => [
        s.sandbox_id,
        s.template,
        status(s.status),
        String(s.vcpus),
        `${s.memory_mb} MiB`,
        ago(s.created_at),
      ]),
    ),
  );
}

function describe(s: SandboxInfo): string {
  return fields([
    ["id", s.sandbox_id],
    ["template", s.template],
    ["status", status(s.status)],
    ["vcpus", String(s.vcpus)],
    ["memory", `${s.memory_mb} MiB`],
    ["disk", `${s.disk_size_mb} MiB`],
    ["timeout", `${s.timeout_sec} s`],
    ...(s.end_at ? ([["ends", s.end_at]] as Array<[string, string]>) : []),
    [
      "metadata",
      Object.entries(s.metadata)
        .map(([k, v]) => `${k}=${v}`)
        .join(" ") || "-",
    ],
    ["host", s.host_id ?? "-"],
    ["created", `${s.created_at} (${ago(s.created_at)})`],
    ["updated", s.updated_at],
    ...(s.error ? ([["error", paint("red", s.error)]] as Array<[string, string]>) : []),
  ]);
}

export async function info(id: string, o: JsonOption): Promise<void> {
  const sb = await Sandbox.get(await connect(), id);
  if (o.json) printJson(sb.info);
  else process.stdout.write(describe(sb.info));
}

export interface ExecOptions extends JsonOption {
  timeout?: number;
  cwd?: string;
  user?: string;
  env?: Record<string, string>;
}

/** Streams the command's output as it comes; returns its exit code for the process to exit with. */
export async function exec(id: string, argv: string[], o: ExecOptions): Promise<number> {
  // With options passed through after the id, a `--` separator arrives as an argument.
  const [cmd, ...args] = argv[0] === "--" ? argv.slice(1) : argv;
  if (!cmd)
    throw new WrennError(
      "invalid_argument",
      "name a command: wrenn sandbox exec ID -- CMD [ARGS...]",
    );
  const sb = await Sandbox.get(await connect(), id);
  const opts = {
    ...(o.timeout ? { timeoutSec: o.timeout } : {}),
    ...(o.cwd ? { cwd: o.cwd } : {}),
    ...(o.user ? { user: o.user } : {}),
    ...(o.env ? { envs: o.env } : {}),
  };
  if (o.json) {
    const r = await sb.exec(cmd, args, opts);
    printJson({
      stdout: r.stdout,
      stderr: r.stderr,
      exit_code: r.exitCode,
      duration_ms: r.durationMs,
    });
    return r.exitCode;
  }
  // Ctrl-C closes the stream, which ends the command in the sandbox.
  const abort = new AbortController();
  const onSigint = () => abort.abort(new WrennError("cancelled", "interrupted"));
  process.once("SIGINT", onSigint);
  try {
    const end = await sb.execStream(cmd, args, {
      ...opts,
      signal: abort.signal,
      onStdout: (d) => process.stdout.write(d),
      onStderr: (d) => process.stderr.write(d),
    });
    // envd says "exit status N" for every failing command; the exit code already tells that.
    if (end.error && !/^exit status \d+$/.test(end.error)) {
      process.stderr.write(`wrenn sandbox exec: ${end.error}\n`);
    }
    return end.exitCode;
  } finally {
    process.off("SIGINT", onSigint);
  }
}

/** `ID:/path` names a file in a sandbox; anything else is local. */
function remote(spec: string): { id: string; path: string } | null {
  const m = /^([a-z0-9]{1,64}):(\/.*)$/.exec(spec);
  return m ? { id: m[1]!, path: m[2]! } : null;
}

/** Counts bytes through a stream for the bar. */
function counting(bar: Bar | null): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      bar?.add(chunk.length);
      done(null, chunk);
    },
  });
}

export async function cp(src: string, dst: string, o: JsonOption): Promise<void> {
  const from = remote(src);
  const to = remote(dst);
  if ((from === null) === (to === null)) {
    throw new WrennError(
      "invalid_argument",
      "one side must be in a sandbox as ID:/absolute/path, the other local: wrenn sandbox cp ./file ID:/tmp/file",
    );
  }
  const wrenn = await connect();
  const showBar = !o.json && process.stderr.isTTY === true;
  if (to) {
    const local = await stat(src).catch(() => {
      throw new WrennError("not_found", `no local file '${src}'`);
    });
    if (!local.isFile()) throw new WrennError("invalid_argument", `'${src}' is not a file`);
    const bar = showBar ? new Bar(`${src} → ${dst}`, local.size) : null;
    const sb = await Sandbox.get(wrenn, to.id);
    // `ID:/dir/` means "into that directory", as cp does.
    const target = to.path.endsWith("/") ? to.path + basename(src) : to.path;
    const body = createReadStream(src).pipe(counting(bar));
    const written = await sb.files.write(target, body as AsyncIterable<Buffer>, {
      size: local.size,
    });
    bar?.finish();
    if (o.json) printJson(written);
    else if (!showBar) process.stderr.write(`${src} → ${dst}: ${bytes(written.size)}\n`);
    return;
  }
  const sb = await Sandbox.get(wrenn, from!.id);
  // The read stream has no length: ask the sandbox, so the bar can show an ETA.
  let size: number | undefined;
  if (showBar) {
    const r = await sb.exec("stat", ["-c", "%s", from!.path]).catch(() => null);
    const n = Number(r?.stdout.trim());
    if (r?.exitCode === 0 && Number.isFinite(n)) size = n;
  }
  const bar = showBar ? new Bar(`${src} → ${dst}`, size) : null;
  const stream = await sb.files.read(from!.path);
  // An existing local directory receives the file under its own name, as cp does.
  const into = await stat(dst).then(
    (st) => st.isDirectory(),
    () => false,
  );
  const output = into ? join(dst, posix.basename(from!.path)) : dst;
  let total = 0;
  await pipeline(
    Readable.fromWeb(stream as NodeReadableStream<Uint8Array>),
    new Transform({
      transform(chunk: Buffer, _enc, done) {
        total += chunk.length;
        bar?.add(chunk.length);
        done(null, chunk);
      },
    }),
    dst === "-" ? process.stdout : createWriteStream(output),
  );
  bar?.finish();
  if (o.json) printJson({ path: output, size: total });
  else if (!showBar && dst !== "-") process.stderr.write(`${src} → ${dst}: ${bytes(total)}\n`);
}

export async function pause(id: string, o: JsonOption): Promise<void> {
  const sb = await Sandbox.get(await connect(), id);
  const info = await quietUnlessTty(o, `pausing ${id}`, () => sb.pause());
  if (o.json) printJson(info);
}

export async function resume(id: string, o: JsonOption & { timeout?: number }): Promise<void> {
  const sb = await Sandbox.get(await connect(), id);
  const info = await quietUnlessTty(o, `resuming ${id}`, () =>
    sb.resume(o.timeout ? { timeoutSec: o.timeout } : {}),
  );
  if (o.json) printJson(info);
}

export async function rm(ids: string[], o: JsonOption): Promise<void> {
  const wrenn = await connect();
  const removed: string[] = [];
  for (const id of ids) {
    const sb = await Sandbox.get(wrenn, id);
    await sb.destroy();
    removed.push(id);
    if (!o.json) process.stderr.write(`removed ${id}\n`);
  }
  if (o.json) printJson({ removed });
}

export async function metrics(id: string, o: JsonOption): Promise<void> {
  const sb = await Sandbox.get(await connect(), id);
  const samples = await sb.metrics();
  if (o.json) {
    printJson(samples);
    return;
  }
  if (samples.length === 0) {
    process.stderr.write("no samples yet: the host takes one every few seconds\n");
    return;
  }
  process.stdout.write(
    table(
      ["TIME", "CPU", "MEMORY", "DISK"],
      samples.map((m) => [
        new Date(m.timestamp_ms).toISOString().slice(11, 19),
        `${m.cpu_used_pct.toFixed(1)}% of ${m.cpu_count}`,
        `${bytes(m.mem_used_bytes)} / ${bytes(m.mem_total_bytes)}`,
        `${bytes(m.disk_used_bytes)} / ${bytes(m.disk_total_bytes)}`,
      ]),
    ),
  );
}

/**
 * The sandbox's log. The API has no log route yet, so this is the guest
 * kernel's ring buffer (boot, init and envd's start), read with dmesg.
 */
export interface LogsOptions extends JsonOption {
  follow?: boolean;
}

/** How often --follow asks for more. */
const FOLLOW_EVERY_MS = 1000;
/** The most the API returns per read. */
const LOG_READ_MAX = 1 << 20;

/**
 * The guest's console from the oldest byte the agent keeps; with --follow,
 * what it writes next, until the sandbox stops running or Ctrl-C. With
 * --json, one `{text, offset, next_offset}` object per read (one line each).
 */
export async function logs(id: string, o: LogsOptions): Promise<void> {
  const sb = await Sandbox.get(await connect(), id);
  let offset: number | undefined;
  for (;;) {
    const read = await sb.logs(offset === undefined ? {} : { offset });
    if (o.json) {
      if (!o.follow || read.text !== "") process.stdout.write(`${JSON.stringify(read)}\n`);
    } else if (offset !== undefined && read.offset > offset) {
      // The agent's bounded log moved past what we had printed.
      process.stderr.write(`… ${bytes(read.offset - offset)} of the log dropped before this\n`);
    }
    if (!o.json) process.stdout.write(read.text);
    offset = read.next_offset;
    // A full read (the agent's 1 MiB) may have more behind it: read on at once.
    if (read.next_offset - read.offset >= LOG_READ_MAX) continue;
    if (!o.follow) return;
    await new Promise((r) => setTimeout(r, FOLLOW_EVERY_MS));
  }
}
