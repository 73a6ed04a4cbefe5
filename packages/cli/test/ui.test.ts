import { test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { stripVTControlCharacters } from "node:util";
import { Bar, withSpinner } from "../src/ui/progress.ts";
import { Phases } from "../src/ui/phases.ts";
import { table } from "../src/ui/table.ts";

/** A stream that says it is (or is not) a terminal, collecting what is written. */
function fakeStream(tty: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  const s = new PassThrough() as unknown as NodeJS.WriteStream & PassThrough;
  let out = "";
  s.on("data", (d: Buffer) => (out += d));
  Object.assign(s, { isTTY: tty, columns: 60, hasColors: () => false });
  return { stream: s, text: () => out };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test(
  "phases: a live line per phase on a terminal, stamped headers in a log",
  { timeout: 10_000 },
  async () => {
    const tty = fakeStream(true);
    const p = new Phases({ stream: tty.stream });
    p.step("kernel: downloading");
    p.detail("Get:1 http://deb.debian.org linux-image [67 MB]");
    await sleep(250);
    p.step("rootfs: debootstrap");
    p.finish();
    await sleep(10);
    assert.match(
      stripVTControlCharacters(tty.text()),
      /kernel: downloading 00:00 · 1 lines · Get:1/,
    );
    assert.match(stripVTControlCharacters(tty.text()), /✓ kernel: downloading \(0\.\d s\)\n/);
    assert.match(stripVTControlCharacters(tty.text()), /✓ rootfs: debootstrap \(0\.\d s\)\n$/);

    const log = fakeStream(false);
    const q = new Phases({ stream: log.stream, noise: (l) => l.startsWith("I: Retrieving") });
    q.step("rootfs: debootstrap");
    q.detail("I: Retrieving libc6");
    q.detail("W: something worth seeing");
    q.finish();
    await sleep(10);
    assert.equal(log.text(), "==> [00:00] rootfs: debootstrap\n    W: something worth seeing\n");
  },
);

test("bar: bytes, percentage and ETA when the total is known", { timeout: 10_000 }, async () => {
  const s = fakeStream(true);
  const bar = new Bar("up", 4 << 20, s.stream);
  bar.add(1 << 20);
  await sleep(120);
  bar.add(1 << 20);
  assert.match(bar.line(), /^up \[█{12}░{12}\] 50% 2\.0 MiB\/4\.0 MiB [\d.]+ \S+\/s ETA \d+:\d\d$/);
  bar.finish();
  assert.match(new Bar("down", undefined, s.stream).line(), /^down 0 B 0 B\/s 0:00$/);
});

test("spinner: off a terminal, what starts and how long it took", { timeout: 10_000 }, async () => {
  const s = fakeStream(false);
  assert.equal(await withSpinner("pausing x", async () => 7, s.stream), 7);
  await sleep(10);
  assert.match(s.text(), /^pausing x…\n✓ pausing x \(0\.\d s\)\n$/);
});

test("table: columns aligned under a header", () => {
  assert.equal(
    table(
      ["ID", "STATUS"],
      [
        ["abc", "running"],
        ["abcdef", "paused"],
      ],
    ),
    "ID      STATUS\nabc     running\nabcdef  paused\n",
  );
});
