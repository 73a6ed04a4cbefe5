/**
 * A real VM under the hardened agent (issue 12): QEMU runs as a uid of its
 * own under seccomp, in its own cgroup with the VM's limits, and pause, resume
 * and snapshot still work so; a buffered exec of 100 MiB keeps 16 MiB and
 * says truncated while the agent's memory stays bounded; the cgroup is
 * gone after destroy. (The console cap: console-cap.test.ts.)
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { detectCgroups } from "../src/cgroup/cgroup.ts";
import { AgentHarness, vmSkipReason } from "./agent-harness.ts";

const skip = vmSkipReason("hardening (real VMs)");
const MiB = 1024 * 1024;

async function status(pid: number): Promise<Record<string, string>> {
  const text = await readFile(`/proc/${pid}/status`, "utf8");
  return Object.fromEntries(text.split("\n").map((l) => l.split(/:\s*/, 2) as [string, string]));
}

describe("hardened VMs", { skip, timeout: 900_000 }, () => {
  const h = new AgentHarness("wh");
  before(async () => {
    await h.setUp();
    await h.start();
  });
  after(async () => {
    await h.tearDown();
  });

  /** QEMU of `id`: confined, in its cgroup with its limits; returns its pid. */
  async function assertConfined(id: string, memoryMb: number): Promise<number> {
    const pid = await h.vmmPid(id);
    const st = await status(pid);
    // A uid of its own (2^30 + its network namespace's inode), the same in every slot.
    const uid = Number(st.Uid?.split("\t")[0]);
    assert.ok(uid >= 2 ** 30, `QEMU runs as a VMM uid of its own, not ${uid}`);
    assert.equal(st.Uid, `${uid}\t${uid}\t${uid}\t${uid}`, "real, effective, saved, fs uid");
    assert.equal(st.Gid, `${uid}\t${uid}\t${uid}\t${uid}`, "its gid is its uid");
    assert.equal(st.Seccomp, "2", "QEMU runs under its seccomp filter");
    const vmm = h.agent.manager.vmm;
    if (vmm.name === "qemu" && vmm.accel === "tcg") {
      // Started through wrenn-nothp: no 2 MiB pages for its code buffer's tail and small RAM blocks.
      assert.equal(st.THP_enabled, "0", "QEMU under TCG runs with transparent huge pages off");
    }
    const cg = await detectCgroups();
    assert.ok(cg, "this host has cgroups");
    const own = await readFile(`/proc/${pid}/cgroup`, "utf8");
    assert.match(own, new RegExp(`/wrenn/${id}$`, "m"), own);
    // Every thread, in each of the group's hierarchies: QEMU is moved in whole after it started.
    const v2 = cg.version === "v2";
    for (const tid of await readdir(`/proc/${pid}/task`)) {
      const lines = (await readFile(`/proc/${pid}/task/${tid}/cgroup`, "utf8")).trim().split("\n");
      const ours = lines.filter((l) => v2 || /:(cpu|memory|pids)[,:]/.test(l));
      assert.equal(ours.length, v2 ? 1 : 3, lines.join("; "));
      for (const line of ours) assert.match(line, new RegExp(`/wrenn/${id}$`), `thread ${tid}`);
    }
    const dirs = cg.dirs(id);
    const limit = Number(
      await readFile(
        cg.version === "v1"
          ? join(dirs[1]!, "memory.limit_in_bytes")
          : join(dirs[0]!, "memory.max"),
        "utf8",
      ),
    );
    assert.ok(limit > memoryMb * MiB && limit <= (memoryMb + 1024) * MiB, `memory limit ${limit}`);
    console.log(
      `QEMU ${pid}: uid ${uid}, seccomp 2, cgroup ${cg.version} memory max ${limit / MiB} MiB`,
    );
    return pid;
  }

  test("confined QEMU; pause, resume, snapshot work; cgroup gone after destroy", async () => {
    const id = h.newId();
    await h.create(id);
    await assertConfined(id, 256);
    await h.client.pauseSandbox({ sandboxId: id });
    const cg = (await detectCgroups())!;
    assert.ok(
      cg.dirs(id).every((d) => !existsSync(d)),
      "a paused sandbox holds no cgroup",
    );
    await h.client.resumeSandbox({ sandboxId: id });
    await assertConfined(id, 256);
    assert.equal((await h.sh(id, "echo back")).stdout, "back\n");
    const name = `hard-${process.pid}`;
    await h.client.createSnapshot({ sandboxId: id, name });
    const clone = h.newId();
    await h.create(clone, { template: name });
    await assertConfined(clone, 256);
    assert.equal((await h.sh(clone, "echo clone")).stdout, "clone\n");
    for (const s of [id, clone]) await h.client.destroySandbox({ sandboxId: s });
    await h.client.deleteSnapshot({ name });
    assert.ok(
      [...cg.dirs(id), ...cg.dirs(clone)].every((d) => !existsSync(d)),
      "no cgroup after destroy",
    );
    await h.noLeaks();
  });

  test("a buffered exec of 100 MiB keeps 16 MiB, says truncated, the agent stays bounded", async () => {
    const id = h.newId();
    await h.create(id);
    try {
      global.gc?.();
      const rss0 = process.memoryUsage().rss;
      let peak = rss0;
      const timer = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage().rss);
      }, 50);
      const t0 = Date.now();
      let res;
      try {
        res = await h.client.exec({
          sandboxId: id,
          cmd: "/bin/sh",
          args: ["-c", "yes | head -c 100M; echo done >&2"],
          timeoutSec: 600,
        });
      } finally {
        clearInterval(timer);
      }
      const growth = (peak - rss0) / MiB;
      console.log(
        `exec of 100 MiB: ${Date.now() - t0} ms; stdout ${res.stdout.length / MiB} MiB; ` +
          `RSS ${Math.round(rss0 / MiB)} → peak ${Math.round(peak / MiB)} MiB (+${growth.toFixed(0)} MiB)`,
      );
      assert.equal(res.exitCode, 0);
      assert.equal(res.stdout.length, 16 * MiB);
      assert.equal(res.stdoutTruncated, true);
      assert.equal(Buffer.from(res.stdout.subarray(0, 4)).toString(), "y\ny\n");
      assert.equal(Buffer.from(res.stderr).toString(), "done\n");
      assert.equal(res.stderrTruncated, false);
      // The agent and this test's client share the process: the 16 MiB kept,
      // its copy in the reply and the client's copy; 100 MiB held would be far more.
      assert.ok(growth < 160, `RSS grew ${growth.toFixed(0)} MiB`);
    } finally {
      await h.client.destroySandbox({ sandboxId: id });
    }
  });
});
