/**
 * The state file and the migration stream QEMU writes into it and reads
 * back from it.
 */
import { open, readFile, rm } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import type { QemuMachine } from "./args.ts";
import type { QmpClient } from "../qmp.ts";

/**
 * The state file is our header line (the machine as JSON) followed by QEMU's
 * migration stream, so a snapshot is self-contained in its two files: QEMU
 * needs the same kernel and option ROMs on restore or it rejects the stream.
 */
export const STATE_MAGIC = "WRENN-QEMU-STATE/1 ";

/**
 * `ramInState`: guest RAM is in the migration stream (a copy-on-write clone's
 * RAM is in no file). x-ignore-shared must then be off on both sides: with
 * it on, the loading side refuses pages for its file-backed RAM.
 */
export interface StateHeader {
  machine: QemuMachine;
  ramInState: boolean;
}

export async function readStateHeader(
  statePath: string,
): Promise<StateHeader & { offset: number }> {
  const fh = await open(statePath, "r").catch((err: unknown) => {
    throw new WrennError("not_found", `snapshot state ${statePath}: ${messageOf(err)}`);
  });
  try {
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const nl = buf.subarray(0, bytesRead).indexOf(10);
    const line = nl > 0 ? buf.subarray(0, nl).toString("utf8") : "";
    if (!line.startsWith(STATE_MAGIC)) {
      throw new WrennError(
        "failed_precondition",
        `${statePath} is not a QEMU snapshot written by this driver`,
      );
    }
    return { ...(JSON.parse(line.slice(STATE_MAGIC.length)) as StateHeader), offset: nl + 1 };
  } finally {
    await fh.close();
  }
}

const MIGRATION_TIMEOUT_MS = 120_000;

export async function waitMigration(qmp: QmpClient, what: string): Promise<void> {
  const deadline = performance.now() + MIGRATION_TIMEOUT_MS;
  for (let delay = 1; ; delay = Math.min(delay * 2, 20)) {
    const info = await qmp.execute<{ status?: string; "error-desc"?: string }>("query-migrate");
    if (info.status === "completed") return;
    if (info.status === "failed" || info.status === "cancelled") {
      throw new WrennError(
        "internal",
        `${what} failed: ${info["error-desc"] ?? info.status} (see the QEMU log)`,
      );
    }
    if (performance.now() > deadline) {
      throw new WrennError(
        "deadline_exceeded",
        `${what} did not finish in ${MIGRATION_TIMEOUT_MS} ms`,
      );
    }
    await sleep(delay);
  }
}

/** The exit status the migration's writer left in `rcPath`; throws unless 0. */
export async function writerStatus(rcPath: string, what: string): Promise<void> {
  const deadline = performance.now() + MIGRATION_TIMEOUT_MS;
  for (let delay = 1; ; delay = Math.min(delay * 2, 20)) {
    const rc = await readFile(rcPath, "utf8").catch(() => "");
    if (rc.endsWith("\n")) {
      await rm(rcPath, { force: true });
      if (rc.trim() === "0") return;
      throw new WrennError(
        "resource_exhausted",
        `${what} failed: writing the state file exited with status ${rc.trim()} (is its disk full?)`,
      );
    }
    if (performance.now() > deadline) {
      throw new WrennError("deadline_exceeded", `${what}: the state writer did not finish`);
    }
    await sleep(delay);
  }
}
