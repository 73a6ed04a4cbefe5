/**
 * dmsetup calls for the dm-snapshot driver. Removal retries with backoff only
 * on "Device or resource busy": the kernel can hold a device for a moment
 * after the VMM that opened it exits. Anything else fails at once.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "@wrenn/shared/log.ts";
import { CommandError, type Runner } from "@wrenn/shared/command.ts";
import { WrennError } from "@wrenn/shared/errors.ts";

export interface RetryPolicy {
  /** Attempts in all, including the first. */
  attempts: number;
  initialDelayMs: number;
  maxDelayMs: number;
}

/** 100, 200, 400, 800, 1600, 2000, 2000 ms between 8 attempts: ≈7 s in all. */
export const DEFAULT_REMOVE_RETRY: RetryPolicy = {
  attempts: 8,
  initialDelayMs: 100,
  maxDelayMs: 2000,
};

const BUSY = /Device or resource busy/;
const ABSENT = /No such device or address|does not exist|not found/i;

export function isBusy(err: unknown): boolean {
  return err instanceof CommandError && BUSY.test(err.stderr);
}

function isAbsent(err: unknown): boolean {
  return err instanceof CommandError && ABSENT.test(err.stderr);
}

function cancelled(what: string, signal: AbortSignal): WrennError {
  return new WrennError("cancelled", `${what}: cancelled`, { cause: signal.reason });
}

export class DeviceMapper {
  private readonly runner: Runner;
  private readonly log: Logger;
  private readonly retry: RetryPolicy;

  constructor(runner: Runner, log: Logger, retry: RetryPolicy = DEFAULT_REMOVE_RETRY) {
    this.runner = runner;
    this.log = log;
    this.retry = retry;
  }

  static devicePath(name: string): string {
    return `/dev/mapper/${name}`;
  }

  async exists(name: string): Promise<boolean> {
    try {
      await this.runner("dmsetup", ["info", name]);
      return true;
    } catch (err) {
      if (isAbsent(err)) return false;
      throw err;
    }
  }

  async create(name: string, table: string): Promise<void> {
    await this.runner("dmsetup", ["create", name, "--table", table]);
  }

  /**
   * `dmsetup remove` with backoff while busy. Throws not_found when the
   * device is gone, unavailable when it stays busy past the budget, and
   * cancelled when `signal` fires between attempts.
   */
  async remove(name: string, signal?: AbortSignal): Promise<void> {
    const what = `dmsetup remove ${name}`;
    let delay = this.retry.initialDelayMs;
    let waited = 0;
    for (let attempt = 1; ; attempt++) {
      if (signal?.aborted) throw cancelled(what, signal);
      try {
        await this.runner("dmsetup", ["remove", name]);
        if (attempt > 1)
          this.log.info(
            { device: name, attempt, waitedMs: waited },
            "dm device removed after busy retries",
          );
        return;
      } catch (err) {
        if (isAbsent(err)) {
          throw new WrennError("not_found", `dm device ${name} does not exist`, { cause: err });
        }
        if (!isBusy(err)) throw err;
        if (attempt >= this.retry.attempts) {
          throw new WrennError(
            "unavailable",
            `dm device ${name} is still busy after ${attempt} attempts over ${waited} ms; ` +
              `something still holds it open (see 'dmsetup info ${name}' and 'fuser -vm ${DeviceMapper.devicePath(name)}')`,
            { cause: err },
          );
        }
        this.log.warn(
          { device: name, attempt, retryInMs: delay },
          "dm device busy, retrying removal",
        );
        try {
          await sleep(delay, undefined, { signal });
        } catch {
          throw cancelled(what, signal ?? AbortSignal.abort());
        }
        waited += delay;
        delay = Math.min(delay * 2, this.retry.maxDelayMs);
      }
    }
  }

  /** Removes the device if it exists (stale devices, idempotent teardown). */
  async removeIfPresent(name: string, signal?: AbortSignal): Promise<boolean> {
    if (!(await this.exists(name))) return false;
    try {
      await this.remove(name, signal);
      return true;
    } catch (err) {
      if (err instanceof WrennError && err.code === "not_found") return false;
      throw err;
    }
  }
}
