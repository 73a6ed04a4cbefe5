/**
 * A pause folder is written back a second after its pause, unless a resume
 * from it begins first (PauseWriteBack).
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { PauseWriteBack } from "../src/sandbox/write-back.ts";

const root = await mkdtemp(join(tmpdir(), "wrenn-write-back-"));
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

/** A pause folder as a QEMU pause leaves it: memory, device state, disk, its metadata. */
async function pausedDir(name: string): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir);
  await writeFile(join(dir, "memfile"), Buffer.alloc(1 << 20, 7));
  await writeFile(join(dir, "state"), "device state");
  await writeFile(join(dir, "rootfs.qcow2"), Buffer.alloc(1 << 16, 1));
  await writeFile(join(dir, "rootfs.json"), "{}");
  return dir;
}

test("the pause folder is written back a second after the pause", async () => {
  const { log, steps, warnings } = stepLog();
  const dir = await pausedDir("later");
  new PauseWriteBack().schedule(dir, log);
  await sleep(500);
  assert.deepEqual(steps, [], "not during the pause's own second");
  await sleep(1000);
  assert.deepEqual(steps, ["write_back"]);
  assert.deepEqual(warnings, []);
});

test("a resume within the second cancels it; a folder gone by then is no error", async () => {
  const { log, steps, warnings } = stepLog();
  const writeBack = new PauseWriteBack(100);
  const resumed = await pausedDir("resumed");
  writeBack.schedule(resumed, log);
  assert.equal(
    writeBack.cancel(resumed),
    true,
    "a write-back still to come: pages may be unwritten",
  );
  assert.equal(writeBack.cancel(resumed), false, "nothing pending any more");
  const gone = await pausedDir("gone");
  writeBack.schedule(gone, log);
  await rm(gone, { recursive: true });
  await sleep(400);
  assert.deepEqual(steps, [], "no write-back of the resumed folder");
  assert.deepEqual(warnings, []);
  // A failed resume schedules it again.
  writeBack.schedule(resumed, log);
  await sleep(400);
  assert.deepEqual(steps, ["write_back"]);
  assert.equal(writeBack.cancel(resumed), false, "written back: nothing unwritten");
});

test("stop cancels the write-backs to come and waits for the one under way", async () => {
  const { log, steps, warnings } = stepLog();
  const writeBack = new PauseWriteBack(0);
  const pending = await pausedDir("stop-pending");
  const running = await pausedDir("stop-running");
  writeBack.schedule(running, log);
  await sleep(0); // a timer behind its own: the write-back has begun, not ended
  assert.deepEqual(steps, []);
  writeBack.schedule(pending, log);
  const stopped = writeBack.stop();
  assert.equal(writeBack.cancel(running), true, "under way: pages may be unwritten");
  await stopped;
  assert.deepEqual(steps, ["write_back"], "the one under way finished before stop answered");
  assert.equal(writeBack.cancel(running), false, "nothing under way any more");
  assert.equal(writeBack.cancel(pending), false, "the one to come was cancelled");
  await sleep(150);
  assert.deepEqual(steps, ["write_back"], "and never ran");
  assert.deepEqual(warnings, []);
});
