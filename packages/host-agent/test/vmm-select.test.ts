import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { access, chmod, constants, mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { release, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { isWrennError } from "@wrenn/shared/errors.ts";
import { dataDir, findKernel } from "../src/image/store.ts";
import { bootProbe } from "../src/vmm/kvm-probe.ts";
import { QemuDriver } from "../src/vmm/qemu/driver.ts";
import { chooseVmm, selectVmm } from "../src/vmm/select.ts";

let work = "";
let data = "";
let kernel = "";
const saved = {
  PATH: process.env.PATH,
  KERNEL: process.env.WRENN_KERNEL,
  INITRD: process.env.WRENN_INITRD,
};
const kvmDevice = await access("/dev/kvm", constants.R_OK | constants.W_OK).then(
  () => true,
  () => false,
);
const hasQemu = spawnSync("sh", ["-c", "command -v qemu-system-x86_64"]).status === 0;

before(async () => {
  work = await mkdtemp(join(tmpdir(), "wrenn-select-"));
  data = join(work, "data");
  await mkdir(join(work, "bin"), { recursive: true });
  kernel = join(work, "vmlinuz");
  await writeFile(kernel, "not really a kernel");
  process.env.WRENN_KERNEL = kernel;
  delete process.env.WRENN_INITRD;
});

after(async () => {
  process.env.PATH = saved.PATH;
  for (const [k, v] of [
    ["WRENN_KERNEL", saved.KERNEL],
    ["WRENN_INITRD", saved.INITRD],
  ] as const) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  await rm(work, { recursive: true, force: true });
});

/** Plants a cached probe result, as an earlier agent start would have left it. */
async function cacheProbe(usable: boolean): Promise<void> {
  const s = await stat(kernel);
  await mkdir(data, { recursive: true });
  await writeFile(
    join(data, "kvm-probe.json"),
    JSON.stringify({
      usable,
      reason: usable ? "planted: usable" : "planted: unusable",
      key: `${release()}|${kernel}|${s.size}|${s.mtimeMs}`,
    }),
  );
}

async function fakeFirecracker(present: boolean): Promise<void> {
  const bin = join(work, "bin", "firecracker");
  if (present) {
    await writeFile(bin, "#!/bin/sh\nexit 0\n");
    await chmod(bin, 0o755);
    process.env.PATH = `${join(work, "bin")}:${saved.PATH}`;
  } else {
    await rm(bin, { force: true });
    process.env.PATH = saved.PATH;
  }
}

test("select: firecracker only with its binary and a usable KVM, else QEMU TCG", async (t) => {
  if (!hasQemu) {
    console.warn("\n!!! SKIPPING VMM SELECT TEST: qemu-system-x86_64 not installed\n");
    t.skip("qemu-system-x86_64 not installed");
    return;
  }
  await fakeFirecracker(true);
  await cacheProbe(true);
  const withKvm = await chooseVmm({ dataDir: data });
  if (kvmDevice) {
    assert.equal(withKvm.name, "firecracker");
    assert.match(withKvm.why, /cached/);
    // Forcing QEMU keeps the probe's verdict for its accelerator.
    const forced = await chooseVmm({ dataDir: data, override: "qemu" });
    assert.deepEqual([forced.name, forced.accel], ["qemu", "kvm"]);
  } else {
    assert.deepEqual([withKvm.name, withKvm.accel], ["qemu", "tcg"]);
  }

  await cacheProbe(false);
  const noKvm = await chooseVmm({ dataDir: data });
  assert.deepEqual([noKvm.name, noKvm.accel], ["qemu", "tcg"]);
  assert.match(noKvm.why, /firecracker needs KVM/);

  await fakeFirecracker(false);
  await assert.rejects(
    chooseVmm({ dataDir: data, override: "firecracker" }),
    (err: unknown) =>
      isWrennError(err, "failed_precondition") && /no 'firecracker'/.test(err.message),
  );
  const driver = await selectVmm({ dataDir: data });
  assert.ok(driver instanceof QemuDriver);
  assert.equal(driver.accel, "tcg");
});

test("select: the KVM boot probe answers within its limit", async (t) => {
  // This file points WRENN_KERNEL at a fake kernel; the probe needs the real one.
  const fake = process.env.WRENN_KERNEL;
  delete process.env.WRENN_KERNEL;
  const real = await findKernel(dataDir()).then(
    (k) => k.vmlinuz,
    () => "",
  );
  process.env.WRENN_KERNEL = fake;
  if (!hasQemu || !kvmDevice || !real) {
    const why = !hasQemu
      ? "no QEMU"
      : !kvmDevice
        ? "no /dev/kvm"
        : "no guest kernel (wrenn image build)";
    console.warn(`\n!!! SKIPPING KVM PROBE TEST: ${why}\n`);
    t.skip(why);
    return;
  }
  const start = performance.now();
  const probe = await bootProbe(real);
  const ms = performance.now() - start;
  console.log(`KVM boot probe: usable=${probe.usable} (${probe.reason}) in ${Math.round(ms)} ms`);
  assert.ok(ms < 15_000, "the probe overran its limit");
  assert.equal(typeof probe.reason, "string");
});
