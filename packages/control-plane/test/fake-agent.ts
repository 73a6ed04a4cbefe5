import { createHash } from "node:crypto";
import { patternChunks } from "@wrenn/shared/testing/streams.ts";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { PROXY_SANDBOX_HEADER, PROXY_SECRET_HEADER } from "@wrenn/shared/sandbox-proxy.ts";
import { boundaryOf, MultipartSplitter, type PartSink } from "@wrenn/shared/multipart.ts";
import type { AddressInfo } from "node:net";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { create } from "@bufbuild/protobuf";
import {
  HostAgentService,
  SandboxInfoSchema,
  SandboxState,
  TemplateInfoSchema,
  TemplateType,
  type CreateSandboxRequest,
  type SandboxInfo,
  type SandboxMetric,
  type TemplateInfo,
} from "@wrenn/proto/hostagent/v1/hostagent_pb.js";

/**
 * A host agent that keeps sandboxes in a map, served over a real Connect
 * server on loopback: enough to test routing, placement, the reconciler and
 * error mapping without VMs. Files live in memory per sandbox.
 */
export interface FakeAgent {
  address: string;
  sandboxes: Map<string, SandboxInfo>;
  files: Map<string, Buffer>;
  templates: Map<string, TemplateInfo>;
  autoPaused: Set<string>;
  capacity: { totalVcpus: number; totalMemoryMb: number; freeDiskMb: number };
  /** What GetHostInfo reports the host measured itself using; null: it does not measure. */
  usage: { cpuBusyCores: number; memoryUsedMb: number; vmmMemoryMb?: number } | null;
  /** Warm pool entries GetHostInfo reports ready. */
  warm: number;
  calls: string[];
  /** Largest single chunk an upload reached the agent in (streaming check). */
  maxChunk: number;
  /**
   * Every completed upload (`/files` POST through the proxy hop) by
   * `sandboxId:path`: its size, sha256 and the Content-Length it came with.
   */
  written: Map<string, { size: number; sha256: string; contentLength?: number | undefined }>;
  /** Files of `patternChunks(size)` bytes that the hop's `/files` GET makes up as it sends them. */
  generated: Map<string, number>;
  /** Bytes the proxy hop's `/files` GET has handed to its socket (reads' backpressure). */
  served: number;
  /** Streams in progress, to prove a client going away ends the agent's side too. */
  active: { writes: number; reads: number; execs: number };
  close(): Promise<void>;
  /** The Authorization header of every call, in order. */
  authorizations: string[];
  /** Serves again on the same address after `close` (a restarted agent). */
  reopen(): Promise<void>;
  /** The last CreateSandbox request per sandbox (envd token, env vars, timeout, network). */
  createRequests: Map<string, CreateSandboxRequest>;
  /** Egress rules per sandbox, as CreateSandbox and UpdateNetwork last set them. */
  networks: Map<string, { allowOut: string[]; denyOut: string[] }>;
  /** Samples GetSandboxMetrics answers with, per sandbox. */
  metrics: Map<string, SandboxMetric[]>;
  /** Each sandbox's serial console, as GetSandboxLogs reads it. */
  consoles: Map<string, string>;
  /** Bytes the `flood` command has written so far (it writes until its caller goes away). */
  flooded: number;
  /** Which sandbox each snapshot's files were last taken from. */
  snapshotSources: Map<string, string>;
  /** How long CreateSnapshot takes (ms), to let concurrent requests overlap. */
  snapshotDelayMs: number;
  /**
   * How long DestroySandbox and PauseSandbox take (ms) after the VM is gone,
   * as a real agent's teardown does, before they answer.
   */
  stopDelayMs: number;
}

/** With `secret`, calls without `Authorization: Bearer <secret>` fail as the real agent's do. */
export async function startFakeAgent(options: { secret?: string } = {}): Promise<FakeAgent> {
  const sandboxes = new Map<string, SandboxInfo>();
  const files = new Map<string, Buffer>();
  const templates = new Map<string, TemplateInfo>([
    [
      "minimal",
      // As a real agent reports it: a base template has no shape of its own.
      create(TemplateInfoSchema, { name: "minimal", type: TemplateType.BASE }),
    ],
  ]);
  const state: FakeAgent = {
    address: "",
    sandboxes,
    files,
    templates,
    autoPaused: new Set(),
    capacity: { totalVcpus: 8, totalMemoryMb: 16384, freeDiskMb: 100_000 },
    usage: null,
    warm: 0,
    calls: [],
    maxChunk: 0,
    written: new Map(),
    generated: new Map(),
    active: { writes: 0, reads: 0, execs: 0 },
    served: 0,
    authorizations: [],
    createRequests: new Map(),
    networks: new Map(),
    metrics: new Map(),
    consoles: new Map(),
    snapshotSources: new Map(),
    snapshotDelayMs: 0,
    stopDelayMs: 0,
    flooded: 0,
    close: async () => {},
    reopen: async () => {},
  };
  const need = (id: string, want?: SandboxState): SandboxInfo => {
    const sb = sandboxes.get(id);
    if (!sb) throw new ConnectError(`sandbox ${id} not found`, Code.NotFound);
    if (want !== undefined && sb.state !== want) {
      throw new ConnectError(
        `sandbox ${id} is in state ${SandboxState[sb.state]}`,
        Code.FailedPrecondition,
      );
    }
    return sb;
  };
  const routes = (router: ConnectRouter) =>
    router.service(HostAgentService, {
      createSandbox(req) {
        state.calls.push(`create:${req.sandboxId}`);
        if (!templates.has(req.template))
          throw new ConnectError(`no template ${req.template}`, Code.NotFound);
        if (req.template === "boom") throw new ConnectError("boot failed", Code.Internal);
        const sb = create(SandboxInfoSchema, {
          sandboxId: req.sandboxId,
          template: req.template,
          state: SandboxState.RUNNING,
          vcpus: req.vcpus,
          memoryMb: req.memoryMb,
          diskSizeMb: req.diskSizeMb,
          timeoutSec: req.timeoutSec,
          createdAtMs: BigInt(Date.now()),
          envdAddress: "10.0.0.1:49983",
        });
        sandboxes.set(req.sandboxId, sb);
        state.createRequests.set(req.sandboxId, req);
        state.networks.set(req.sandboxId, {
          allowOut: [...(req.network?.allowOut ?? [])],
          denyOut: [...(req.network?.denyOut ?? [])],
        });
        return { sandbox: sb };
      },
      async destroySandbox(req) {
        state.calls.push(`destroy:${req.sandboxId}`);
        need(req.sandboxId);
        sandboxes.delete(req.sandboxId);
        if (state.stopDelayMs) await new Promise((r) => setTimeout(r, state.stopDelayMs));
        return {};
      },
      listSandboxes() {
        return { sandboxes: [...sandboxes.values()], autoPausedSandboxIds: [...state.autoPaused] };
      },
      pingSandbox(req) {
        need(req.sandboxId, SandboxState.RUNNING);
        return {};
      },
      async pauseSandbox(req) {
        state.calls.push(`pause:${req.sandboxId}`);
        need(req.sandboxId, SandboxState.RUNNING);
        // Like the real agent: a paused sandbox's VM is gone; its snapshot stays on disk.
        sandboxes.delete(req.sandboxId);
        if (state.stopDelayMs) await new Promise((r) => setTimeout(r, state.stopDelayMs));
        return {};
      },
      resumeSandbox(req) {
        state.calls.push(`resume:${req.sandboxId}`);
        if (sandboxes.has(req.sandboxId))
          throw new ConnectError("already running", Code.FailedPrecondition);
        const sb = create(SandboxInfoSchema, {
          sandboxId: req.sandboxId,
          state: SandboxState.RUNNING,
          envdAddress: "10.0.0.1:49983",
        });
        sandboxes.set(req.sandboxId, sb);
        return { sandbox: sb };
      },
      async createSnapshot(req) {
        if (state.snapshotDelayMs) await new Promise((r) => setTimeout(r, state.snapshotDelayMs));
        const sb = sandboxes.get(req.sandboxId);
        if (templates.has(req.name) && !req.overwrite)
          throw new ConnectError("exists", Code.AlreadyExists);
        const t = create(TemplateInfoSchema, {
          name: req.name,
          type: TemplateType.SNAPSHOT,
          vcpus: sb?.vcpus ?? 1,
          memoryMb: sb?.memoryMb ?? 512,
          sizeBytes: 1234n,
        });
        templates.set(req.name, t);
        state.snapshotSources.set(req.name, req.sandboxId);
        sandboxes.delete(req.sandboxId);
        return { template: t };
      },
      deleteSnapshot(req) {
        if (!templates.delete(req.name)) throw new ConnectError("no such snapshot", Code.NotFound);
        return {};
      },
      listTemplates() {
        return { templates: [...templates.values()] };
      },
      exec(req) {
        need(req.sandboxId, SandboxState.RUNNING);
        // `fail:<Code>` answers with that Connect code, for the error mapping tests.
        const failing = /^fail:(\w+)$/.exec(req.cmd)?.[1];
        if (failing) {
          const code = Code[failing as keyof typeof Code];
          throw new ConnectError(`the agent says ${failing}`, code ?? Code.Unknown);
        }
        if (req.cmd === "truncated") {
          // The agent's cap fell inside "€" (e2 82 ac).
          return {
            stdout: new Uint8Array([0x61, 0x62, 0xe2, 0x82]),
            stderr: new Uint8Array(),
            stdoutTruncated: true,
            exitCode: 0,
            durationMs: 1n,
          };
        }
        if (req.cmd === "binary") {
          return {
            stdout: new Uint8Array([0xff, 0xfe, 0x00]),
            stderr: new Uint8Array(),
            exitCode: 0,
            durationMs: 1n,
          };
        }
        const out = [req.cmd, ...req.args].join(" ");
        return {
          stdout: new TextEncoder().encode(out + "\n"),
          stderr: new Uint8Array(),
          exitCode: req.cmd === "false" ? 1 : 0,
          durationMs: 3n,
        };
      },
      async *execStream(req, ctx) {
        need(req.sandboxId, SandboxState.RUNNING);
        yield { event: { case: "start", value: { pid: 42 } } };
        if (req.cmd === "flood") {
          // `yes` at full speed: as fast as the caller takes it, until it goes away.
          const chunk = new Uint8Array(64 << 10).fill(121);
          state.active.execs++;
          try {
            while (!ctx.signal.aborted) {
              state.flooded += chunk.length;
              yield {
                event: { case: "data", value: { output: { case: "stdout", value: chunk } } },
              };
            }
          } finally {
            state.active.execs--;
          }
          return;
        }
        if (req.cmd === "hang") {
          // Runs until the caller goes away, like a command that never ends.
          state.active.execs++;
          try {
            await new Promise<void>((resolve) => {
              if (ctx.signal.aborted) resolve();
              ctx.signal.addEventListener("abort", () => resolve(), { once: true });
            });
          } finally {
            state.active.execs--;
          }
          return;
        }
        for (const a of req.args) {
          yield {
            event: {
              case: "data",
              value: { output: { case: "stdout", value: new TextEncoder().encode(a) } },
            },
          };
        }
        yield { event: { case: "end", value: { exitCode: 0, error: "" } } };
      },
      writeFile(req) {
        files.set(`${req.sandboxId}:${req.path}`, Buffer.from(req.content));
        return { size: BigInt(req.content.length) };
      },
      readFile(req) {
        const f = files.get(`${req.sandboxId}:${req.path}`);
        if (!f) throw new ConnectError("no such file", Code.NotFound);
        return { content: f };
      },
      updateNetwork(req) {
        state.calls.push(`network:${req.sandboxId}`);
        if (!state.networks.has(req.sandboxId))
          throw new ConnectError(`sandbox ${req.sandboxId} not found`, Code.NotFound);
        state.networks.set(req.sandboxId, {
          allowOut: [...(req.network?.allowOut ?? [])],
          denyOut: [...(req.network?.denyOut ?? [])],
        });
        return {};
      },
      getSandboxLogs(req) {
        need(req.sandboxId, SandboxState.RUNNING);
        const all = Buffer.from(state.consoles.get(req.sandboxId) ?? "");
        const offset = Math.min(Number(req.offset ?? 0n), all.length);
        const end = Math.min(all.length, offset + (req.limit || 1 << 20));
        return {
          text: all.subarray(offset, end).toString("utf8"),
          offset: BigInt(offset),
          nextOffset: BigInt(end),
        };
      },
      getSandboxMetrics(req) {
        need(req.sandboxId, SandboxState.RUNNING);
        const all = state.metrics.get(req.sandboxId) ?? [];
        return { metrics: all.filter((m) => m.timestampMs >= req.sinceMs) };
      },
      getHostInfo() {
        return {
          hostId: "fake",
          vmm: "fake",
          storage: "memory",
          totalVcpus: state.capacity.totalVcpus,
          totalMemoryMb: BigInt(state.capacity.totalMemoryMb),
          freeDiskMb: BigInt(state.capacity.freeDiskMb),
          runningSandboxes: sandboxes.size,
          version: "test",
          ...(state.usage
            ? {
                usage: {
                  cpuBusyCores: state.usage.cpuBusyCores,
                  cpuIntervalMs: 1000,
                  memoryUsedMb: BigInt(state.usage.memoryUsedMb),
                  memoryAvailableMb: BigInt(
                    state.capacity.totalMemoryMb - state.usage.memoryUsedMb,
                  ),
                  vmmMemoryMb: BigInt(state.usage.vmmMemoryMb ?? 0),
                  vmmCount: sandboxes.size,
                },
              }
            : {}),
          warmSandboxes: state.warm,
        };
      },
    });
  const connect = connectNodeAdapter({
    routes,
    interceptors: [
      (next) => (req) => {
        const auth = req.header.get("authorization") ?? "";
        state.authorizations.push(auth);
        if (options.secret && auth !== `Bearer ${options.secret}`) {
          throw new ConnectError("wrong host secret", Code.Unauthenticated);
        }
        return next(req);
      },
    ],
  });
  const server: Server = createServer((req, res) => {
    if (req.headers[PROXY_SANDBOX_HEADER] === undefined) return void connect(req, res);
    serveGuestFile(req, res);
  });
  /**
   * The proxy hop's envd `/files` GET, as the real agent relays it from a
   * guest: the file's bytes (or a generated file's, paced by the reader),
   * 404 JSON when missing, 401 for a wrong host secret, 502 when the
   * sandbox is not running.
   */
  function serveGuestFile(req: IncomingMessage, res: ServerResponse): void {
    const json = (status: number, message: string) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify({ code: status, message }));
    };
    if (options.secret && req.headers[PROXY_SECRET_HEADER] !== options.secret)
      return json(401, "missing or wrong host secret");
    const id = String(req.headers[PROXY_SANDBOX_HEADER]);
    const url = new URL(req.url ?? "/", "http://fake");
    if (sandboxes.get(id)?.state !== SandboxState.RUNNING)
      return json(502, "The sandbox was not found");
    state.calls.push(`files:${id}`);
    const key = `${id}:${url.searchParams.get("path") ?? ""}`;
    const size = state.generated.get(key);
    const f = files.get(key);
    if (url.pathname === "/files" && req.method === "POST")
      return receiveGuestFile(req, res, id, url);
    if (url.pathname !== "/files" || req.method !== "GET" || (size === undefined && !f))
      return json(404, `path '${url.searchParams.get("path")}' does not exist`);
    state.active.reads++;
    res.once("close", () => state.active.reads--);
    res.writeHead(200, { "content-type": "application/octet-stream" });
    const chunks = size !== undefined ? patternChunks(size) : [f as Buffer][Symbol.iterator]();
    const pump = () => {
      for (;;) {
        const next = chunks.next();
        if (next.done) return void res.end();
        state.served += next.value.length;
        if (!res.write(next.value)) return void res.once("drain", pump);
      }
    };
    pump();
  }
  /**
   * envd's `/files` POST as the proxy hop relays it: a raw body, or the
   * multipart body's `file` part, goes to `?path=`; a body cut off writes nothing.
   */
  function receiveGuestFile(req: IncomingMessage, res: ServerResponse, id: string, url: URL) {
    const path = url.searchParams.get("path") ?? "";
    const contentType = req.headers["content-type"] ?? "";
    const multipart = contentType.toLowerCase().startsWith("multipart/form-data");
    const boundary = boundaryOf(contentType);
    const key = `${id}:${path}`;
    const parts: Buffer[] = [];
    const hash = createHash("sha256");
    let size = 0;
    let fileParts = 0;
    const file: PartSink = {
      write(d) {
        size += d.length;
        hash.update(d);
        // Big uploads are only hashed, so the fake itself does not hold them.
        if (size <= 8 << 20) parts.push(Buffer.from(d));
        return true;
      },
      ready: async () => undefined,
      end: () => undefined,
    };
    const splitter = new MultipartSplitter(boundary ?? "-", (info) => {
      if (!info.file || info.name !== "file") return undefined;
      fileParts++;
      return file;
    });
    const length = req.headers["content-length"];
    state.active.writes++;
    let done = false;
    const finish = (status: number, body: unknown) => {
      if (done) return;
      done = true;
      state.active.writes--;
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    req.on("data", (chunk: Buffer) => {
      state.maxChunk = Math.max(state.maxChunk, chunk.length);
      try {
        if (multipart) splitter.push(chunk);
        else file.write(chunk);
      } catch (err) {
        finish(400, { code: 400, message: (err as Error).message });
        req.resume();
      }
    });
    req.once("end", () => {
      if (done) return;
      if (multipart && (boundary === undefined || !splitter.done || fileParts === 0))
        return finish(400, { code: 400, message: "bad multipart body" });
      files.set(key, Buffer.concat(parts));
      state.written.set(key, {
        size,
        sha256: hash.digest("hex"),
        contentLength: length === undefined ? undefined : Number(length),
      });
      finish(200, [{ name: path.split("/").pop(), type: "file", path }]);
    });
    req.once("close", () => {
      if (!done && !req.complete) {
        done = true;
        state.active.writes--;
      }
    });
  }
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  state.address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const port = (server.address() as AddressInfo).port;
  state.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  state.reopen = () => new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return state;
}
