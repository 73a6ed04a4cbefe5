import { constants } from "node:os";

/** How a process ended, in the shape of the wire's EndEvent. */
export interface ExitInfo {
  /** The exit status, or -1 when a signal ended the process (as Go's ExitCode()). */
  exitCode: number;
  exited: boolean;
  /** "exit status N" or "signal: killed": the strings E2B's Go daemon reports. */
  status: string;
  /**
   * Set whenever the process did not exit 0, as E2B's daemon does (Go's Wait
   * error); the e2b SDK makes it the message of its CommandExitError.
   */
  error?: string;
}

// Go's syscall.Signal.String() on Linux; clients print these, so keep its wording.
const SIGNAL_TEXT: Record<number, string> = {
  1: "hangup",
  2: "interrupt",
  3: "quit",
  4: "illegal instruction",
  5: "trace/breakpoint trap",
  6: "aborted",
  7: "bus error",
  8: "floating point exception",
  9: "killed",
  10: "user defined signal 1",
  11: "segmentation fault",
  12: "user defined signal 2",
  13: "broken pipe",
  14: "alarm clock",
  15: "terminated",
  16: "stack fault",
  17: "child exited",
  18: "continued",
  19: "stopped (signal)",
  20: "stopped",
  21: "stopped (tty input)",
  22: "stopped (tty output)",
  23: "urgent I/O condition",
  24: "CPU time limit exceeded",
  25: "file size limit exceeded",
  26: "virtual timer expired",
  27: "profiling timer expired",
  28: "window changed",
  29: "I/O possible",
  30: "power failure",
  31: "bad system call",
};

export function signalNumber(signal: NodeJS.Signals | number): number {
  return typeof signal === "number" ? signal : (constants.signals[signal] ?? 0);
}

export function exitInfo(code: number | null, signal: NodeJS.Signals | number | null): ExitInfo {
  const signo = signal === null ? 0 : signalNumber(signal);
  if (signo > 0) {
    const status = `signal: ${SIGNAL_TEXT[signo] ?? `signal ${signo}`}`;
    return { exitCode: -1, exited: false, status, error: status };
  }
  const exitCode = code ?? -1;
  const status = `exit status ${exitCode}`;
  return exitCode === 0
    ? { exitCode, exited: true, status }
    : { exitCode, exited: true, status, error: status };
}
