import { createHash } from "node:crypto";
import { messageOf } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";
import { TemplateStore, type BootSource, type SnapshotMeta } from "./templates.ts";

/** The machine a sandbox asks for: one boot snapshot each. */
export interface Shape {
  template: string;
  vcpus: number;
  memoryMb: number;
  diskSizeMb: number;
}

/** Makes one boot snapshot: boots a sandbox of the shape and keeps its memory and disk. */
export interface BootSnapshotBuilder {
  build(shape: Shape, name: string, source: BootSource): Promise<SnapshotMeta>;
}

/**
 * Sandboxes the agent boots for itself to take a boot snapshot; the '-' keeps
 * them apart from users' sandbox ids (lowercase letters and digits only).
 */
export const BUILDER_PREFIX = "boot-";

/**
 * The machine a VMM starts (QEMU: its machine options, CPU model and the
 * kernel arguments it adds; see vmm/qemu/args.ts), and how the builder warms
 * it (boot-snapshot-builder.ts): changing either renames every
 * boot snapshot of that VMM, so the old ones are rebuilt rather than kept.
 * They would still restore (a state records its machine), but never on the
 * new one.
 */
const MACHINE_GENERATION: Record<string, number> = { qemu: 12, firecracker: 6 };

/** After a failed build, creates of that shape boot cold for this long before trying again. */
const RETRY_AFTER_MS = 10 * 60_000;

/**
 * Creates from a base template restore a memory snapshot of that template,
 * booted once on this host per machine shape, instead of booting it: under
 * TCG a boot is ≈ 10 s (the guest's kernel and Node start), a restore ≈ 1 s.
 * This is what E2B does with every template. The first create of a shape
 * pays for the boot and the snapshot; the rest restore it. A snapshot is
 * named after everything it was made from (image, kernel, VMM, shape), so a
 * rebuilt image or kernel gets new ones and never a stale one.
 *
 * The store is shared by every agent using the same image dir: a snapshot
 * is only ever added, never replaced, because sandboxes' disks overlay its
 * rootfs.
 */
export class BootSnapshots {
  readonly store: TemplateStore;
  private readonly building = new Map<string, Promise<SnapshotMeta | null>>();
  private readonly failedAt = new Map<string, number>();
  private readonly builder: BootSnapshotBuilder;
  private readonly log: Logger;

  constructor(dir: string, builder: BootSnapshotBuilder, log: Logger) {
    this.store = new TemplateStore(dir);
    this.builder = builder;
    this.log = log;
  }

  /** Named after everything it is made from: its image and kernel, the VMM, the shape. */
  static nameOf(shape: Shape, source: BootSource, vmm: string): string {
    const hash = createHash("sha256")
      .update(
        JSON.stringify([
          source.rootfs,
          source.kernel,
          vmm,
          ...(MACHINE_GENERATION[vmm] ? [MACHINE_GENERATION[vmm]] : []),
          shape.vcpus,
          shape.memoryMb,
          shape.diskSizeMb,
        ]),
      )
      .digest("hex")
      .slice(0, 16);
    return `${shape.template.slice(0, 40)}-${hash}`;
  }

  /**
   * The boot snapshot of `name`, built now if there is none; null when it
   * cannot be had (the caller boots cold, and a failed build is not retried
   * for a while).
   */
  async get(shape: Shape, name: string, source: BootSource): Promise<SnapshotMeta | null> {
    const failed = this.failedAt.get(name);
    if (failed !== undefined && Date.now() - failed < RETRY_AFTER_MS) return null;
    const existing = await this.store.get(name);
    if (existing) return existing;
    let pending = this.building.get(name);
    if (pending === undefined) {
      const started = performance.now();
      pending = this.builder
        .build(shape, name, source)
        .then((meta) => {
          this.log.info(
            { snapshot: name, ...shape, ms: Math.round(performance.now() - started) },
            "boot snapshot ready: creates of this shape restore it",
          );
          return meta;
        })
        .catch((err: unknown) => {
          this.failedAt.set(name, Date.now());
          this.log.warn(
            { snapshot: name, ...shape, err: messageOf(err) },
            "boot snapshot failed; creates of this shape boot cold for now",
          );
          return null;
        })
        .finally(() => this.building.delete(name));
      this.building.set(name, pending);
    }
    return pending;
  }

  /** A restore of `name` failed: creates of its shape boot for a while. */
  failed(name: string): void {
    this.failedAt.set(name, Date.now());
  }
}
