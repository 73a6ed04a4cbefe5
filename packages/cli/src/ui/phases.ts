import { paint } from "./style.ts";

const FRAMES = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

function clock(ms: number): string {
  const s = Math.round(ms / 1000);
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

export interface PhaseOptions {
  stream?: NodeJS.WriteStream;
  /** Detail lines not worth a log line off a terminal (debootstrap's chatter). */
  noise?: (line: string) => boolean;
}

/**
 * Progress of a build made of phases. On a terminal each phase is one live
 * line (spinner, elapsed time, how many lines of output so far and the last
 * one) that turns into `✓ phase (time)` when the next starts; in a log, a
 * stamped header per phase and the output lines that matter.
 */
export class Phases {
  readonly #stream: NodeJS.WriteStream;
  readonly #tty: boolean;
  readonly #noise: (line: string) => boolean;
  readonly #start = performance.now();
  #phase: { title: string; since: number; lines: number; last: string } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #frame = 0;

  constructor(options: PhaseOptions = {}) {
    this.#stream = options.stream ?? process.stderr;
    this.#tty = this.#stream.isTTY === true;
    this.#noise = options.noise ?? (() => false);
  }

  step(title: string): void {
    this.#close();
    if (!this.#tty) {
      this.#stream.write(`==> [${clock(performance.now() - this.#start)}] ${title}\n`);
      return;
    }
    this.#phase = { title, since: performance.now(), lines: 0, last: "" };
    this.#draw();
    this.#timer = setInterval(() => this.#draw(), 100);
    this.#timer.unref();
  }

  detail(line: string): void {
    if (this.#phase) {
      this.#phase.lines++;
      this.#phase.last = line.trim();
    } else if (!this.#tty && line.trim() !== "" && !this.#noise(line)) {
      this.#stream.write(`    ${line}\n`);
    }
  }

  /** Ends the live line (call when the build ends, passed or failed). */
  finish(): void {
    this.#close();
  }

  #draw(): void {
    const p = this.#phase;
    if (!p) return;
    const head = `${FRAMES[this.#frame++ % FRAMES.length]} ${p.title} ${clock(performance.now() - p.since)}`;
    const room = (this.#stream.columns || 80) - 1 - head.length;
    const tail = p.lines > 0 ? ` · ${p.lines} lines · ${p.last}`.slice(0, Math.max(0, room)) : "";
    this.#stream.write(`\r\x1b[K${head}${tail && paint("dim", tail, this.#stream)}`);
  }

  #close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    const p = this.#phase;
    if (p && this.#tty) {
      const took = ((performance.now() - p.since) / 1000).toFixed(1);
      this.#stream.write(`\r\x1b[K${paint("green", "✓", this.#stream)} ${p.title} (${took} s)\n`);
    }
    this.#phase = undefined;
  }
}
