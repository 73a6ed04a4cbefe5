/**
 * What a paused sandbox's disk leaves in its keep dir: the data file plus
 * `rootfs.json` naming the base template it only makes sense on top of.
 */
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { z } from "zod";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { BaseImage, SandboxDisk, StorageName } from "./storage.ts";

export const KEEP_META = "rootfs.json";

const KeptDisk = z.object({
  driver: z.enum(["dm-snapshot", "qcow2", "reflink"]),
  sandboxId: z.string(),
  baseName: z.string(),
  basePath: z.string(),
  sizeMb: z.number().int().positive(),
  /** File name inside the keep dir. */
  file: z.string(),
  keptAt: z.string(),
});
export type KeptDisk = z.infer<typeof KeptDisk>;

export async function writeKeepMeta(keepDir: string, meta: KeptDisk): Promise<void> {
  await mkdir(keepDir, { recursive: true });
  const path = join(keepDir, KEEP_META);
  // Written aside and renamed so a crash never leaves half a file.
  await writeFile(`${path}.tmp`, JSON.stringify(meta, null, 2) + "\n");
  await rename(`${path}.tmp`, path);
}

export async function readKeepMeta(keepDir: string): Promise<KeptDisk> {
  const path = join(keepDir, KEEP_META);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new WrennError("not_found", `paused disk metadata ${path} is missing`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new WrennError("internal", `paused disk metadata ${path} is not JSON`, { cause: err });
  }
  const parsed = KeptDisk.safeParse(json);
  if (!parsed.success) {
    throw new WrennError(
      "internal",
      `paused disk metadata ${path} is invalid: ${parsed.error.message}`,
    );
  }
  return parsed.data;
}

export async function removeKeepMeta(keepDir: string): Promise<void> {
  await rm(join(keepDir, KEEP_META), { force: true });
}

/** Deletes what a detached disk keeps in its keep dir (data, then metadata); idempotent. */
export async function dropKept(disk: SandboxDisk): Promise<void> {
  if (!isDetached(disk)) return;
  await rm(disk.state.keptPath ?? "", { force: true });
  await removeKeepMeta(disk.state.keepDir ?? "");
}

/**
 * Deletes a kept disk a committed resume left in `keepDir` (the agent died
 * before deleting it); only for a sandbox running on its own disk. Returns
 * whether there was one.
 */
export async function dropLeftoverKept(keepDir: string): Promise<boolean> {
  const meta = await readKeepMeta(keepDir).catch((err: unknown) => {
    if (err instanceof WrennError && err.code === "not_found") return null;
    throw err;
  });
  if (meta === null) return false;
  await rm(join(keepDir, basename(meta.file)), { force: true });
  await removeKeepMeta(keepDir);
  return true;
}

/** The detached form of a disk whose data now lives at `keptPath`. */
export function detachedDisk(
  disk: SandboxDisk,
  keepDir: string,
  keptPath: string,
  extra: Record<string, string> = {},
): SandboxDisk {
  return {
    ...disk,
    path: keptPath,
    state: { ...disk.state, ...extra, detached: "1", keepDir, keptPath },
  };
}

export function isDetached(disk: SandboxDisk): boolean {
  return disk.state.detached === "1";
}

/** Checks that a detached disk may be re-attached over `base`. */
export async function checkKept(
  driver: StorageName,
  disk: SandboxDisk,
  base: BaseImage,
): Promise<KeptDisk> {
  if (!isDetached(disk)) {
    throw new WrennError(
      "failed_precondition",
      `disk of sandbox ${disk.sandboxId} is already attached`,
    );
  }
  const keepDir = disk.state.keepDir ?? "";
  const meta = await readKeepMeta(keepDir);
  if (meta.driver !== driver) {
    throw new WrennError(
      "failed_precondition",
      `paused disk in ${keepDir} was made by the ${meta.driver} storage driver, this agent uses ${driver}`,
    );
  }
  if (meta.baseName !== base.name) {
    throw new WrennError(
      "failed_precondition",
      `paused disk of sandbox ${disk.sandboxId} belongs on template '${meta.baseName}', not '${base.name}'`,
    );
  }
  if (basename(disk.state.keptPath ?? "") !== meta.file) {
    throw new WrennError(
      "internal",
      `paused disk metadata in ${keepDir} names ${meta.file}, not ${disk.state.keptPath}`,
    );
  }
  return meta;
}

/** Attached form of a detached disk: drops the keep fields. */
export function attachedState(
  disk: SandboxDisk,
  extra: Record<string, string>,
): Record<string, string> {
  const { detached: _d, keepDir: _k, keptPath: _p, ...rest } = disk.state;
  return { ...rest, ...extra };
}
