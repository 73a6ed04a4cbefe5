/**
 * A paused sandbox's memory file is written back a second after the pause
 * (QemuDriver.afterPause), unless a resume from it begins first: no QEMU
 * runs here, the restore fails at its missing state file after it cancelled
 * the write-back.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { QemuDriver } from "../src/vmm/qemu/driver.ts";

const root = await mkdtemp(join(tmpdir(), "wrenn-qemu-flush-"));
after(() => rm(root, { recursive: true, force: true }));

/** The `step` of every timed log line written to it, and the messages of warnings. */
function stepLog(): { log: pino.Logger; steps: string[]; warnings: string[] } {
  const steps: string[] = [];
  const warnings: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) {
        const rec = JSON.parse(line) as { step?: string; level: number; msg: string };
        if (rec.step) steps.push(rec.step);
        if (rec.level >= 40) warnings.push(rec.msg);
      }
      done();
    },
  });
  return { log: pino({ level: "info" }, sink), steps, warnings };
}

async function pausedDir(name: string): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir);
  await writeFile(join(dir, "memfile"), Buffer.alloc(1 << 20, 7));
  return dir;
}

const driver = () => new QemuDriver({ accel: "tcg", confine: false, cgroups: null });

test("the paused memory is written back a second after the pause", async () => {
  const { log, steps } = stepLog();
  const dir = await pausedDir("later");
  driver().afterPause(dir, log);
  await sleep(500);
  assert.deepEqual(steps, [], "not during the pause's own second");
  await sleep(1000);
  assert.deepEqual(steps, ["flush"]);
});

test("a resume within the second cancels the write-back; a file gone by then is no error", async () => {
  const { log, steps, warnings } = stepLog();
  const vmm = driver();
  const resumed = await pausedDir("resumed");
  vmm.afterPause(resumed, log);
  await assert.rejects(
    vmm.restore({
      vmId: "vm",
      runDir: join(root, "run"),
      snapshotDir: resumed,
      clone: false,
      kernel: { kernelPath: "/nonexistent" },
      vcpus: 1,
      memoryMb: 1,
      rootfs: { path: join(root, "disk"), format: "raw" },
      netns: "",
      tapName: "tap0",
      guestMac: "02:fc:00:00:00:05",
    }),
  );
  const gone = await pausedDir("gone");
  vmm.afterPause(gone, log);
  await rm(gone, { recursive: true });
  await sleep(1500);
  assert.ok(!steps.includes("flush"), `no write-back: ${steps.join(", ")}`);
  assert.deepEqual(warnings, []);
});
