import type { Progress } from "./progress.ts";

type Kind = "P" | "I" | "W" | "E";

interface Pending {
  kind: Kind;
  name: string;
  now: number;
  end: number;
  args: string[];
}

/** Measures whose numbers are bytes: the Packages index and the packages themselves. */
const BYTE_MEASURES = new Set(["DOWNPKGS", "DOWNDEBS"]);

/** debootstrap's printf formats take only %s (and %%). */
function format(fmt: string, args: string[]): string {
  let i = 0;
  return fmt.replace(/%[s%]/g, (m) => (m === "%%" ? "%" : (args[i++] ?? "")));
}

/**
 * Reads what `debootstrap --debian-installer` writes on fd 3 — the protocol
 * debian-installer's progress bar reads — and turns it into measures:
 * `P: NOW END NAME` + `PA:` args + `PF: format` records (DOWNPKGS and
 * DOWNDEBS count bytes of the index and the packages against their total
 * size, the others count items or percent)
 * and bare `P: NOW END` lines (wget's progress within one package). Info,
 * warning and error records (`I:`/`W:`/`E:` + `xA:` + `xF:`) become the
 * detail lines debootstrap prints by hand (`I: Retrieving libc6 2.36`);
 * errors are kept for the failure's message.
 */
export class DebootstrapStatus {
  readonly #progress: Progress;
  #pending: Pending | undefined;
  #current: { name: string; label: string; done: number } | undefined;
  readonly errors: string[] = [];

  constructor(progress: Progress) {
    this.#progress = progress;
  }

  line(raw: string): void {
    const m = /^([PIWE])(A|F)?: ?(.*)$/.exec(raw);
    if (!m) return;
    const kind = m[1] as Kind;
    const part = m[2];
    const rest = m[3] ?? "";
    if (part === undefined) {
      if (kind === "P") {
        const [now = "", end = "", name] = rest.split(" ");
        if (name === undefined) {
          // wget's percentage within the current measure.
          this.#report(Number(now), Number(end));
          return;
        }
        this.#pending = { kind, name, now: Number(now), end: Number(end), args: [] };
      } else {
        this.#pending = { kind, name: rest, now: 0, end: 0, args: [] };
      }
      return;
    }
    const p = this.#pending;
    if (p === undefined || p.kind !== kind) return;
    if (part === "A") {
      p.args.push(rest);
      return;
    }
    this.#pending = undefined;
    const text = format(rest, p.args);
    if (kind === "P") {
      const same = this.#current?.name === p.name;
      // The closing DOWNDEBS record says 0: debootstrap counts in a subshell.
      const now = same ? Math.max(p.now, this.#current?.done ?? 0) : p.now;
      this.#current = { name: p.name, label: text, done: now };
      this.#report(now, p.end);
    } else {
      if (kind === "E") this.errors.push(text);
      this.#progress.detail(`${kind}: ${text}`);
    }
  }

  #report(now: number, end: number): void {
    const c = this.#current;
    if (c === undefined || !Number.isFinite(now)) return;
    c.done = Math.max(c.done, now);
    this.#progress.measure({
      label: c.label,
      done: c.done,
      ...(Number.isFinite(end) && end > 0 ? { total: end } : {}),
      unit: BYTE_MEASURES.has(c.name) ? "bytes" : "items",
    });
  }
}
