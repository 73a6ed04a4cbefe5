import type { Measure } from "@wrenn/host-agent/image/progress.ts";
import { paint } from "./style.ts";
import { bytes } from "./table.ts";

const FRAMES = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
const BAR_WIDTH = 20;

function clock(ms: number): string {
  const s = Math.round(ms / 1000);
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

function eta(s: number): string {
  const t = Math.max(0, Math.round(s));
  return `${Math.floor(t / 60)}:${String(t % 60).padStart(2, "0")}`;
}

/** A measure as it goes: where it started, for its rate and ETA. */
interface Meter extends Measure {
  since: number;
  startDone: number;
  loggedAt: number;
  loggedDone: number;
}

/**
 * One line for a measure: a bar, percentage, amounts, rate and ETA when the
 * total is known (`downloading [████░░] 45% 31 MiB/69 MiB 2.1 MiB/s ETA 0:18`),
 * amounts and rate otherwise.
 */
export function meterLine(m: Meter, now: number): string {
  const secs = (now - m.since) / 1000;
  const rate = secs > 0 ? (m.done - m.startDone) / secs : 0;
  const amount = (n: number) => (m.unit === "bytes" ? bytes(n) : String(n));
  const speed = m.unit === "bytes" ? ` ${bytes(rate)}/s` : "";
  if (m.total === undefined || m.total <= 0) return `${m.label} ${amount(m.done)}${speed}`;
  const frac = Math.min(1, Math.max(0, m.done / m.total));
  const full = Math.round(frac * BAR_WIDTH);
  const left = m.done >= m.total ? "" : ` ETA ${rate > 0 ? eta((m.total - m.done) / rate) : "?"}`;
  return (
    `${m.label} [${"█".repeat(full)}${"░".repeat(BAR_WIDTH - full)}] ${Math.floor(frac * 100)}% ` +
    `${amount(m.done)}/${amount(m.total)}${speed}${left}`
  );
}

export interface PhaseOptions {
  stream?: NodeJS.WriteStream;
  /** Detail lines not worth a log line off a terminal (debootstrap's chatter). */
  noise?: (line: string) => boolean;
  /** Off a terminal, a measure's line at most this often (and at its start and end). */
  logEveryMs?: number;
  /** The clock (tests). */
  now?: () => number;
}

interface Phase {
  title: string;
  since: number;
  lines: number;
  last: string;
  meter: Meter | undefined;
  /** The phase's byte count, for its ✓ line. */
  moved: { bytes: number; ms: number } | undefined;
}

/**
 * Progress of a build made of phases. On a terminal each phase is one live
 * line — spinner, elapsed time, then its measure as a bar with amounts, rate
 * and ETA, or else how many lines of output so far and the last one — that
 * turns into `✓ phase (time)` when the next starts. In a log: a stamped
 * header per phase, the output lines that matter, and a measure's line at its
 * start, every `logEveryMs` and at its end.
 */
export class Phases {
  readonly #stream: NodeJS.WriteStream;
  readonly #tty: boolean;
  readonly #noise: (line: string) => boolean;
  readonly #logEveryMs: number;
  readonly #now: () => number;
  readonly #start: number;
  #phase: Phase | undefined;
  #timer: NodeJS.Timeout | undefined;
  #frame = 0;

  constructor(options: PhaseOptions = {}) {
    this.#stream = options.stream ?? process.stderr;
    this.#tty = this.#stream.isTTY === true;
    this.#noise = options.noise ?? (() => false);
    this.#logEveryMs = options.logEveryMs ?? 10_000;
    this.#now = options.now ?? (() => performance.now());
    this.#start = this.#now();
  }

  step(title: string): void {
    this.#close();
    const now = this.#now();
    this.#phase = { title, since: now, lines: 0, last: "", meter: undefined, moved: undefined };
    if (!this.#tty) {
      this.#stream.write(`==> [${clock(now - this.#start)}] ${title}\n`);
      return;
    }
    this.#draw();
    this.#timer = setInterval(() => this.#draw(), 100);
    this.#timer.unref();
  }

  detail(line: string): void {
    const p = this.#phase;
    if (p) {
      p.lines++;
      p.last = line.trim();
    }
    if (!this.#tty && line.trim() !== "" && !this.#noise(line)) {
      this.#stream.write(`    ${line}\n`);
    }
  }

  measure(m: Measure): void {
    const p = this.#phase;
    if (!p) return;
    const now = this.#now();
    let meter = p.meter;
    if (meter === undefined || meter.label !== m.label || meter.unit !== m.unit) {
      this.#logFinal();
      meter = { ...m, since: now, startDone: m.done, loggedAt: -Infinity, loggedDone: -1 };
      p.meter = meter;
    }
    meter.done = m.done;
    meter.total = m.total;
    if (m.unit === "bytes") p.moved = { bytes: m.done, ms: now - meter.since };
    if (this.#tty) return;
    // The first report at or past the total ends the measure's log; later ones add nothing.
    const justFinished = m.total !== undefined && m.done >= m.total && meter.loggedDone < m.total;
    if (now - meter.loggedAt >= this.#logEveryMs || justFinished) {
      this.#log(meter, now);
    }
  }

  /** Ends the live line (call when the build ends, passed or failed). */
  finish(): void {
    this.#close();
  }

  #log(meter: Meter, now: number): void {
    meter.loggedAt = now;
    meter.loggedDone = meter.done;
    this.#stream.write(`    ${meterLine(meter, now)}\n`);
  }

  /** Off a terminal, a measure's last state when it was not the last one logged. */
  #logFinal(): void {
    const m = this.#phase?.meter;
    const logged =
      m !== undefined &&
      (m.loggedDone === m.done || (m.total !== undefined && m.loggedDone >= m.total));
    if (!this.#tty && m && !logged) this.#log(m, this.#now());
  }

  #draw(): void {
    const p = this.#phase;
    if (!p) return;
    const now = this.#now();
    const width = (this.#stream.columns || 80) - 1;
    const spin = `${FRAMES[this.#frame++ % FRAMES.length]} `;
    const time = ` ${clock(now - p.since)}`;
    let title = p.title;
    let detail = p.lines > 0 ? ` · ${p.lines} lines · ${p.last}` : "";
    if (p.meter) {
      // The bar matters more than the end of a long title: the title gives way first.
      detail = ` · ${meterLine(p.meter, now)}`;
      const room = width - spin.length - time.length - detail.length;
      if (title.length > room) title = `${title.slice(0, Math.max(12, room - 1))}…`;
    }
    const head = `${spin}${title}${time}`;
    const tail = detail.slice(0, Math.max(0, width - head.length));
    this.#stream.write(`\r\x1b[K${head}${tail && paint("dim", tail, this.#stream)}`);
  }

  #close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#logFinal();
    const p = this.#phase;
    if (p && this.#tty) {
      const took = ((this.#now() - p.since) / 1000).toFixed(1);
      const moved =
        p.moved && p.moved.bytes > 0
          ? `, ${bytes(p.moved.bytes)}${p.moved.ms > 0 ? ` at ${bytes((p.moved.bytes * 1000) / p.moved.ms)}/s` : ""}`
          : "";
      this.#stream.write(
        `\r\x1b[K${paint("green", "✓", this.#stream)} ${p.title} (${took} s${moved})\n`,
      );
    }
    this.#phase = undefined;
  }
}
