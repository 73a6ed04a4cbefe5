/**
 * The jailer's command line at its boundary (no jailer or KVM here): the
 * unprivileged ids, chroot, network namespace, cgroup version, parent and
 * limits, and Firecracker's own arguments after `--`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { jailRoot, jailerArgv } from "../src/vmm/firecracker/jailer.ts";

const spec = {
  jailerBinary: "/usr/bin/jailer",
  firecrackerBinary: "/usr/bin/firecracker",
  vmId: "sbx1",
  uid: 998,
  gid: 997,
  chrootBaseDir: "/srv/wrenn-jail",
  netns: "wrenn-7",
  cgroupVersion: 1 as const,
  parentCgroup: "wrenn",
  cpuWeight: 200,
  memoryMaxBytes: 768 * 1024 * 1024,
  pidsMax: 144,
};

test(
  "jailer argv: ids, chroot, netns, cgroup v1 limits, firecracker's args",
  { timeout: 5000 },
  () => {
    assert.deepEqual(jailerArgv(spec), [
      "/usr/bin/jailer",
      "--id",
      "sbx1",
      "--exec-file",
      "/usr/bin/firecracker",
      "--uid",
      "998",
      "--gid",
      "997",
      "--chroot-base-dir",
      "/srv/wrenn-jail",
      "--netns",
      "/var/run/netns/wrenn-7",
      "--new-pid-ns",
      "--cgroup-version",
      "1",
      "--parent-cgroup",
      "wrenn",
      "--cgroup",
      "cpu.shares=2048",
      "--cgroup",
      `memory.limit_in_bytes=${768 * 1024 * 1024}`,
      "--cgroup",
      "pids.max=144",
      "--",
      "--api-sock",
      "/run/firecracker.socket",
      "--id",
      "sbx1",
    ]);
    assert.equal(
      jailRoot(spec.chrootBaseDir, spec.firecrackerBinary, "sbx1"),
      "/srv/wrenn-jail/firecracker/sbx1/root",
    );
  },
);

test("jailer argv: cgroup v2 names its files", { timeout: 5000 }, () => {
  const argv = jailerArgv({ ...spec, cgroupVersion: 2 });
  const groups = argv.flatMap((a, i) => (argv[i - 1] === "--cgroup" ? [a] : []));
  assert.deepEqual(groups, ["cpu.weight=200", `memory.max=${768 * 1024 * 1024}`, "pids.max=144"]);
  assert.equal(argv[argv.indexOf("--cgroup-version") + 1], "2");
});
