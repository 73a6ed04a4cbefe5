/**
 * The jailer's command line as the driver builds it: the unprivileged ids,
 * chroot base, netns, cgroup version, parent and limits, and Firecracker's
 * own arguments after `--` (the jailer adds `--id` itself). The driver
 * starting VMs through it, against a jailer double doing what the jailer
 * does, is in vmm-firecracker.test.ts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { jailDir, jailId } from "../src/vmm/firecracker/jail.ts";
import { jailerArgv } from "../src/vmm/firecracker/jailer.ts";

const spec = {
  jailerBinary: "/usr/bin/jailer",
  firecrackerBinary: "/usr/bin/firecracker",
  vmId: "sbx1",
  uid: 998,
  gid: 997,
  chrootBaseDir: "/var/lib/wrenn/run/jail",
  netns: "wrenn-7",
  cgroup: {
    version: 1 as const,
    parent: "wrenn",
    limits: { cpuWeight: 200, memoryMaxBytes: 768 * 1024 * 1024, pidsMax: 144 },
  },
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
      "/var/lib/wrenn/run/jail",
      "--netns",
      "/var/run/netns/wrenn-7",
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
    ]);
    assert.equal(
      jailDir(spec.chrootBaseDir, spec.firecrackerBinary, "sbx1"),
      "/var/lib/wrenn/run/jail/firecracker/sbx1",
    );
  },
);

test("jailer argv: cgroup v2 names its files", { timeout: 5000 }, () => {
  const argv = jailerArgv({ ...spec, cgroup: { ...spec.cgroup, version: 2 } });
  const groups = argv.flatMap((a, i) => (argv[i - 1] === "--cgroup" ? [a] : []));
  assert.deepEqual(groups, ["cpu.weight=200", `memory.max=${768 * 1024 * 1024}`, "pids.max=144"]);
  assert.equal(argv[argv.indexOf("--cgroup-version") + 1], "2");
});

test("jailer argv: no cgroup flags on a host without cgroups", { timeout: 5000 }, () => {
  const argv = jailerArgv({ ...spec, cgroup: null });
  for (const flag of ["--cgroup", "--cgroup-version", "--parent-cgroup"]) {
    assert.ok(!argv.includes(flag), `${flag} passed without cgroups`);
  }
});

test("jail ids: what the jailer accepts, else a stable digest", { timeout: 5000 }, () => {
  assert.equal(jailId("sbx-1"), "sbx-1");
  const odd = jailId("team_1.sbx");
  assert.match(odd, /^[A-Za-z0-9-]{1,64}$/);
  assert.equal(jailId("team_1.sbx"), odd);
  assert.notEqual(jailId("team_1.sby"), odd);
  assert.match(jailId("x".repeat(65)), /^v-[0-9a-f]{40}$/);
});
