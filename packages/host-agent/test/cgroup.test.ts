/**
 * VM cgroups: the host's real driver (v1 here, hybrid hosts included) makes a
 * group with the limits, a process spawned into it runs there from its first
 * instruction, the group goes when the process has exited, and the start-up
 * sweep removes empty groups but never one with a process, nor one younger
 * than a minute (another agent may be filling it). The v2 driver is
 * checked at its boundary: the files it writes in a cgroup2-shaped tree.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { detectCgroups, moveInto, vmLimits } from "../src/cgroup/cgroup.ts";
import { CgroupV2 } from "../src/cgroup/v2.ts";
import { STALE_GROUP_MS } from "../src/cgroup/common.ts";
import { spawnInNetns } from "../src/vmm/process.ts";

const isRoot = process.getuid?.() === 0;
const real = isRoot ? await detectCgroups() : null;
const skip = !isRoot
  ? "needs root (cgroupfs)"
  : real === null
    ? "no cpu/memory/pids cgroup controllers on this host"
    : false;
if (skip) console.warn(`\n!!! SKIPPING real cgroup tests: ${skip}\n`);

describe("cgroups", { timeout: 30_000 }, () => {
  const roots: string[] = [];
  after(async () => {
    for (const r of roots) await rm(r, { recursive: true, force: true });
  });

  test("the limits of a VM: CPU by vCPUs, memory = guest + overhead, pids", () => {
    assert.deepEqual(vmLimits({ vcpus: 2, memoryMb: 512, overheadMb: 512 }), {
      cpuWeight: 200,
      memoryMaxBytes: 1024 * 1024 * 1024,
      pidsMax: 144,
    });
  });

  test("the host's driver: create, a process inside, remove, sweep", { skip }, async () => {
    const cg = real!;
    const name = `test-${process.pid}`;
    const procs = await cg.create(name, { cpuWeight: 200, memoryMaxBytes: 300 << 20, pidsMax: 64 });
    const dirs = cg.dirs(name);
    try {
      if (cg.version === "v1") {
        const [cpu, memory, pids] = dirs as [string, string, string];
        assert.equal((await readFile(join(cpu, "cpu.shares"), "utf8")).trim(), "2048");
        assert.equal(
          (await readFile(join(memory, "memory.limit_in_bytes"), "utf8")).trim(),
          String(300 << 20),
        );
        assert.equal((await readFile(join(pids, "pids.max"), "utf8")).trim(), "64");
      } else {
        const [dir] = dirs as [string];
        assert.equal((await readFile(join(dir, "memory.max"), "utf8")).trim(), String(300 << 20));
      }
      const log = join(tmpdir(), `wrenn-cg-${process.pid}.log`);
      const proc = await spawnInNetns({
        netns: "",
        argv: ["sleep", "30"],
        logPath: log,
      });
      await rm(log, { force: true });
      try {
        await moveInto(procs, proc.pid);
        const own = await readFile(`/proc/${proc.pid}/cgroup`, "utf8");
        assert.match(own, new RegExp(`/wrenn/${name}\\n`), own);
        // A group with a process survives the sweep, however old.
        await age(dirs);
        assert.ok(!(await cg.sweep()).includes(name));
        assert.ok(dirs.every((d) => existsSync(d)));
      } finally {
        process.kill(proc.pid, "SIGKILL");
        await proc.exited;
      }
      await cg.remove(name);
      assert.ok(
        dirs.every((d) => !existsSync(d)),
        "the group is gone",
      );
      // An empty group just made (another agent's, its VMM about to join) is not swept…
      await cg.create(name, { cpuWeight: 100, memoryMaxBytes: 1 << 30, pidsMax: 64 });
      assert.ok(!(await cg.sweep()).includes(name));
      assert.ok(dirs.every((d) => existsSync(d)));
      // …an old empty one (a crash left it) is.
      await age(dirs);
      assert.ok((await cg.sweep()).includes(name));
      assert.ok(
        dirs.every((d) => !existsSync(d)),
        "swept",
      );
    } finally {
      await cg.remove(name).catch(() => undefined);
    }
  });

  test("v2 at its boundary: controllers delegated, limits written", async () => {
    const root = await mkdtemp(join(tmpdir(), "wrenn-cg2-"));
    roots.push(root);
    await writeFile(join(root, "cgroup.controllers"), "cpuset cpu io memory pids\n");
    const detected = await detectCgroups(root);
    assert.equal(detected?.version, "v2");
    const cg = new CgroupV2(root);
    // cgroupfs makes a group's files on mkdir; a plain tree needs the parent there.
    await mkdir(join(root, "wrenn"));
    const procs = await cg.create("vm1", {
      cpuWeight: 100,
      memoryMaxBytes: 768 << 20,
      pidsMax: 136,
    });
    assert.deepEqual(procs, [join(root, "wrenn", "vm1", "cgroup.procs")]);
    const read = (p: string) => readFile(join(root, p), "utf8");
    assert.equal(await read("cgroup.subtree_control"), "+cpu +memory +pids");
    assert.equal(await read("wrenn/cgroup.subtree_control"), "+cpu +memory +pids");
    assert.equal(await read("wrenn/vm1/cpu.weight"), "100");
    assert.equal(await read("wrenn/vm1/memory.max"), String(768 << 20));
    assert.equal(await read("wrenn/vm1/pids.max"), "136");
    assert.throws(() => cg.dirs("../escape"), /not a cgroup name/);
  });
});

/** Makes groups look as old as a crashed agent's (cgroupfs keeps the times set on it). */
async function age(dirs: string[]): Promise<void> {
  const past = new Date(Date.now() - 2 * STALE_GROUP_MS);
  for (const d of dirs) await utimes(d, past, past);
}
