import { bytes } from "./table.ts";

const FRAMES = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function clock(s: number): string {
  const t = Math.max(0, Math.round(s));
  return `${Math.floor(t / 60)}:${String(t % 60).padStart(2, "0")}`;
}

/**
 * A spinner with the elapsed time on stderr while `work` runs. Off a TTY it
 * says what it starts and how long it took, on two plain lines.
 */
export async function withSpinner<T>(
  label: string,
  work: () => Promise<T>,
  stream: NodeJS.WriteStream = process.stderr,
): Promise<T> {
  const start = performance.now();
  const tty = stream.isTTY === true;
  let frame = 0;
  const draw = () =>
    stream.write(
      `\r\x1b[K${FRAMES[frame++ % FRAMES.length]} ${label} ${seconds(performance.now() - start)}`,
    );
  let timer: NodeJS.Timeout | undefined;
  if (tty) {
    draw();
    timer = setInterval(draw, 100);
  } else stream.write(`${label}…\n`);
  try {
    const result = await work();
    if (timer) clearInterval(timer);
    stream.write(`${tty ? "\r\x1b[K" : ""}✓ ${label} (${seconds(performance.now() - start)})\n`);
    return result;
  } catch (err) {
    if (timer) clearInterval(timer);
    if (tty) stream.write("\r\x1b[K");
    throw err;
  }
}

/**
 * A progress bar with bytes, rate and ETA when the total is known (bytes
 * and rate otherwise), redrawn at most 10 times a second on a TTY; off a TTY
 * only the final line.
 */
export class Bar {
  readonly #label: string;
  readonly #total: number | undefined;
  readonly #stream: NodeJS.WriteStream;
  readonly #start = performance.now();
  #done = 0;
  #drawnAt = 0;

  constructor(label: string, total?: number, stream: NodeJS.WriteStream = process.stderr) {
    this.#label = label;
    this.#total = total;
    this.#stream = stream;
  }

  add(n: number): void {
    this.#done += n;
    const now = performance.now();
    if (this.#stream.isTTY && now - this.#drawnAt >= 100) {
      this.#drawnAt = now;
      this.#stream.write(`\r\x1b[K${this.line(now)}`);
    }
  }

  line(now = performance.now()): string {
    const elapsed = (now - this.#start) / 1000;
    const rate = elapsed > 0 ? this.#done / elapsed : 0;
    const speed = `${bytes(rate)}/s`;
    if (this.#total === undefined || this.#total === 0) {
      return `${this.#label} ${bytes(this.#done)} ${speed} ${clock(elapsed)}`;
    }
    const frac = Math.min(1, this.#done / this.#total);
    const width = 24;
    const full = Math.round(frac * width);
    const eta = rate > 0 ? clock((this.#total - this.#done) / rate) : "?";
    return (
      `${this.#label} [${"█".repeat(full)}${"░".repeat(width - full)}] ${Math.floor(frac * 100)}% ` +
      `${bytes(this.#done)}/${bytes(this.#total)} ${speed} ETA ${eta}`
    );
  }

  finish(): void {
    this.#stream.write(`${this.#stream.isTTY ? "\r\x1b[K" : ""}${this.line()}\n`);
  }
}
