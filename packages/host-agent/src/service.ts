import type { ServiceImpl } from "@connectrpc/connect";
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
import { allocatedUnder } from "./util/fs.ts";
import { guard, guardStream } from "@wrenn/shared/connect-errors.ts";
import type { SandboxManager } from "./sandbox/manager.ts";
import type { SandboxRecord } from "./sandbox/records.ts";
import type { MetricsSampler } from "./sandbox/metrics.ts";
import { PtySessions } from "./pty/sessions.ts";
import {
  createSchema,
  execSchema,
  guestPath,
  idleTimeoutSec,
  networkSchema,
  parse,
  ptySchema,
  sandboxId,
  templateName,
  user,
} from "./rpc/requests.ts";
import { HostUsageMeter, hostInfo } from "./rpc/host-info.ts";

export const AGENT_VERSION = "0.1.0";

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

/** The unary ReadFile's limit: its reply is one message held whole in memory. */
export const READ_FILE_MAX_BYTES = 32 * 1024 * 1024;

/** Largest Connect message the agent reads or writes (an exec reply: 2 × 16 MiB of output). */
export const AGENT_MESSAGE_MAX_BYTES = 48 * 1024 * 1024;

export function hostAgentService(
  manager: SandboxManager,
  hostId: string,
  dataDir: string,
  metrics: MetricsSampler,
): ServiceImpl<typeof HostAgentService> {
  // Terminals keep their reader and scrollback between viewers (pty/sessions.ts).
  const terminals = new PtySessions();
  const meter = new HostUsageMeter({
    vmmPids: () => manager.vmmPids(),
  });
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
          // What the template takes on the host (disk and memory, as allocated).
          sizeBytes: BigInt(await allocatedUnder(manager.templates.files(meta.name).dir)),
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
            `${path} is larger than ${READ_FILE_MAX_BYTES / (1024 * 1024)} MiB: read it through the sandbox's file API (the agent's proxy hop to envd's /files)`,
          );
        }
        chunks.push(c);
      }
      return { content: Buffer.concat(chunks) };
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
    getHostInfo: guard(() =>
      hostInfo({
        hostId,
        dataDir,
        vmm: manager.vmm.name,
        storage: manager.storageName,
        version: AGENT_VERSION,
        runningSandboxes: manager.list().filter((r) => r.status === "running").length,
        warmSandboxes: manager.warmSandboxes(),
        meter,
      }),
    ),
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
