import { createHash, timingSafeEqual } from "node:crypto";
import { cpus, totalmem } from "node:os";
import { statfs } from "node:fs/promises";
import { Readable } from "node:stream";
import { Code, ConnectError, type Interceptor, type ServiceImpl } from "@connectrpc/connect";
import { z } from "zod";
import { create } from "@bufbuild/protobuf";
import {
  SandboxInfoSchema,
  SandboxState,
  TemplateType,
  type HostAgentService,
  type SandboxInfo,
} from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { WrennError } from "@wrenn/shared/errors.ts";
import { guard, guardStream } from "@wrenn/shared/connect-errors.ts";
import type { SandboxManager } from "./sandbox/manager.ts";
import type { SandboxRecord } from "./sandbox/records.ts";
import type { MetricsSampler } from "./sandbox/metrics.ts";
import { MAX_EGRESS_ENTRIES, egressEntryProblem } from "./network/egress.ts";
import { PtySessions } from "./pty/sessions.ts";

export const AGENT_VERSION = "0.1.0";

/** Ids come from the control plane; they name files, sockets and hostnames. */
const sandboxId = z
  .string()
  .regex(/^[a-z0-9]{1,40}$/, "sandbox_id must be 1-40 lowercase letters or digits");
const templateName = z
  .string()
  .regex(
    /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/,
    "template must start with a letter or digit and use only letters, digits, '.', '_' or '-' (at most 64)",
  );
const guestPath = z.string().min(1, "path must not be empty").max(4096, "path is too long");
const user = z
  .string()
  .regex(/^([a-z_][a-z0-9_-]{0,31})?$/, "user must be a Linux user name")
  .optional();

const limits = {
  vcpus: { default: 1, min: 1, max: Math.max(1, cpus().length * 4) },
  memoryMb: { default: 512, min: 128, max: 262_144 },
  diskSizeMb: { default: 20_480, min: 512, max: 4_194_304 },
};

/** Idle seconds before the reaper pauses a sandbox; 0: never (its control plane owns its lifetime). */
const idleTimeoutSec = z
  .number()
  .int()
  .max(30 * 24 * 3600, "timeout_sec must be at most 30 days");

/** proto3 sends 0 for "not set": such fields take their default, others must be in range. */
function bounded(name: string, l: { default: number; min?: number; max: number }) {
  return z
    .number()
    .int()
    .transform((v) => (v === 0 ? l.default : v))
    .refine((v) => v >= (l.min ?? 0) && v <= l.max, {
      message: `${name} must be between ${l.min ?? 0} and ${l.max}`,
    });
}

const egressEntry = z.string().superRefine((entry, ctx) => {
  const problem = egressEntryProblem(entry);
  if (problem !== null) ctx.addIssue({ code: "custom", message: problem });
});
const egressList = z
  .array(egressEntry)
  .max(MAX_EGRESS_ENTRIES, `at most ${MAX_EGRESS_ENTRIES} entries`);
/** Absent: no rules. Names are resolved when the rules are applied, not here. */
const networkSchema = z
  .object({ allowOut: egressList, denyOut: egressList })
  .optional()
  .transform((n) => ({ allowOut: n?.allowOut ?? [], denyOut: n?.denyOut ?? [] }));

const createSchema = z.object({
  sandboxId,
  template: z
    .string()
    .transform((t) => t || "minimal")
    .pipe(templateName),
  vcpus: bounded("vcpus", limits.vcpus),
  memoryMb: bounded("memory_mb", limits.memoryMb),
  diskSizeMb: bounded("disk_size_mb", limits.diskSizeMb),
  timeoutSec: idleTimeoutSec,
  envVars: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "bad env var name"), z.string()),
  envdAccessToken: z.string().max(256),
  network: networkSchema,
});

/** A terminal: pid 0 starts a shell; sizes default to 80×24. */
const ptySchema = z.object({
  sandboxId,
  pid: z.number().int().min(0),
  cols: z
    .number()
    .int()
    .max(1000)
    .transform((v) => v || 80),
  rows: z
    .number()
    .int()
    .max(1000)
    .transform((v) => v || 24),
  user,
});

const execSchema = z.object({
  sandboxId,
  cmd: z.string().min(1, "cmd must not be empty"),
  args: z.array(z.string()),
  timeoutSec: bounded("timeout_sec", { default: 60, max: 24 * 3600 }),
  envs: z.record(z.string(), z.string()),
  cwd: z.string().optional(),
  user,
});

function parse<T extends z.ZodType>(schema: T, input: unknown): z.output<T> {
  const result = schema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue?.path.length ? `${issue.path.join(".")}: ` : "";
    throw new WrennError("invalid_argument", `${where}${issue?.message ?? "invalid request"}`);
  }
  return result.data;
}

const states: Record<SandboxRecord["status"], SandboxState> = {
  starting: SandboxState.STARTING,
  running: SandboxState.RUNNING,
  paused: SandboxState.PAUSED,
  failed: SandboxState.FAILED,
};

async function info(manager: SandboxManager, r: SandboxRecord): Promise<SandboxInfo> {
  return create(SandboxInfoSchema, {
    sandboxId: r.id,
    template: r.template,
    state: states[r.status],
    vcpus: r.vcpus,
    memoryMb: r.memoryMb,
    diskSizeMb: r.diskSizeMb,
    timeoutSec: r.timeoutSec,
    createdAtMs: BigInt(r.createdAtMs),
    lastActiveAtMs: BigInt(r.lastActiveAtMs),
    envdAddress: manager.envdAddress(r.id),
    vmm: r.vmm,
    diskUsedBytes: BigInt(await manager.diskUsage(r)),
    error: r.error ?? "",
  });
}

const FILE_CHUNK = 256 * 1024;

/** The unary ReadFile's limit: its reply is one message held whole in memory. */
export const READ_FILE_MAX_BYTES = 32 * 1024 * 1024;

/** Largest Connect message the agent reads or writes (an exec reply: 2 × 16 MiB of output). */
export const AGENT_MESSAGE_MAX_BYTES = 48 * 1024 * 1024;

/** What fits an HTTP header unquoted; the control plane checks the same. */
export const HOST_SECRET_PATTERN = /^[\x21-\x7e]{16,256}$/;

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

/**
 * Rejects calls without `Authorization: Bearer <secret>`: the agent runs VMs
 * as root, so with a secret only the control plane that holds it drives it.
 * Digests compare in constant time whatever the lengths.
 */
export function hostSecretInterceptor(secret: string): Interceptor {
  const want = digest(secret);
  return (next) => async (req) => {
    const given = /^bearer\s+(\S+)\s*$/i.exec(req.header.get("authorization") ?? "")?.[1];
    if (given === undefined || !timingSafeEqual(digest(given), want)) {
      throw new ConnectError(
        given === undefined
          ? "this host agent needs its secret: send Authorization: Bearer <secret> (the control plane sends the secret the host was registered with)"
          : "wrong host secret: register the host with the secret the agent was started with (--secret, WRENN_HOST_SECRET)",
        Code.Unauthenticated,
      );
    }
    return next(req);
  };
}

export function hostAgentService(
  manager: SandboxManager,
  hostId: string,
  dataDir: string,
  metrics: MetricsSampler,
): ServiceImpl<typeof HostAgentService> {
  // Terminals keep their reader and scrollback between viewers (pty/sessions.ts).
  const terminals = new PtySessions();
  return {
    createSandbox: guard(async (req) => {
      const p = parse(createSchema, req);
      const record = await manager.create({
        id: p.sandboxId,
        template: p.template,
        vcpus: p.vcpus,
        memoryMb: p.memoryMb,
        diskSizeMb: p.diskSizeMb,
        timeoutSec: p.timeoutSec,
        envVars: p.envVars,
        envdAccessToken: p.envdAccessToken,
        network: p.network,
      });
      return { sandbox: await info(manager, record) };
    }),
    destroySandbox: guard(async (req) => {
      await manager.destroy(parse(sandboxId, req.sandboxId));
      return {};
    }),
    listSandboxes: guard(async () => ({
      sandboxes: await Promise.all(manager.list().map((r) => info(manager, r))),
      autoPausedSandboxIds: manager.autoPausedIds(),
      reapedSandboxIds: manager.reapedIds(),
    })),
    pingSandbox: guard(async (req) => {
      await manager.ping(parse(sandboxId, req.sandboxId));
      return {};
    }),
    pauseSandbox: guard(async (req) => {
      await manager.pause(parse(sandboxId, req.sandboxId));
      return {};
    }),
    resumeSandbox: guard(async (req) => {
      const id = parse(sandboxId, req.sandboxId);
      const timeout = parse(idleTimeoutSec, req.timeoutSec);
      const record = await manager.resume(id, req.timeoutSec === 0 ? undefined : timeout);
      return { sandbox: await info(manager, record) };
    }),
    createSnapshot: guard(async (req) => {
      const id = parse(sandboxId, req.sandboxId);
      const name = parse(templateName, req.name);
      const meta = await manager.createSnapshot(id, name, req.overwrite);
      return {
        template: {
          name: meta.name,
          type: TemplateType.SNAPSHOT,
          vcpus: meta.vcpus,
          memoryMb: meta.memoryMb,
          createdAtMs: BigInt(meta.createdAtMs),
        },
      };
    }),
    deleteSnapshot: guard(async (req) => {
      await manager.deleteSnapshot(parse(templateName, req.name));
      return {};
    }),
    listTemplates: guard(async () => {
      const snapshots = await manager.templates.list();
      const bases = await manager.baseTemplates();
      return {
        templates: [
          ...bases.map((b) => ({
            name: b.name,
            type: TemplateType.BASE,
            sizeBytes: BigInt(b.sizeBytes),
          })),
          ...snapshots.map((t) => ({
            name: t.name,
            type: TemplateType.SNAPSHOT,
            vcpus: t.vcpus,
            memoryMb: t.memoryMb,
            sizeBytes: BigInt(t.sizeBytes),
            createdAtMs: BigInt(t.createdAtMs),
          })),
        ],
      };
    }),
    exec: guard(async (req, ctx) => {
      const p = parse(execSchema, req);
      const r = await manager.exec(p.sandboxId, {
        ...p,
        cwd: p.cwd || undefined,
        user: p.user || undefined,
      });
      void ctx;
      return {
        stdout: r.stdout,
        stderr: r.stderr,
        exitCode: r.exitCode,
        durationMs: BigInt(r.durationMs),
        stdoutTruncated: r.stdoutTruncated,
        stderrTruncated: r.stderrTruncated,
      };
    }),
    execStream: guardStream(async function* (req) {
      const p = parse(execSchema, req);
      for await (const ev of manager.execStream(p.sandboxId, {
        ...p,
        cwd: p.cwd || undefined,
        user: p.user || undefined,
      })) {
        if (ev.type === "start") yield { event: { case: "start", value: { pid: ev.pid } } };
        else if (ev.type === "end") {
          yield { event: { case: "end", value: { exitCode: ev.exitCode, error: ev.error ?? "" } } };
        } else {
          yield { event: { case: "data", value: { output: { case: ev.type, value: ev.data } } } };
        }
      }
    }),
    writeFile: guard(async (req) => {
      const id = parse(sandboxId, req.sandboxId);
      const path = parse(guestPath, req.path);
      await manager.envdOf(id).writeFile(path, req.content, parse(user, req.user) || undefined);
      return { size: BigInt(req.content.length) };
    }),
    readFile: guard(async (req) => {
      const id = parse(sandboxId, req.sandboxId);
      const path = parse(guestPath, req.path);
      const body = await manager.envdOf(id).readFile(path, parse(user, req.user) || undefined);
      // One message holds the whole file: past the cap it is refused, not buffered.
      const chunks: Uint8Array[] = [];
      let size = 0;
      for await (const c of body as AsyncIterable<Uint8Array>) {
        size += c.length;
        if (size > READ_FILE_MAX_BYTES) {
          body.destroy();
          throw new WrennError(
            "resource_exhausted",
            `${path} is larger than ${READ_FILE_MAX_BYTES / (1024 * 1024)} MiB: read it with ReadFileStream`,
          );
        }
        chunks.push(c);
      }
      return { content: Buffer.concat(chunks) };
    }),
    writeFileStream: guard(async (reqs) => {
      const it = reqs[Symbol.asyncIterator]();
      const first = await it.next();
      if (first.done || first.value.part.case !== "header") {
        throw new WrennError("invalid_argument", "the first message must be the header");
      }
      const header = first.value.part.value;
      const id = parse(sandboxId, header.sandboxId);
      const path = parse(guestPath, header.path);
      let size = 0n;
      const body = Readable.from(
        (async function* () {
          for (;;) {
            const next = await it.next();
            if (next.done) return;
            if (next.value.part.case !== "chunk") {
              throw new WrennError("invalid_argument", "only the first message may be a header");
            }
            size += BigInt(next.value.part.value.length);
            yield next.value.part.value;
          }
        })(),
      );
      await manager.envdOf(id).writeFile(path, body, parse(user, header.user) || undefined);
      return { size };
    }),
    readFileStream: guardStream(async function* (req) {
      const id = parse(sandboxId, req.sandboxId);
      const path = parse(guestPath, req.path);
      const body = await manager.envdOf(id).readFile(path, parse(user, req.user) || undefined);
      // Re-chunk so messages stay small whatever the HTTP layer hands us.
      for await (const c of body) {
        for (let off = 0; off < c.length; off += FILE_CHUNK) {
          yield { chunk: c.subarray(off, off + FILE_CHUNK) };
        }
      }
    }),
    ptyStream: guardStream(async function* (req, ctx) {
      const p = parse(ptySchema, req);
      const envd = manager.envdOf(p.sandboxId);
      const pty = { pid: p.pid, cols: p.cols, rows: p.rows, user: p.user || undefined };
      for await (const ev of terminals.attach(
        p.sandboxId,
        pty,
        (o) => envd.ptyStream(o),
        ctx.signal,
      )) {
        if (ev.type === "start") yield { event: { case: "start", value: { pid: ev.pid } } };
        else if (ev.type === "data") yield { event: { case: "data", value: ev.data } };
        else
          yield { event: { case: "end", value: { exitCode: ev.exitCode, error: ev.error ?? "" } } };
      }
    }),
    ptyInput: guard(async (req) => {
      const p = parse(ptySchema.pick({ sandboxId: true, pid: true }), req);
      await manager.envdOf(p.sandboxId).ptyInput(p.pid, req.data);
      return {};
    }),
    ptyResize: guard(async (req) => {
      const p = parse(ptySchema, req);
      await manager.envdOf(p.sandboxId).ptyResize(p.pid, p.cols, p.rows);
      return {};
    }),
    getHostInfo: guard(async () => {
      const fs = await statfs(dataDir);
      return {
        hostId,
        vmm: manager.vmmName,
        storage: manager.storageName,
        totalVcpus: cpus().length,
        totalMemoryMb: BigInt(Math.floor(totalmem() / (1024 * 1024))),
        freeDiskMb: BigInt(Math.floor((fs.bavail * fs.bsize) / (1024 * 1024))),
        runningSandboxes: manager.list().filter((r) => r.status === "running").length,
        version: AGENT_VERSION,
      };
    }),
    updateNetwork: guard(async (req) => {
      const p = parse(z.object({ sandboxId, network: networkSchema }), req);
      await manager.updateNetwork(p.sandboxId, p.network);
      return {};
    }),
    getSandboxLogs: guard(async (req) => {
      const id = parse(sandboxId, req.sandboxId);
      if (req.offset !== undefined && req.offset > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new WrennError("invalid_argument", "offset is too large");
      }
      const read = await manager.logs(id, {
        ...(req.offset !== undefined ? { offset: Number(req.offset) } : {}),
        ...(req.limit > 0 ? { limit: req.limit } : {}),
      });
      return {
        text: read.text,
        offset: BigInt(read.offset),
        nextOffset: BigInt(read.nextOffset),
      };
    }),
    getSandboxMetrics: guard(async (req) => {
      const { record } = manager.get(parse(sandboxId, req.sandboxId));
      const since = parse(z.bigint().nonnegative("since_ms must not be negative"), req.sinceMs);
      return {
        metrics: metrics.samples(record, Number(since)).map((m) => ({
          timestampMs: BigInt(m.timestampMs),
          cpuCount: m.cpuCount,
          cpuUsedPct: m.cpuUsedPct,
          memUsedBytes: BigInt(m.memUsedBytes),
          memTotalBytes: BigInt(m.memTotalBytes),
          diskUsedBytes: BigInt(m.diskUsedBytes),
          diskTotalBytes: BigInt(m.diskTotalBytes),
        })),
      };
    }),
  };
}
