import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import type * as NodePty from "node-pty";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";
import { exitInfo, type ExitInfo } from "./exit-status.ts";
import type { Launch } from "./identity.ts";
import { OutputHub, type OutputLimits, type OutputStream } from "./output.ts";

/** The request as the client gave it; List reports it back unchanged. */
export interface ProcessConfigView {
  cmd: string;
  args: string[];
  envs: Record<string, string>;
  cwd?: string;
}

export interface ProcessSpec {
  config: ProcessConfigView;
  tag: string | undefined;
  launch: Launch;
  /** argv[0] the program sees when no wrapper sits in front of it. */
  argv0: string;
  env: Record<string, string>;
  cwd: string;
  pty: { cols: number; rows: number } | undefined;
  stdin: boolean;
}

/** Input a process may hold queued before SendInput refuses more. */
const MAX_PENDING_INPUT = 16 << 20;
/**
 * After the process exits, how long to wait for its pipes to reach EOF. A
 * background child that inherited them (`daemon &`) may keep them open for
 * ever; the command is over all the same, and its output is then dropped.
 */
const PIPE_EOF_GRACE_MS = 250;

interface Backend {
  pid: number;
  write(bytes: Uint8Array): void;
  /** Bytes accepted but not yet taken by the process. */
  pendingInput(): number;
  endInput(): void;
  resize(cols: number, rows: number): void;
  pause(): void;
  resume(): void;
}

interface Sink {
  data(stream: OutputStream, bytes: Uint8Array): void;
  exit(info: ExitInfo): void;
}

let ptyModule: Promise<typeof NodePty> | undefined;

async function loadPty(): Promise<typeof NodePty> {
  ptyModule ??= import("node-pty");
  try {
    return await ptyModule;
  } catch (err) {
    ptyModule = undefined;
    throw new WrennError(
      "failed_precondition",
      `PTY support is unavailable in this sandbox (node-pty failed to load: ${messageOf(err)})`,
      { cause: err },
    );
  }
}

async function spawnPiped(spec: ProcessSpec, sink: Sink): Promise<Backend> {
  const child: ChildProcess = spawn(spec.launch.file, spec.launch.args, {
    argv0: spec.launch.file === spec.argv0 ? undefined : spec.argv0,
    cwd: spec.cwd,
    env: spec.env,
    uid: spec.launch.uid,
    gid: spec.launch.gid,
    // Own process group, so signals reach the whole command tree.
    detached: true,
    stdio: [spec.stdin ? "pipe" : "ignore", "pipe", "pipe"],
  });
  if (child.pid === undefined) {
    const [err] = (await once(child, "error")) as [NodeJS.ErrnoException];
    throw new WrennError("internal", `could not start '${spec.config.cmd}': ${err.message}`, {
      cause: err,
    });
  }
  const stdout = child.stdout!;
  const stderr = child.stderr!;
  stdout.on("data", (b: Buffer) => sink.data("stdout", b));
  stderr.on("data", (b: Buffer) => sink.data("stderr", b));
  child.stdin?.on("error", () => {
    // EPIPE once the process stops reading; its exit status says the rest.
  });

  let exit: ExitInfo | undefined;
  let ended = false;
  let paused = false;
  const end = () => {
    if (ended || exit === undefined) return;
    ended = true;
    sink.exit(exit);
  };
  const waitForEof = () => {
    setTimeout(() => {
      if (ended) return;
      // A reader still catching up holds the pipes paused: that output is owed to it.
      if (paused) waitForEof();
      else end();
    }, PIPE_EOF_GRACE_MS).unref();
  };
  child.on("exit", (code, signal) => {
    exit = exitInfo(code, signal);
    waitForEof();
  });
  child.on("close", end);
  child.on("error", (err) => {
    exit ??= { ...exitInfo(null, null), status: "error", error: err.message };
  });

  return {
    pid: child.pid,
    write(bytes) {
      child.stdin?.write(bytes);
    },
    pendingInput: () => child.stdin?.writableLength ?? 0,
    endInput() {
      child.stdin?.end();
    },
    resize() {
      throw new WrennError("failed_precondition", "the process was not started with a PTY");
    },
    pause() {
      paused = true;
      stdout.pause();
      stderr.pause();
    },
    resume() {
      paused = false;
      stdout.resume();
      stderr.resume();
    },
  };
}

async function spawnPty(spec: ProcessSpec, sink: Sink): Promise<Backend> {
  const pty = await loadPty();
  const size = spec.pty ?? { cols: 80, rows: 24 };
  const term: NodePty.IPty = pty.spawn(spec.launch.file, spec.launch.args, {
    name: spec.env.TERM ?? "xterm-256color",
    cols: size.cols,
    rows: size.rows,
    cwd: spec.cwd,
    env: spec.env,
    // Raw bytes: output may split a UTF-8 sequence, and clients decode it themselves.
    encoding: null,
  });
  term.onData((data) => sink.data("pty", data as unknown as Buffer));
  term.onExit(({ exitCode, signal }) => sink.exit(exitInfo(exitCode, signal ?? null)));
  let inputOpen = true;
  return {
    pid: term.pid,
    write(bytes) {
      term.write(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    },
    pendingInput: () => 0,
    endInput() {
      // A terminal has no end of input of its own; ^D is what a shell reads as one.
      if (inputOpen) term.write("\x04");
      inputOpen = false;
    },
    resize(cols, rows) {
      term.resize(cols, rows);
    },
    pause: () => term.pause(),
    resume: () => term.resume(),
  };
}

/** A process envd started: its output readers, its input, and how it ended. */
export class ManagedProcess {
  readonly spec: ProcessSpec;
  readonly output: OutputHub;
  readonly startedAt = Date.now();
  #backend: Backend | undefined;
  #pid = 0;
  #exit: ExitInfo | undefined;
  #endedAt = 0;
  #stdinOpen: boolean;
  readonly #onEnd: Array<(proc: ManagedProcess) => void> = [];

  private constructor(spec: ProcessSpec, limits: OutputLimits, log: Logger) {
    this.spec = spec;
    this.#stdinOpen = spec.stdin || spec.pty !== undefined;
    this.output = new OutputHub(
      { pause: () => this.#backend?.pause(), resume: () => this.#backend?.resume() },
      limits,
      (sub) =>
        log.warn(
          { pid: this.pid, queuedBytes: sub.queuedBytes },
          "output reader stalled; cut off so the process can go on",
        ),
    );
  }

  static async spawn(
    spec: ProcessSpec,
    limits: OutputLimits,
    log: Logger,
  ): Promise<ManagedProcess> {
    const proc = new ManagedProcess(spec, limits, log);
    const sink: Sink = {
      data: (stream, bytes) => proc.output.publish(stream, bytes),
      exit: (info) => proc.#finish(info),
    };
    proc.#backend = spec.pty ? await spawnPty(spec, sink) : await spawnPiped(spec, sink);
    proc.#pid = proc.#backend.pid;
    return proc;
  }

  get pid(): number {
    return this.#pid;
  }

  get running(): boolean {
    return this.#exit === undefined;
  }

  get exit(): ExitInfo | undefined {
    return this.#exit;
  }

  get endedAt(): number {
    return this.#endedAt;
  }

  onEnd(fn: (proc: ManagedProcess) => void): void {
    this.#onEnd.push(fn);
  }

  #finish(info: ExitInfo): void {
    if (this.#exit !== undefined) return;
    this.#exit = info;
    this.#endedAt = Date.now();
    // The table keeps up to 1000 ended processes for minutes; without the
    // child and its pipe streams each holds ~3 KB less of envd's heap.
    this.#backend = undefined;
    this.output.finish(info);
    for (const fn of this.#onEnd) fn(this);
  }

  #live(): Backend {
    if (this.#backend === undefined || this.#exit !== undefined) {
      throw new WrennError("not_found", `process ${this.pid} has already exited`);
    }
    return this.#backend;
  }

  writeInput(bytes: Uint8Array): void {
    const backend = this.#live();
    if (!this.#stdinOpen) {
      throw new WrennError(
        "failed_precondition",
        this.spec.stdin
          ? `stdin of process ${this.pid} was closed`
          : `process ${this.pid} was started without stdin (start it with stdin: true)`,
      );
    }
    if (backend.pendingInput() > MAX_PENDING_INPUT) {
      throw new WrennError(
        "resource_exhausted",
        `process ${this.pid} is not reading its input; ${backend.pendingInput()} bytes are still waiting`,
      );
    }
    backend.write(bytes);
  }

  closeStdin(): void {
    const backend = this.#live();
    if (!this.spec.stdin && this.spec.pty === undefined) {
      throw new WrennError(
        "failed_precondition",
        `process ${this.pid} was started without stdin, so there is none to close`,
      );
    }
    backend.endInput();
    this.#stdinOpen = this.spec.pty !== undefined;
  }

  signal(signo: number): void {
    this.#live();
    try {
      process.kill(-this.pid, signo);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
      // The process left its group (setsid); it may still be there itself.
      try {
        process.kill(this.pid, signo);
      } catch (inner) {
        if ((inner as NodeJS.ErrnoException).code !== "ESRCH") throw inner;
      }
    }
  }

  resize(cols: number, rows: number): void {
    this.#live().resize(cols, rows);
  }
}
