import { test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { stripVTControlCharacters } from "node:util";
import { Bar, withSpinner } from "../src/ui/progress.ts";
import { Phases, meterLine } from "../src/ui/phases.ts";
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

test(
  "meter line: bar, amounts, rate and ETA; amounts alone without a total",
  { timeout: 10_000 },
  () => {
    const MiB = 1 << 20;
    const base = { since: 0, startDone: 0, loggedAt: 0, loggedDone: 0 };
    assert.equal(
      meterLine(
        { ...base, label: "downloading", unit: "bytes", done: 10 * MiB, total: 40 * MiB },
        5000,
      ),
      "downloading [█████░░░░░░░░░░░░░░░] 25% 10 MiB/40 MiB 2.0 MiB/s ETA 0:15",
    );
    assert.equal(
      meterLine({ ...base, label: "Unpacking", unit: "items", done: 30, total: 60 }, 60_000),
      "Unpacking [██████████░░░░░░░░░░] 50% 30/60 ETA 1:00",
    );
    assert.equal(
      meterLine({ ...base, label: "filling", unit: "bytes", done: 3 * MiB, total: 3 * MiB }, 1000),
      "filling [████████████████████] 100% 3.0 MiB/3.0 MiB 3.0 MiB/s",
    );
    assert.equal(
      meterLine({ ...base, label: "downloading", unit: "bytes", done: MiB }, 2000),
      "downloading 1.0 MiB 512 KiB/s",
    );
    assert.match(
      meterLine({ ...base, since: 10, label: "x", unit: "items", done: 0, total: 5 }, 10),
      /ETA \?$/,
    );
  },
);

test(
  "phases with measures: a live bar on a terminal and bytes on the ✓ line",
  { timeout: 10_000 },
  async () => {
    const MiB = 1 << 20;
    const tty = fakeStream(true);
    Object.assign(tty.stream, { columns: 120 });
    const p = new Phases({ stream: tty.stream });
    p.step("kernel: downloading");
    p.measure({ label: "downloading", done: 0, total: 8 * MiB, unit: "bytes" });
    await sleep(150);
    p.measure({ label: "downloading", done: 4 * MiB, total: 8 * MiB, unit: "bytes" });
    await sleep(150);
    p.measure({ label: "downloading", done: 8 * MiB, total: 8 * MiB, unit: "bytes" });
    p.finish();
    const text = stripVTControlCharacters(tty.text());
    assert.match(text, /⠋|⠙|⠹|⠸/, "the line has a spinner");
    assert.match(
      text,
      /kernel: downloading 00:00 · downloading \[█{10}░{10}\] 50% 4\.0 MiB\/8\.0 MiB [\d.]+ MiB\/s ETA 0:0\d/,
    );
    assert.match(text, /✓ kernel: downloading \(0\.\d s, 8\.0 MiB at [\d.]+ MiB\/s\)\n$/);

    // A title too long for the terminal gives way to the bar.
    const narrow = fakeStream(true);
    Object.assign(narrow.stream, { columns: 80 });
    const q = new Phases({ stream: narrow.stream });
    q.step("rootfs base: debootstrap bookworm from http://deb.debian.org/debian");
    q.measure({ label: "Unpacking", done: 1, total: 4, unit: "items" });
    await sleep(150);
    q.finish();
    const live = stripVTControlCharacters(narrow.text())
      .split("\r")
      .filter((l) => l.includes("["));
    assert.ok(live.length > 0);
    for (const l of live) {
      assert.match(l, /^\S rootfs base: deboots.*… 00:00 · Unpacking \[█{5}░{15}\] 25% 1\/4 ETA/);
      assert.ok(l.length <= 79, `${l.length} columns: ${l}`);
    }
  },
);

test(
  "phases with measures off a terminal: plain lines at start, every interval and end",
  { timeout: 10_000 },
  () => {
    let now = 0;
    const log = fakeStream(false);
    const p = new Phases({ stream: log.stream, logEveryMs: 10_000, now: () => now });
    p.step("rootfs base: debootstrap");
    p.measure({ label: "Downloading packages", done: 0, total: 100 << 20, unit: "bytes" });
    now = 5000;
    p.measure({ label: "Downloading packages", done: 40 << 20, total: 100 << 20, unit: "bytes" });
    now = 10_000;
    p.measure({ label: "Downloading packages", done: 50 << 20, total: 100 << 20, unit: "bytes" });
    now = 12_000;
    p.measure({ label: "Downloading packages", done: 60 << 20, total: 100 << 20, unit: "bytes" });
    p.detail("I: Retrieving libc6 2.36");
    p.detail("W: a warning worth a line");
    now = 15_000;
    p.measure({ label: "Unpacking", done: 1, total: 4, unit: "items" });
    now = 16_000;
    p.measure({ label: "Unpacking", done: 4, total: 4, unit: "items" });
    now = 17_000;
    // Past the total (mkfs's metadata): nothing more to say.
    p.measure({ label: "Unpacking", done: 5, total: 4, unit: "items" });
    p.finish();
    assert.equal(
      log.text(),
      [
        "==> [00:00] rootfs base: debootstrap",
        "    Downloading packages [░░░░░░░░░░░░░░░░░░░░] 0% 0 B/100 MiB 0 B/s ETA ?",
        "    Downloading packages [██████████░░░░░░░░░░] 50% 50 MiB/100 MiB 5.0 MiB/s ETA 0:10",
        "    I: Retrieving libc6 2.36",
        "    W: a warning worth a line",
        "    Downloading packages [████████████░░░░░░░░] 60% 60 MiB/100 MiB 4.0 MiB/s ETA 0:10",
        "    Unpacking [█████░░░░░░░░░░░░░░░] 25% 1/4 ETA ?",
        "    Unpacking [████████████████████] 100% 4/4",
        "",
      ].join("\n"),
    );
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
