import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  ConnectRequest,
  ConnectResponseSchema,
  Process,
  ProcessEventSchema,
  ProcessSelector,
  StartRequest,
  StartResponseSchema,
} from "@wrenn/proto/process/process_pb.js";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { EnvdContext } from "../context.ts";
import { lookupUserSync, userFromAuthorization } from "../users.ts";
import { guard, guardStream } from "@wrenn/shared/connect-errors.ts";
import { callOf, type StreamCall } from "../connect-stream.ts";
import { processEnvironment, resolveExecutable, workingDirectory } from "./environment.ts";
import { launchAs } from "./identity.ts";
import { ManagedProcess, type ProcessSpec } from "./managed.ts";
import {
  outputLimitsFromEnv,
  type OutputItem,
  type OutputLimits,
  type Subscription,
} from "./output.ts";
import { ProcessTable, type Selector } from "./table.ts";

type ProcessEventInit = MessageInitShape<typeof ProcessEventSchema>;

export interface ProcessServiceOptions {
  limits?: OutputLimits;
}

/** The process service, and its two streams on their own for the lean Connect path. */
export interface ProcessHandlers {
  service: Partial<ServiceImpl<typeof Process>>;
  start(
    req: StartRequest,
    call: StreamCall,
  ): AsyncIterable<MessageInitShape<typeof StartResponseSchema>>;
  connect(
    req: ConnectRequest,
    call: StreamCall,
  ): AsyncIterable<MessageInitShape<typeof ConnectResponseSchema>>;
}

function selectorOf(selector: ProcessSelector | undefined): Selector {
  switch (selector?.selector.case) {
    case "pid":
      return { pid: selector.selector.value };
    case "tag":
      return { tag: selector.selector.value };
    default:
      throw new WrennError("invalid_argument", "select the process by pid or by tag");
  }
}

function toEvent(item: OutputItem): ProcessEventInit {
  switch (item.type) {
    case "data":
      return {
        event: { case: "data", value: { output: { case: item.stream, value: item.bytes } } },
      };
    case "end":
      return { event: { case: "end", value: item.exit } };
    case "keepalive":
      return { event: { case: "keepalive", value: {} } };
  }
}

/** `Keepalive-Ping-Interval` is in seconds; streams without it get no keepalives. */
function keepaliveMs(call: StreamCall): number | undefined {
  const seconds = Number(call.header("keepalive-ping-interval"));
  return Number.isFinite(seconds) && seconds > 0 ? Math.max(seconds, 0.1) * 1000 : undefined;
}

/**
 * Sends a process's events to one stream until it ends or the client goes
 * away. The stream has no deadline of its own: only the client's.
 */
async function* follow(
  proc: ManagedProcess,
  sub: Subscription,
  call: StreamCall,
): AsyncGenerator<{ event: ProcessEventInit }> {
  const interval = keepaliveMs(call);
  const timer = interval === undefined ? undefined : setInterval(() => sub.keepalive(), interval);
  try {
    yield { event: { event: { case: "start", value: { pid: proc.pid } } } };
    for (;;) {
      const item = await sub.next(call.signal);
      if (item === undefined) return;
      yield { event: toEvent(item) };
      if (item.type === "end") return;
    }
  } finally {
    clearInterval(timer);
    sub.close();
  }
}

export function processService(
  ctx: EnvdContext,
  options: ProcessServiceOptions = {},
): ProcessHandlers {
  const table = new ProcessTable();
  const limits = options.limits ?? outputLimitsFromEnv();
  const log = ctx.log.child({ service: "process" });

  function prepare(req: StartRequest, call: StreamCall): ProcessSpec {
    const config = req.process;
    if (config === undefined || config.cmd === "") {
      throw new WrennError(
        "invalid_argument",
        "StartRequest needs process.cmd: the program to run",
      );
    }
    const userName = userFromAuthorization(call.header("authorization"), ctx.state.defaultUser);
    const user = lookupUserSync(userName);
    const env = processEnvironment(user, ctx.state.envVars, config.envs);
    const pty = req.pty?.size;
    if (req.pty !== undefined) env.TERM ??= "xterm-256color";
    const cwd = workingDirectory(config.cwd, ctx.state.defaultWorkdir, user);
    const file = resolveExecutable(config.cmd, env, cwd);
    return {
      config: {
        cmd: config.cmd,
        args: [...config.args],
        envs: { ...config.envs },
        ...(config.cwd !== undefined && { cwd: config.cwd }),
      },
      tag: req.tag,
      launch: launchAs(user, file, config.args, { pty: req.pty !== undefined }),
      argv0: config.cmd,
      env,
      cwd,
      // A size left out (or zero, as JSON leaves it out) means a classic 80×24 terminal.
      pty: req.pty === undefined ? undefined : { cols: pty?.cols || 80, rows: pty?.rows || 24 },
      // Absent means open: older SDKs never send the flag.
      stdin: req.stdin ?? true,
    };
  }

  async function* start(req: StartRequest, call: StreamCall) {
    const spec = prepare(req, call);
    const release = table.reserveTag(spec.tag);
    let proc: ManagedProcess;
    try {
      proc = await ManagedProcess.spawn(spec, limits, log);
      table.add(proc);
    } finally {
      release();
    }
    // Subscribed in the same tick as the spawn: no output can come before.
    const sub = proc.output.subscribe();
    log.debug({ pid: proc.pid, cmd: spec.config.cmd, tag: spec.tag, pty: !!spec.pty }, "started");
    proc.onEnd((p) => log.debug({ pid: p.pid, status: p.exit?.status }, "ended"));
    yield* follow(proc, sub, call);
  }

  async function* connect(req: ConnectRequest, call: StreamCall) {
    const proc = table.find(selectorOf(req.process));
    yield* follow(proc, proc.output.subscribe(), call);
  }

  const service: Partial<ServiceImpl<typeof Process>> = {
    start: guardStream((req: StartRequest, rpc: HandlerContext) => start(req, callOf(rpc))),
    connect: guardStream((req: ConnectRequest, rpc: HandlerContext) => connect(req, callOf(rpc))),

    list: guard(async () => ({
      processes: table.running().map((p) => ({
        pid: p.pid,
        tag: p.spec.tag,
        config: p.spec.config,
      })),
    })),

    sendInput: guard(async (req) => {
      const proc = table.findRunning(selectorOf(req.process));
      const input = req.input?.input;
      if (input?.case === undefined) {
        throw new WrennError("invalid_argument", "SendInput needs input.stdin or input.pty");
      }
      proc.writeInput(input.value);
      return {};
    }),

    streamInput: guard(async (requests) => {
      let proc: ManagedProcess | undefined;
      for await (const req of requests) {
        switch (req.event.case) {
          case "start":
            proc = table.findRunning(selectorOf(req.event.value.process));
            break;
          case "data": {
            if (proc === undefined) {
              throw new WrennError(
                "invalid_argument",
                "StreamInput must start with a start event naming the process",
              );
            }
            const input = req.event.value.input?.input;
            if (input?.case !== undefined) proc.writeInput(input.value);
            break;
          }
          default:
            break;
        }
      }
      return {};
    }),

    closeStdin: guard(async (req) => {
      table.findRunning(selectorOf(req.process)).closeStdin();
      return {};
    }),

    sendSignal: guard(async (req) => {
      const proc = table.findRunning(selectorOf(req.process));
      const signo = Number(req.signal);
      if (!Number.isInteger(signo) || signo <= 0 || signo > 64) {
        throw new WrennError(
          "invalid_argument",
          "SendSignal needs a signal (SIGTERM = 15, SIGKILL = 9)",
        );
      }
      proc.signal(signo);
      return {};
    }),

    update: guard(async (req) => {
      const proc = table.findRunning(selectorOf(req.process));
      const size = req.pty?.size;
      if (size === undefined || size.cols === 0 || size.rows === 0) {
        throw new WrennError(
          "invalid_argument",
          "Update needs pty.size with cols and rows of at least 1",
        );
      }
      if (proc.spec.pty === undefined) {
        throw new WrennError(
          "failed_precondition",
          `process ${proc.pid} was not started with a PTY`,
        );
      }
      proc.resize(size.cols, size.rows);
      return {};
    }),
  };
  return { service, start, connect };
}
