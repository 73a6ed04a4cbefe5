/**
 * The seam between the sandbox manager and rootfs storage. Drivers:
 * dm-snapshot.ts (production), qcow2.ts (QEMU overlays), reflink.ts
 * (reflink or sparse copy fallback); select.ts picks one for the host.
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
  /** Path the VMM opens (device, overlay or image); for a detached disk, its kept file. */
  path: string;
  format: "raw" | "qcow2";
  /** Driver-private files/devices to release; persisted for re-adoption. */
  state: Record<string, string>;
}

/**
 * `signal` cancels waits and retries of the step it is given to; the cleanup
 * a failed or cancelled step runs never honours it, so nothing is leaked.
 */
export interface StorageOptions {
  signal?: AbortSignal;
}

export interface FlattenOptions extends StorageOptions {
  /**
   * fsck and shrink the image (default true). False for memory snapshot
   * templates: their guest kernel has the filesystem mounted in the saved
   * memory, so the image must stay byte for byte what that kernel wrote.
   */
  shrink?: boolean;
}

export interface StorageDriver {
  readonly name: StorageName;
  /**
   * Makes the base image at least `sizeMb` (sparse grow + resize2fs) once, at
   * agent start — and after `flatten`, before the new template's first use.
   * Refuses while a disk of this driver uses the image.
   */
  growBase(base: BaseImage, sizeMb: number): Promise<void>;
  /** A writable copy-on-write disk of `sizeMb` over `base`, its files in `dir`. */
  create(
    sandboxId: string,
    base: BaseImage,
    sizeMb: number,
    dir: string,
    options?: StorageOptions,
  ): Promise<SandboxDisk>;
  /** Releases every host resource of the disk and deletes its files (kept ones too); idempotent. */
  destroy(disk: SandboxDisk, options?: StorageOptions): Promise<void>;
  /**
   * Detaches the disk for a pause (the VMM must have exited), keeping its data
   * in `keepDir` with metadata naming the base; returns what `attach` needs.
   * Idempotent on an already detached disk.
   */
  detach(disk: SandboxDisk, keepDir: string, options?: StorageOptions): Promise<SandboxDisk>;
  /**
   * Attaches a working copy of a detached disk (resume) in its sandbox dir: a
   * reflink where the filesystem can, else a sparse copy. The kept data stays
   * as it was until `dropKept`, so a resume that fails after its guest wrote
   * leaves the pause whole; undo it with `destroy` of the returned disk.
   */
  attach(disk: SandboxDisk, base: BaseImage, options?: StorageOptions): Promise<SandboxDisk>;
  /** Deletes a detached disk's kept data once a resume from it has committed; idempotent. */
  dropKept(disk: SandboxDisk): Promise<void>;
  /**
   * Writes a standalone, sparse, shrunk (`resize2fs -M`), fsck-clean raw image
   * of the disk (templates). Attached or detached; the VM must not be running.
   */
  flatten(disk: SandboxDisk, outPath: string, options?: FlattenOptions): Promise<void>;
  /** Bytes allocated on the host for this disk (st_blocks * 512). */
  usage(disk: SandboxDisk): Promise<number>;
  /**
   * Takes a disk created by an earlier agent process back under management
   * (agent restart); false when its device or files are gone.
   */
  adopt(disk: SandboxDisk): Promise<boolean>;
}
