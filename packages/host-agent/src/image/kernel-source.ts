import { readFile } from "node:fs/promises";
import { CommandError, runCommand } from "@wrenn/shared/command.ts";
import { WrennError } from "@wrenn/shared/errors.ts";

/** The fields of /etc/os-release that pick a kernel. */
export interface OsRelease {
  id: string;
  idLike: string[];
  prettyName: string;
}

/** `apt-cache depends PKG`'s output, or null when apt knows no such package. */
export type AptDepends = (pkg: string) => Promise<string | null>;

/** The .debs that make a guest kernel: the image, and the modules Ubuntu ships apart. */
export interface KernelPackages {
  image: string;
  modules: string[];
  /** The kernel's name in `kernels/` (the image package without `linux-image-`). */
  version: string;
  /** Where the choice came from, for the progress line. */
  why: string;
}

/**
 * The guest needs virtio (mmio or pci), virtio-blk, virtio-net, virtio-rng
 * and ext4, built in or as modules: Debian's cloud flavour has them as
 * modules and little else. Ubuntu has no cloud flavour; its `kvm` flavour is
 * the same idea (virtio built in, small), and `virtual` (the generic kernel
 * with the modules a VM needs) is there on every release.
 */
const DEBIAN_KERNELS = ["linux-image-cloud-amd64"];
const UBUNTU_KERNELS = ["linux-image-kvm", "linux-image-virtual"];

export function parseOsRelease(text: string): OsRelease {
  const fields = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (!m?.[1] || m[2] === undefined) continue;
    fields.set(m[1], m[2].replace(/^(["'])(.*)\1$/, "$2"));
  }
  const id = (fields.get("ID") ?? "linux").toLowerCase();
  return {
    id,
    idLike: (fields.get("ID_LIKE") ?? "").toLowerCase().split(/\s+/).filter(Boolean),
    prettyName: fields.get("PRETTY_NAME") ?? fields.get("NAME") ?? id,
  };
}

export async function readOsRelease(path = "/etc/os-release"): Promise<OsRelease> {
  try {
    return parseOsRelease(await readFile(path, "utf8"));
  } catch {
    return { id: "linux", idLike: [], prettyName: "an unknown distribution" };
  }
}

/** Meta packages to try, best first: the host's own family, then the other one. */
export function kernelMetaPackages(os: OsRelease): string[] {
  const ubuntu = os.id === "ubuntu" || os.idLike.includes("ubuntu");
  return ubuntu ? [...UBUNTU_KERNELS, ...DEBIAN_KERNELS] : [...DEBIAN_KERNELS, ...UBUNTU_KERNELS];
}

/** Direct (and first-alternative) dependencies named in `apt-cache depends` output. */
export function dependsOf(output: string): string[] {
  const names: string[] = [];
  for (const line of output.split("\n")) {
    const m = /^\s*\|?(?:Pre)?Depends:\s*(\S+)/.exec(line);
    if (m?.[1] && !m[1].startsWith("<")) names.push(m[1]);
  }
  return names;
}

const VERSIONED_IMAGE = /^linux-image-(?:unsigned-)?\d[\w.+~-]*$/;

function versionOf(image: string): string {
  return image.replace(/^linux-image-(?:unsigned-)?/, "");
}

/** The modules package an image depends on (Ubuntu's split), none for Debian's. */
async function modulesOf(image: string, depends: AptDepends): Promise<string[]> {
  const out = await depends(image);
  if (out === null) {
    throw new WrennError(
      "failed_precondition",
      `apt knows no ${image}: run 'apt-get update', or check WRENN_KERNEL_PACKAGE`,
    );
  }
  const wanted = `linux-modules-${versionOf(image)}`;
  return dependsOf(out).filter((d) => d === wanted);
}

function noKernelError(os: OsRelease, tried: string[]): WrennError {
  return new WrennError(
    "failed_precondition",
    `apt on ${os.prettyName} offers none of ${tried.join(", ")} (after 'apt-get update'?). ` +
      "Point Wrenn at a kernel yourself: 'wrenn image build --kernel /path/to/bzImage " +
      "[--initrd /path/to/initrd.img]' (the kernel needs virtio-mmio or virtio-pci, " +
      "virtio-blk, virtio-net and ext4 built in, or their modules in that initrd; " +
      "WRENN_KERNEL=... does the same at run time), or name an apt package: " +
      "WRENN_KERNEL_PACKAGE=linux-image-<version>",
  );
}

/**
 * The kernel packages `wrenn image build` downloads on this host:
 * WRENN_KERNEL_PACKAGE when set, else the first meta package apt knows
 * among the host family's candidates, resolved to its versioned image.
 */
export async function chooseKernelPackages(
  os: OsRelease,
  depends: AptDepends,
  override = process.env.WRENN_KERNEL_PACKAGE,
): Promise<KernelPackages> {
  if (override) {
    return {
      image: override,
      modules: await modulesOf(override, depends),
      version: versionOf(override),
      why: "WRENN_KERNEL_PACKAGE",
    };
  }
  const tried = kernelMetaPackages(os);
  for (const meta of tried) {
    const out = await depends(meta);
    if (out === null) continue;
    const image = dependsOf(out).find((d) => VERSIONED_IMAGE.test(d));
    if (image === undefined) continue;
    return {
      image,
      modules: await modulesOf(image, depends),
      version: versionOf(image),
      why: `${meta} on ${os.prettyName}`,
    };
  }
  throw noKernelError(os, tried);
}

/** `apt-cache depends`, with apt's "no packages found" (exit 100) as null. */
export const aptDepends: AptDepends = async (pkg) => {
  try {
    const { stdout } = await runCommand("apt-cache", ["depends", pkg]);
    return stdout;
  } catch (err) {
    if (err instanceof CommandError && /No packages found|Unable to locate/i.test(err.stderr)) {
      return null;
    }
    throw err;
  }
};
