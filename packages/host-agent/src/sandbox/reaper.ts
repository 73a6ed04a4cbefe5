import { messageOf } from "@wrenn/shared/errors.ts";
import type { SandboxHost } from "./host.ts";
import { pause } from "./pause.ts";

/**
 * The TTL: a running sandbox idle past its timeout is paused. A pause that
 * fails never throws the sandbox away: it stays running (or, if its VM had
 * already stopped, failed with its memory and disk kept) and the next pass
 * tries again.
 */
export class Reaper {
  readonly #host: SandboxHost;
  #timer: NodeJS.Timeout | undefined;
  #reaping = false;

  constructor(host: SandboxHost) {
    this.#host = host;
  }

  start(intervalMs: number): void {
    this.#timer = setInterval(() => void this.reap(), intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  async reap(now = Date.now()): Promise<void> {
    // One pass at a time: a pause can outlast the interval, and a second pass
    // would find the sandbox still running and pause it again.
    if (this.#reaping) return;
    this.#reaping = true;
    try {
      for (const live of this.#host.registry.all()) {
        const r = live.record;
        if (r.status !== "running" || r.timeoutSec <= 0) continue;
        if (now - r.lastActiveAtMs < r.timeoutSec * 1000) continue;
        const log = this.#host.log.child({ sandbox: r.id, timeoutSec: r.timeoutSec });
        log.info("TTL expired; pausing");
        try {
          await pause(this.#host, r.id, "ttl");
        } catch (err) {
          log.error(
            { err: messageOf(err), status: live.record.status },
            "TTL pause failed; the sandbox is kept and the next pass tries again",
          );
        }
      }
    } finally {
      this.#reaping = false;
    }
  }
}
