import { mkdir, open, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { WrennError } from "@wrenn/shared/errors.ts";
import { ensureKernel, installCustomKernel } from "./kernel.ts";
import { IMAGE_BUILD_TOOLS, requireTools } from "./prerequisites.ts";
import type { Progress } from "./progress.ts";
import { assertTemplateName, buildRootfs, type RootfsInputs } from "./rootfs.ts";
import { findKernel, type KernelFiles, type TemplateMeta } from "./store.ts";

export interface BuildOptions {
  data: string;
  rootfs: RootfsInputs;
  /** The user's own kernel instead of Debian's cloud kernel. */
  kernel?: { path: string; initrd?: string };
  force?: boolean;
  progress: Progress;
}

export interface BuildResult {
  kernel: KernelFiles;
  template: TemplateMeta;
}

/** Checks, before anything starts, that the host can build images. */
export function checkImagePrerequisites(path = process.env.PATH): void {
  requireTools(IMAGE_BUILD_TOOLS, {
    path,
    needsRoot: true,
    hint: " (run 'wrenn setup' as root)",
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * One build at a time per data dir: two would debootstrap the same cache
 * directory. A lock left by a dead process is taken over.
 */
async function lock(data: string): Promise<() => Promise<void>> {
  const path = join(data, ".image-build.lock");
  for (;;) {
    try {
      const fh = await open(path, "wx");
      await fh.writeFile(String(process.pid));
      await fh.close();
      return () => rm(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const holder = Number((await readFile(path, "utf8").catch(() => "")).trim());
    if (!Number.isInteger(holder) || holder <= 0 || !pidAlive(holder)) {
      await rm(path, { force: true });
      continue;
    }
    throw new WrennError(
      "failed_precondition",
      `another image build (pid ${holder}) is running on ${data}; wait for it or remove ${path}`,
    );
  }
}

/** The kernel and the base template, each rebuilt only when its inputs changed. */
export async function buildImages(opts: BuildOptions): Promise<BuildResult> {
  checkImagePrerequisites();
  assertTemplateName(opts.rootfs.template);
  await mkdir(opts.data, { recursive: true });
  const unlock = await lock(opts.data);
  try {
    let kernel: KernelFiles;
    if (opts.kernel) {
      kernel = await installCustomKernel(
        opts.data,
        opts.kernel.path,
        opts.kernel.initrd,
        opts.progress,
      );
    } else if (process.env.WRENN_KERNEL) {
      // The user's kernel is used at run time; Debian's is not needed.
      kernel = await findKernel(opts.data);
      opts.progress.step(`kernel: WRENN_KERNEL=${kernel.vmlinuz}, nothing to build`);
    } else {
      kernel = await ensureKernel(opts.data, opts.progress, opts.force);
    }
    const template = await buildRootfs(opts.data, opts.rootfs, opts.progress, opts.force);
    return { kernel, template };
  } finally {
    await unlock();
  }
}
