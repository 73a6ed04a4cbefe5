/**
 * The seam between the sandbox manager and rootfs storage. Drivers:
 * dm-snapshot.ts (production), qcow2.ts (QEMU overlays), reflink.ts
 * (reflink or sparse copy fallback).
 */

export type StorageName = "dm-snapshot" | "qcow2" | "reflink";

/** A base template's read-only root filesystem image (raw ext4). */
export interface BaseImage {
  name: string;
  path: string;
}

/** A sandbox's writable root disk as the VMM should open it. */
export interface SandboxDisk {
  sandboxId: string;
  /** Path the VMM opens (device, overlay or image). */
  path: string;
  format: "raw" | "qcow2";
  /** Driver-private files/devices to release; persisted for re-adoption. */
  state: Record<string, string>;
}

export interface StorageDriver {
  readonly name: StorageName;
  /** Makes the base image at least `sizeMb` (sparse grow + resize2fs) once, at agent start. */
  growBase(base: BaseImage, sizeMb: number): Promise<void>;
  /** A writable copy-on-write disk of `sizeMb` over `base`. */
  create(sandboxId: string, base: BaseImage, sizeMb: number, dir: string): Promise<SandboxDisk>;
  /** Releases every host resource of the disk and deletes its files; idempotent. */
  destroy(disk: SandboxDisk): Promise<void>;
  /** Detaches the disk for a pause, keeping its data in `keepDir`; returns what `attach` needs. */
  detach(disk: SandboxDisk, keepDir: string): Promise<SandboxDisk>;
  /** Re-attaches a detached disk (resume). */
  attach(disk: SandboxDisk, base: BaseImage): Promise<SandboxDisk>;
  /** Writes a standalone, sparse, shrunk raw image of the disk (templates). */
  flatten(disk: SandboxDisk, outPath: string): Promise<void>;
  /** Bytes allocated on the host for this disk (st_blocks * 512). */
  usage(disk: SandboxDisk): Promise<number>;
}
