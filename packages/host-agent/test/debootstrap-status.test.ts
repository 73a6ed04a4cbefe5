// What `wrenn image build` shows while debootstrap runs: the status records
// a real `debootstrap --debian-installer` run of the minimal template's
// package set wrote on fd 3 (bookworm, 150 packages, 68 MB: captured on the
// development machine, 4 min), read back into measures and detail lines.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { DebootstrapStatus } from "../src/image/debootstrap-status.ts";
import { type Measure, runStreaming } from "../src/image/progress.ts";
import { isDebootstrapChatter } from "../src/image/rootfs.ts";

function recorder() {
  const measures: Measure[] = [];
  const details: string[] = [];
  const progress = {
    step: () => {},
    detail: (l: string) => details.push(l),
    measure: (m: Measure) => measures.push(m),
  };
  return { progress, measures, details };
}

test(
  "a real debootstrap's status: byte and package measures, chatter lines",
  { timeout: 10_000 },
  async () => {
    const text = await readFile(
      join(import.meta.dirname, "fixtures/debootstrap-status.txt"),
      "utf8",
    );
    const r = recorder();
    const status = new DebootstrapStatus(r.progress);
    for (const line of text.split("\n")) status.line(line);

    const labels = r.measures
      .map((m) => m.label)
      .filter((l, i, all) => i === 0 || all[i - 1] !== l);
    assert.deepEqual(labels, [
      "Downloading Release file",
      "Downloading Release file signature",
      "Downloading Packages files",
      "Finding package sizes",
      "Downloading packages",
      "Extracting packages",
      "Installing core packages",
      "Unpacking required packages",
      "Configuring required packages",
      "Unpacking base system",
      "Configuring base system",
    ]);

    const downloads = r.measures.filter((m) => m.label === "Downloading packages");
    assert.ok(downloads.every((m) => m.unit === "bytes" && m.total === 68_059_052));
    assert.ok(downloads.length > 50, `only ${downloads.length} download updates`);
    for (let i = 1; i < downloads.length; i++) {
      const [prev, cur] = [downloads[i - 1], downloads[i]];
      assert.ok(prev && cur && cur.done >= prev.done, "the download count never goes back");
    }
    // debootstrap's closing record says 0 bytes (it counts in a subshell): the bar stays full.
    assert.equal(downloads.at(-1)?.done, 68_059_052);

    const index = r.measures.filter((m) => m.label === "Downloading Packages files");
    assert.ok(index.every((m) => m.unit === "bytes" && m.total === 50_060_337));
    const configure = r.measures.filter((m) => m.label === "Configuring base system");
    assert.ok(configure.every((m) => m.unit === "items"));
    assert.deepEqual(
      { done: configure.at(-1)?.done, total: configure.at(-1)?.total },
      { done: 62, total: 62 },
    );

    assert.ok(r.details.includes("I: Retrieving adduser 3.134"), r.details.slice(0, 5).join("\n"));
    assert.ok(r.details.includes("I: Base system installed successfully."));
    const retrieved = r.details.filter((d) => /^I: Retrieving \S+ \S+$/.test(d));
    assert.equal(retrieved.length, 150);
    assert.ok(retrieved.every(isDebootstrapChatter), "per-package lines stay off a log");
    assert.deepEqual(status.errors, []);
  },
);

test(
  "error and warning records become lines, errors kept for the failure",
  { timeout: 10_000 },
  () => {
    const r = recorder();
    const status = new DebootstrapStatus(r.progress);
    for (const line of [
      "W: RETRYING",
      "WA: libc6",
      "WF: Retrying failed download of %s",
      "E: COULDNTDLPKGS",
      "EA:  libc6 bash",
      "EF: Couldn't download packages: %s",
      "P: 5 10", // a bare progress line before any record: ignored
    ])
      status.line(line);
    assert.deepEqual(r.details, [
      "W: Retrying failed download of libc6",
      "E: Couldn't download packages:  libc6 bash",
    ]);
    assert.deepEqual(status.errors, ["Couldn't download packages:  libc6 bash"]);
    assert.equal(r.measures.length, 0);
  },
);

test(
  "runStreaming hands fd 3's lines to onStatus and names its errors on failure",
  { timeout: 10_000 },
  async () => {
    const status: string[] = [];
    const out: string[] = [];
    await runStreaming(
      "sh",
      ["-c", 'echo "P: 1 2 X" >&3; echo log line; echo "PF: x" >&3'],
      (l) => out.push(l),
      {
        onStatus: (l) => status.push(l),
      },
    );
    assert.deepEqual(status, ["P: 1 2 X", "PF: x"]);
    assert.deepEqual(out, ["log line"]);
    await assert.rejects(
      runStreaming("sh", ["-c", "echo noise; exit 3"], () => {}, {
        onStatus: () => {},
        failure: () => "Couldn't download packages: bash",
      }),
      (err: Error) => /exit 3.*noise.*Couldn't download packages: bash/s.test(err.message),
    );
  },
);
