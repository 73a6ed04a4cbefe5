/**
 * Snapshot templates: a paused sandbox's disk, flattened, and its memory,
 * kept so that new sandboxes restore from them instead of booting.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { WrennError } from "@wrenn/shared/errors.ts";
import { timed } from "@wrenn/shared/log.ts";
import { crashPoint } from "../util/crash-point.ts";
import type { SandboxHost } from "./host.ts";
import { pause } from "./pause.ts";
import {
  SNAPSHOT_NAME,
  type BootSource,
  type SnapshotMeta,
  type TemplateStore,
} from "./templates.ts";
import { sourceKey } from "./create.ts";

/** A running sandbox is paused first and stays paused. */
export async function createSnapshot(
  host: SandboxHost,
  id: string,
  name: string,
  overwrite: boolean,
): Promise<SnapshotMeta> {
  if (!SNAPSHOT_NAME.test(name)) {
    throw new WrennError(
      "invalid_argument",
      "name must start with a letter or digit and use only letters, digits, '.', '_' or '-' (at most 64)",
    );
  }
  const isBase = await host.opts.images.template(name).then(
    () => true,
    () => false,
  );
  if (isBase) {
    throw new WrennError("already_exists", `'${name}' is a base template's name`);
  }
  if (!overwrite && (await host.templates.get(name))) {
    throw new WrennError(
      "already_exists",
      `snapshot template '${name}' already exists (ask for overwrite to replace it)`,
    );
  }
  // Warm entries of the template are no one's: they go with the old template.
  await host.pool?.drain((key) => key === sourceKey({ fromSnapshot: name }));
  if (usersOf(host, name).length > 0) {
    throw new WrennError(
      "failed_precondition",
      `snapshot template '${name}' is in use by sandboxes; it cannot be replaced now`,
    );
  }
  if (host.registry.get(id).record.status === "running") await pause(host, id);
  return host.registry.withLock(id, () => saveSnapshot(host, id, host.templates, name));
}

/**
 * Flattens a paused sandbox's disk and copies its memory into `store` as
 * `name`; the caller holds the sandbox's lock.
 */
export async function saveSnapshot(
  host: SandboxHost,
  id: string,
  store: TemplateStore,
  name: string,
  /** A boot snapshot: never replaces one that exists; records what it was made from. */
  boot?: { source: BootSource },
): Promise<SnapshotMeta> {
  const { record } = host.registry.get(id);
  const disk = record.disk;
  if (record.status !== "paused" || disk === null) {
    throw new WrennError("failed_precondition", `sandbox '${id}' is ${record.status}`);
  }
  const log = host.log.child({ sandbox: id, template: name });
  const keep = host.keepDir(record);
  const build = await store.begin(name, boot !== undefined);
  try {
    // No fsck, no shrink: the snapshotted kernel has this filesystem mounted.
    await timed(log, "snapshot.flatten_disk", () =>
      host.opts.storage.flatten(disk, join(build.dir, "rootfs.ext4"), { shrink: false }),
    );
    crashPoint("snapshot:after-flatten");
    await timed(log, "snapshot.copy_memory", () => host.opts.vmm.copyMemory(keep, build.dir));
    crashPoint("snapshot:after-copy");
    const meta: SnapshotMeta = {
      name,
      vmm: record.vmm,
      vcpus: record.vcpus,
      memoryMb: record.memoryMb,
      diskSizeMb: record.diskSizeMb,
      baseTemplate: record.fromSnapshot
        ? ((await host.templates.get(record.fromSnapshot))?.baseTemplate ?? record.template)
        : record.template,
      sourceSandbox: id,
      envdAccessToken: record.envdAccessToken,
      createdAtMs: Date.now(),
      ...(boot ? { source: boot.source } : {}),
    };
    await build.commit(meta);
    log.info("snapshot template created");
    return meta;
  } catch (err) {
    await rm(build.dir, { recursive: true, force: true });
    throw err;
  }
}

export async function deleteSnapshot(host: SandboxHost, name: string): Promise<void> {
  await host.pool?.drain((key) => key === sourceKey({ fromSnapshot: name }));
  const users = usersOf(host, name);
  if (users.length > 0) {
    throw new WrennError(
      "failed_precondition",
      `snapshot template '${name}' is used by ${users.length} sandbox(es): ${users.join(", ")}`,
    );
  }
  await host.templates.remove(name);
}

/** Sandboxes whose disk overlays the template (a failed one may still keep its disk). */
function usersOf(host: SandboxHost, name: string): string[] {
  return host.registry
    .all()
    .filter(
      (l) => l.record.fromSnapshot === name && (l.record.status !== "failed" || l.record.disk),
    )
    .map((l) => l.record.id);
}
