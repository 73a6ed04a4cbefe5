// Which kernel `wrenn image build` takes on which distribution: real
// /etc/os-release files of Debian, Ubuntu and others, and apt's answers as a
// Debian or Ubuntu mirror gives them (only Debian's apt is reachable here;
// the real one is asked too). Then the initramfs for a kernel that builds
// virtio in and ships compressed modules, as Ubuntu's do.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { isWrennError } from "@wrenn/shared/errors.ts";
import { buildInitramfs, planModules, readModuleTree } from "../src/image/initramfs.ts";
import {
  type AptDepends,
  aptDepends,
  chooseKernelPackages,
  dependsOf,
  parseOsRelease,
  readOsRelease,
} from "../src/image/kernel-source.ts";
import { which } from "../src/image/prerequisites.ts";
import { isDynamicElf } from "../src/image/vmlinux.ts";

const fixtures = join(import.meta.dirname, "fixtures/os-release");
const os = async (name: string) => parseOsRelease(await readFile(join(fixtures, name), "utf8"));

/** `apt-cache depends` as a mirror with these packages answers it. */
function apt(packages: Record<string, string[]>): AptDepends & { asked: string[] } {
  const asked: string[] = [];
  const fn = (pkg: string): Promise<string | null> => {
    asked.push(pkg);
    const deps = packages[pkg];
    if (deps === undefined) return Promise.resolve(null);
    return Promise.resolve(`${pkg}\n${deps.map((d) => `  ${d}\n`).join("")}`);
  };
  return Object.assign(fn, { asked });
}

const DEBIAN = {
  "linux-image-cloud-amd64": ["Depends: linux-image-6.1.0-57-cloud-amd64"],
  "linux-image-6.1.0-57-cloud-amd64": [
    "Depends: kmod",
    "Depends: linux-base",
    " |Depends: initramfs-tools",
    "Depends: <linux-initramfs-tool>",
    "Recommends: firmware-linux-free",
  ],
};
const UBUNTU_NOBLE = {
  "linux-image-kvm": ["Depends: linux-image-6.8.0-1015-kvm"],
  "linux-image-6.8.0-1015-kvm": [
    "PreDepends: linux-base",
    "Depends: linux-modules-6.8.0-1015-kvm",
    " |Recommends: grub-pc",
  ],
  "linux-image-virtual": ["Depends: linux-image-6.8.0-51-generic"],
  "linux-image-6.8.0-51-generic": [
    "PreDepends: linux-base",
    "Depends: linux-modules-6.8.0-51-generic",
    "Recommends: linux-modules-extra-6.8.0-51-generic",
  ],
};

describe("kernel choice", { timeout: 30_000 }, () => {
  test("os-release: quoted values, ID_LIKE lists", async () => {
    assert.deepEqual(await os("linuxmint-21.3"), {
      id: "linuxmint",
      idLike: ["ubuntu", "debian"],
      prettyName: "Linux Mint 21.3",
    });
    assert.deepEqual(await os("debian-12"), {
      id: "debian",
      idLike: [],
      prettyName: "Debian GNU/Linux 12 (bookworm)",
    });
    const missing = await readOsRelease(join(fixtures, "no-such-file"));
    assert.equal(missing.id, "linux");
  });

  test("Debian: the cloud kernel, one package (modules inside)", async () => {
    const depends = apt(DEBIAN);
    const pkgs = await chooseKernelPackages(await os("debian-12"), depends, "");
    assert.deepEqual(pkgs, {
      image: "linux-image-6.1.0-57-cloud-amd64",
      modules: [],
      version: "6.1.0-57-cloud-amd64",
      why: "linux-image-cloud-amd64 on Debian GNU/Linux 12 (bookworm)",
    });
  });

  test("Ubuntu: the kvm flavour and its split modules package", async () => {
    for (const name of ["ubuntu-24.04", "linuxmint-21.3"]) {
      const depends = apt(UBUNTU_NOBLE);
      const pkgs = await chooseKernelPackages(await os(name), depends, "");
      assert.equal(pkgs.image, "linux-image-6.8.0-1015-kvm", name);
      assert.deepEqual(pkgs.modules, ["linux-modules-6.8.0-1015-kvm"]);
      assert.equal(pkgs.version, "6.8.0-1015-kvm");
      // Ubuntu's own candidates come first: no Debian package is asked for.
      assert.equal(depends.asked[0], "linux-image-kvm");
    }
  });

  test("Ubuntu without the kvm flavour: the virtual (generic) kernel, not -extra", async () => {
    const { "linux-image-kvm": _, ...noKvm } = UBUNTU_NOBLE;
    const pkgs = await chooseKernelPackages(await os("ubuntu-22.04"), apt(noKvm), "");
    assert.equal(pkgs.image, "linux-image-6.8.0-51-generic");
    assert.deepEqual(pkgs.modules, ["linux-modules-6.8.0-51-generic"]);
    assert.match(pkgs.why, /^linux-image-virtual on Ubuntu 22\.04/);
  });

  test("WRENN_KERNEL_PACKAGE wins, with its modules package", async () => {
    const pkgs = await chooseKernelPackages(
      await os("debian-12"),
      apt(UBUNTU_NOBLE),
      "linux-image-6.8.0-51-generic",
    );
    assert.equal(pkgs.image, "linux-image-6.8.0-51-generic");
    assert.deepEqual(pkgs.modules, ["linux-modules-6.8.0-51-generic"]);
    await assert.rejects(
      chooseKernelPackages(await os("debian-12"), apt(DEBIAN), "linux-image-9.9-nope"),
      (err) => isWrennError(err) && /apt knows no linux-image-9\.9-nope/.test(err.message),
    );
  });

  test("nothing fits: the error says exactly what to pass", async () => {
    await assert.rejects(chooseKernelPackages(await os("fedora-40"), apt({}), ""), (err) => {
      assert.ok(isWrennError(err));
      assert.equal(err.code, "failed_precondition");
      assert.match(err.message, /Fedora Linux 40/);
      assert.match(err.message, /linux-image-cloud-amd64, linux-image-kvm, linux-image-virtual/);
      assert.match(err.message, /wrenn image build --kernel \/path\/to\/bzImage/);
      assert.match(err.message, /WRENN_KERNEL_PACKAGE=linux-image-<version>/);
      return true;
    });
  });

  test("dependsOf skips virtual packages and reads alternatives", () => {
    assert.deepEqual(
      dependsOf(
        "x\n  Depends: a\n |Depends: b\n  Depends: <virt>\n    c\n  PreDepends: d\n  Recommends: e\n",
      ),
      ["a", "b", "d"],
    );
  });

  test("this host's real apt picks what its os-release says", async (t) => {
    if (which("apt-cache") === null) {
      console.warn("\n!!! SKIPPED: no apt-cache on this host\n");
      t.skip("no apt-cache");
      return;
    }
    const host = await readOsRelease();
    const pkgs = await chooseKernelPackages(host, aptDepends, "");
    if (host.id === "debian") {
      assert.match(pkgs.image, /^linux-image-[\d.]+-\d+-cloud-amd64$/);
      assert.deepEqual(pkgs.modules, []);
    } else {
      assert.match(pkgs.image, /^linux-image-/);
    }
    assert.equal(await aptDepends("linux-image-wrenn-does-not-exist"), null);
  });
});

describe("initramfs for a kernel that builds virtio in", { timeout: 60_000 }, () => {
  test("built-in modules are left out, compressed ones unpacked, absent PCI ones skipped", async (t) => {
    const busybox = which("busybox");
    const staticBusybox = busybox !== null && !(await isDynamicElf(busybox));
    if (!staticBusybox || which("cpio") === null || which("zstd") === null) {
      console.warn("\n!!! SKIPPED: needs busybox-static, cpio and zstd ('wrenn setup')\n");
      t.skip("busybox-static, cpio or zstd missing");
      return;
    }
    const dir = await mkdtemp(join(tmpdir(), "wrenn-initramfs-"));
    try {
      // Ubuntu kvm-like: virtio core, blk, net and mmio built in, rng a .ko.zst module.
      const mods = join(dir, "lib/modules/6.8.0-1015-kvm");
      await mkdir(join(mods, "kernel/drivers/char/hw_random"), { recursive: true });
      await writeFile(
        join(mods, "modules.builtin"),
        [
          "kernel/drivers/virtio/virtio.ko",
          "kernel/drivers/virtio/virtio_ring.ko",
          "kernel/drivers/virtio/virtio_mmio.ko",
          "kernel/drivers/virtio/virtio_pci.ko",
          "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
          "kernel/drivers/block/virtio_blk.ko",
          "kernel/net/core/failover.ko",
          "kernel/drivers/net/net_failover.ko",
          "kernel/drivers/net/virtio_net.ko",
          "",
        ].join("\n"),
      );
      const ko = Buffer.from("\x7fELF fake virtio_rng module");
      const zst = spawnSync("zstd", ["-c", "-q"], { input: ko });
      await writeFile(join(mods, "kernel/drivers/char/hw_random/virtio-rng.ko.zst"), zst.stdout);

      const plan = planModules(
        [
          { name: "virtio", line: "virtio", pciOnly: false },
          { name: "virtio_pci_legacy_dev", line: "virtio_pci_legacy_dev ?pci", pciOnly: true },
          { name: "virtio_rng", line: "virtio_rng", pciOnly: false },
        ],
        await readModuleTree(mods),
      );
      assert.deepEqual(plan.builtin, ["virtio"]);
      assert.deepEqual(
        plan.load.map((l) => l.name),
        ["virtio_rng"],
      );

      const out = join(dir, "initrd.img");
      await mkdir(join(dir, "work"));
      await buildInitramfs(mods, out, join(dir, "work"));
      const cpio = await readFile(out);
      const listing = spawnSync("cpio", ["-it", "--quiet"], { input: cpio })
        .stdout.toString()
        .split("\n");
      assert.deepEqual(
        listing.filter((f) => f.startsWith("lib/modules/")),
        ["lib/modules/virtio_rng.ko"],
      );
      const extract = join(dir, "x");
      await mkdir(extract);
      spawnSync("cpio", ["-id", "--quiet"], { input: cpio, cwd: extract });
      assert.deepEqual(await readFile(join(extract, "lib/modules/virtio_rng.ko")), ko);
      const modulesTxt = await readFile(join(extract, "modules.txt"), "utf8");
      assert.deepEqual(
        modulesTxt.split("\n").filter((l) => l !== "" && !l.startsWith("#")),
        ["virtio_rng"],
      );
      assert.match(modulesTxt, /^# built into this kernel: virtio_ring virtio virtio_mmio /);

      // A kernel without virtio_blk at all cannot boot a guest: said before any VM tries.
      await rm(join(mods, "modules.builtin"));
      await assert.rejects(
        mkdir(join(dir, "work2")).then(() => buildInitramfs(mods, out, join(dir, "work2"))),
        (err) =>
          isWrennError(err) && /no virtio_ring, neither as a module nor built in/.test(err.message),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
