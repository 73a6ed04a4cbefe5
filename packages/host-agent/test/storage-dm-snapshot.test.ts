/**
 * dm-snapshot at its command boundary: this kernel has no device-mapper, so a
 * recording fake host answers losetup/blockdev/dmsetup the way the real tools
 * do (same stdout, same stderr on failure). Files (CoW, keep dir, base) are
 * real. One test runs the real losetup with only dmsetup faked.
 */
import assert from "node:assert/strict";
import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { CommandError, runCommand, type Runner } from "@wrenn/shared/command.ts";
import { createLogger } from "@wrenn/shared/log.ts";
import { cowBytes, DmSnapshotStorage, snapshotTable } from "../src/storage/dm-snapshot.ts";
import type { RetryPolicy } from "../src/storage/dmsetup.ts";
import { KEEP_META, readKeepMeta } from "../src/storage/keep.ts";
import { selectStorage } from "../src/storage/select.ts";
import { scratch } from "./storage-fixtures.ts";

const log = createLogger("storage-test", "silent");

/** Calls other than the copy a resume makes (`cp` only where the filesystem cannot reflink). */
function withoutCopies(calls: string[][]): string[][] {
  return calls.filter((c) => c[0] !== "cp");
}
const MIB = 1024 * 1024;
const RETRY: RetryPolicy = { attempts: 4, initialDelayMs: 5, maxDelayMs: 20 };
const BUSY = (name: string) =>
  `device-mapper: remove ioctl on ${name}  failed: Device or resource busy\nCommand failed.\n`;

/** The host as losetup, blockdev and dmsetup see it. */
class FakeHost {
  calls: string[][] = [];
  loops = new Map<string, { file: string; readOnly: boolean }>();
  devices = new Map<string, string>();
  /** Busy answers left per dm device for `dmsetup remove` (Infinity: forever). */
  busy = new Map<string, number>();
  /** Returns a stderr to fail the call with. */
  fail: (argv: string[]) => string | undefined = () => undefined;
  onCall: (argv: string[]) => void = () => {};
  /** Size of every loop device, in 512-byte sectors. */
  sectors = (64 * MIB) / 512;
  private nextLoop = 0;
  /** dmsetup, losetup, … only: real runner for everything else when set. */
  passThrough: Runner | undefined;
  fakeLosetup = true;

  runner: Runner = async (cmd, args, options) => {
    const argv = [cmd, ...args];
    this.calls.push(argv);
    this.onCall(argv);
    const injected = this.fail(argv);
    if (injected !== undefined) throw new CommandError(argv.join(" "), 1, injected);
    if (cmd === "dmsetup") return this.dmsetup(args);
    if ((cmd === "losetup" || cmd === "blockdev") && this.fakeLosetup) {
      return cmd === "losetup" ? this.losetup(args) : { stdout: `${this.sectors}\n`, stderr: "" };
    }
    if (this.passThrough) return this.passThrough(cmd, args, options);
    if (cmd === "dumpe2fs")
      return {
        stdout: "Block count:              4096\nBlock size:               4096\n",
        stderr: "",
      };
    // Copies of real files (a resume's working copy) are real; the rest read fake devices.
    if (cmd === "cp" && args.includes("--")) return runCommand(cmd, args, options);
    if (cmd === "cp") {
      await writeFile(args[args.length - 1] ?? "", Buffer.alloc(0));
      return { stdout: "", stderr: "" };
    }
    return { stdout: "", stderr: "" };
  };

  private err(argv: string[], stderr: string): never {
    throw new CommandError(argv.join(" "), 1, stderr);
  }

  private losetup(args: string[]) {
    const file = args[args.length - 1] ?? "";
    if (args[0] === "--find") {
      const device = `/dev/loop${this.nextLoop++}`;
      this.loops.set(device, { file, readOnly: args.includes("--read-only") });
      return { stdout: `${device}\n`, stderr: "" };
    }
    if (args[0] === "--detach") {
      if (!this.loops.delete(file))
        this.err(
          ["losetup", ...args],
          `losetup: ${file}: detach failed: No such device or address`,
        );
      return { stdout: "", stderr: "" };
    }
    if (args[0] === "--list") {
      const names = [...this.loops].filter(([, l]) => l.file === file).map(([d]) => d);
      return { stdout: names.map((n) => `${n}\n`).join(""), stderr: "" };
    }
    return this.err(["losetup", ...args], "unexpected losetup call");
  }

  private dmsetup(args: string[]) {
    const argv = ["dmsetup", ...args];
    const name = args[1] ?? "";
    switch (args[0]) {
      case "version":
        return { stdout: "Library version:   1.02.185\nDriver version:    4.48.0\n", stderr: "" };
      case "info":
        if (!this.devices.has(name)) this.err(argv, "Device does not exist.\nCommand failed.\n");
        return { stdout: `Name:              ${name}\nState:             ACTIVE\n`, stderr: "" };
      case "create": {
        if (this.devices.has(name))
          this.err(
            argv,
            `device-mapper: create ioctl on ${name}  failed: Device or resource busy\n`,
          );
        const table = args[3] ?? "";
        for (const dev of table.split(" ").filter((w) => w.startsWith("/dev/"))) {
          if (this.fakeLosetup && !this.loops.has(dev))
            this.err(
              argv,
              `device-mapper: reload ioctl on ${name}  failed: No such device or address\n`,
            );
        }
        this.devices.set(name, table);
        return { stdout: "", stderr: "" };
      }
      case "remove": {
        const left = this.busy.get(name) ?? 0;
        if (left > 0) {
          this.busy.set(name, left - 1);
          this.err(argv, BUSY(name));
        }
        if (!this.devices.delete(name)) {
          this.err(
            argv,
            `device-mapper: remove ioctl on ${name}  failed: No such device or address\nCommand failed.\n`,
          );
        }
        return { stdout: "", stderr: "" };
      }
    }
    return this.err(argv, "unexpected dmsetup call");
  }

  count(...prefix: string[]): number {
    return this.calls.filter((c) => prefix.every((p, i) => c[i] === p)).length;
  }

  /** Loop devices still attached, as "device file". */
  attached(): string[] {
    return [...this.loops].map(([d, l]) => `${d} ${l.file}`);
  }
}

async function setup(t: TestContext, label: string) {
  const { root, work } = await scratch(t, label);
  const basePath = join(root, "base.ext4");
  await writeFile(basePath, "");
  const host = new FakeHost();
  const storage = new DmSnapshotStorage({ runner: host.runner, log, removeRetry: RETRY });
  return { root, work, host, storage, base: { name: "minimal", path: basePath } };
}

test("dm-snapshot: create runs the seed's exact commands and table", async (t) => {
  const { work, host, storage, base } = await setup(t, "dm-create");
  const dir = join(work, "sb1");
  const disk = await storage.create("sb1", base, 32, dir);
  const cow = join(dir, "rootfs.cow");
  assert.deepEqual(host.calls, [
    ["dmsetup", "info", "wrenn-sb1"],
    ["losetup", "--find", "--show", "--read-only", base.path],
    ["blockdev", "--getsz", "/dev/loop0"],
    ["losetup", "--find", "--show", cow],
    ["dmsetup", "create", "wrenn-sb1", "--table", "0 131072 snapshot /dev/loop0 /dev/loop1 P 8"],
  ]);
  assert.equal(
    snapshotTable(131072, "/dev/loop0", "/dev/loop1"),
    "0 131072 snapshot /dev/loop0 /dev/loop1 P 8",
  );
  assert.equal(disk.path, "/dev/mapper/wrenn-sb1");
  assert.equal(disk.format, "raw");
  const st = await stat(cow);
  assert.equal(st.size, cowBytes(32), "CoW holds disk_size_mb of chunks plus its metadata");
  assert.ok(st.size > 32 * MIB && st.size < 33 * MIB);
  assert.equal(st.blocks, 0, "the CoW file is sparse");
  assert.equal(
    await storage.usage(disk),
    0,
    "usage counts allocated blocks, not the apparent size",
  );

  await storage.destroy(disk);
  assert.deepEqual(host.calls.slice(5), [
    ["dmsetup", "info", "wrenn-sb1"],
    ["dmsetup", "remove", "wrenn-sb1"],
    ["losetup", "--list", "--noheadings", "--output", "NAME", "--associated", cow],
    ["losetup", "--detach", "/dev/loop1"],
    ["losetup", "--detach", "/dev/loop0"],
  ]);
  assert.deepEqual(await readdir(dir), []);
  assert.deepEqual(host.attached(), []);
});

test("dm-snapshot: the base loop device is shared and reference-counted", async (t) => {
  const { work, host, storage, base } = await setup(t, "dm-refs");
  const disks = await Promise.all(
    ["a", "b", "c"].map((id) => storage.create(id, base, 16, join(work, id))),
  );
  assert.equal(
    host.count("losetup", "--find", "--show", "--read-only"),
    1,
    "one base loop for all",
  );
  assert.equal(storage.loops.refs(base.path), 3);
  assert.deepEqual(
    [...host.devices.values()].map((tbl) => tbl.split(" ")[3]),
    ["/dev/loop0", "/dev/loop0", "/dev/loop0"],
  );
  const [a, b, c] = disks;
  assert.ok(a && b && c);
  await storage.destroy(a);
  await storage.destroy(a); // idempotent: must not drop a second reference
  assert.equal(storage.loops.refs(base.path), 2);
  assert.ok(host.loops.has("/dev/loop0"));
  const paused = await storage.detach(b, join(work, "keep-b"));
  assert.equal(storage.loops.refs(base.path), 1, "a paused disk holds no base reference");
  await storage.destroy(c);
  assert.equal(storage.loops.refs(base.path), 0);
  assert.ok(!host.loops.has("/dev/loop0"), "last reference detaches the base loop");
  const resumed = await storage.attach(paused, base);
  assert.equal(storage.loops.refs(base.path), 1);
  await storage.dropKept(paused);
  await storage.destroy(resumed);
  assert.deepEqual(host.attached(), []);
  assert.deepEqual([...host.devices.keys()], []);
  for (const id of ["a", "b", "c", "keep-b"]) assert.deepEqual(await readdir(join(work, id)), []);
});

test("dm-snapshot: remove retries while busy, then succeeds", async (t) => {
  const { work, host, storage, base } = await setup(t, "dm-busy");
  const disk = await storage.create("sb", base, 16, join(work, "sb"));
  host.busy.set("wrenn-sb", 2);
  await storage.destroy(disk);
  assert.equal(host.count("dmsetup", "remove", "wrenn-sb"), 3);
  assert.deepEqual(host.attached(), []);
  assert.equal(storage.loops.refs(base.path), 0);
});

test("dm-snapshot: busy forever gives up after the budget and keeps the base loop reference", async (t) => {
  const { work, host, storage, base } = await setup(t, "dm-busy-forever");
  const dir = join(work, "sb");
  const disk = await storage.create("sb", base, 16, dir);
  host.busy.set("wrenn-sb", Infinity);
  await assert.rejects(
    storage.detach(disk, join(work, "keep")),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, "unavailable");
      assert.match(err.message, /wrenn-sb is still busy after 4 attempts over 35 ms/);
      return true;
    },
  );
  assert.equal(host.count("dmsetup", "remove", "wrenn-sb"), RETRY.attempts);
  assert.equal(storage.loops.refs(base.path), 1, "the stale device still uses the base loop");
  assert.equal(host.attached().length, 2, "base and CoW loops stay");
  assert.deepEqual(
    await readdir(dir),
    ["rootfs.cow"],
    "the CoW is not moved away from a live device",
  );

  await assert.rejects(storage.destroy(disk), { code: "unavailable" });
  assert.equal(storage.loops.refs(base.path), 1);

  host.busy.delete("wrenn-sb");
  await storage.destroy(disk);
  assert.deepEqual(host.attached(), []);
  assert.equal(storage.loops.refs(base.path), 0);
});

test("dm-snapshot: errors other than busy are returned at once", async (t) => {
  const { work, host, storage, base } = await setup(t, "dm-nonbusy");
  const disk = await storage.create("sb", base, 16, join(work, "sb"));
  host.fail = (argv) =>
    argv[1] === "remove"
      ? "device-mapper: remove ioctl on wrenn-sb  failed: Permission denied\n"
      : undefined;
  await assert.rejects(storage.destroy(disk), /Permission denied/);
  assert.equal(host.count("dmsetup", "remove"), 1);
  assert.equal(storage.loops.refs(base.path), 1);
  host.fail = () => undefined;
  await storage.destroy(disk);
  assert.deepEqual(host.attached(), []);
});

test("dm-snapshot: cancellation stops the busy retries; a later destroy still cleans up", async (t) => {
  const { work, host, storage, base } = await setup(t, "dm-cancel");
  const dir = join(work, "sb");
  const disk = await storage.create("sb", base, 16, dir);
  host.busy.set("wrenn-sb", Infinity);
  const ac = new AbortController();
  host.onCall = (argv) => {
    if (argv[1] === "remove" && host.count("dmsetup", "remove") === 2)
      ac.abort(new Error("client went away"));
  };
  await assert.rejects(storage.detach(disk, join(work, "keep"), { signal: ac.signal }), {
    code: "cancelled",
  });
  assert.equal(host.count("dmsetup", "remove"), 2, "no attempt after the cancel");
  assert.equal(storage.loops.refs(base.path), 1);
  assert.deepEqual(await readdir(dir), ["rootfs.cow"]);

  host.onCall = () => {};
  host.busy.set("wrenn-sb", 1);
  await storage.destroy(disk); // the manager's cleanup: no signal, retries
  assert.deepEqual(host.attached(), []);
  assert.deepEqual([...host.devices.keys()], []);
  assert.deepEqual(await readdir(dir), []);
});

test("dm-snapshot: a create cancelled after its device exists still removes it (busy and all)", async (t) => {
  const { work, host, storage, base } = await setup(t, "dm-cancel-create");
  const dir = join(work, "sb");
  const ac = new AbortController();
  host.onCall = (argv) => {
    if (argv[1] === "create") {
      ac.abort();
      host.busy.set("wrenn-sb", 2); // udev still probing the new device
    }
  };
  await assert.rejects(storage.create("sb", base, 16, dir, { signal: ac.signal }), {
    code: "cancelled",
  });
  assert.equal(
    host.count("dmsetup", "remove", "wrenn-sb"),
    3,
    "cleanup retried despite the cancelled signal",
  );
  assert.deepEqual([...host.devices.keys()], []);
  assert.deepEqual(host.attached(), []);
  assert.equal(storage.loops.refs(base.path), 0);
  assert.deepEqual(await readdir(dir), []);
});

test("dm-snapshot: every failure midway in create releases what it made", async (t) => {
  const { work, host, storage, base } = await setup(t, "dm-create-fail");
  const dir = join(work, "sb");
  const steps: Array<[string, (a: string[]) => boolean]> = [
    ["base loop", (a) => a[0] === "losetup" && a.includes("--read-only")],
    ["blockdev", (a) => a[0] === "blockdev"],
    ["CoW loop", (a) => a[0] === "losetup" && a[1] === "--find" && !a.includes("--read-only")],
    ["dmsetup create", (a) => a[1] === "create"],
  ];
  for (const [what, match] of steps) {
    host.fail = (a) => (match(a) ? `injected ${what} failure` : undefined);
    await assert.rejects(
      storage.create("sb", base, 16, dir),
      new RegExp(`injected ${what} failure`),
    );
    assert.deepEqual(host.attached(), [], `no loop left after ${what} failed`);
    assert.deepEqual([...host.devices.keys()], []);
    assert.equal(storage.loops.refs(base.path), 0);
    assert.deepEqual(await readdir(dir).catch(() => []), [], `no CoW left after ${what} failed`);
  }
  host.fail = () => undefined;

  // Larger than the origin: a dm-snapshot cannot be, so it says how to fix it.
  await assert.rejects(storage.create("sb", base, 65, dir), (err: Error & { code?: string }) => {
    assert.equal(err.code, "failed_precondition");
    assert.match(err.message, /larger than base image 'minimal' \(64 MiB\).*default disk size/);
    return true;
  });
  assert.deepEqual(host.attached(), []);

  // If the device cannot be removed during cleanup, the base reference stays.
  const ac = new AbortController();
  host.onCall = (a) => {
    if (a[1] === "create") {
      host.busy.set("wrenn-sb", Infinity);
      ac.abort();
    }
  };
  await assert.rejects(storage.create("sb", base, 16, dir, { signal: ac.signal }), (err: Error) => {
    assert.match(
      err.message,
      /cancelled; cleanup then failed .*still held: dm device wrenn-sb, CoW loop/,
    );
    return true;
  });
  assert.equal(storage.loops.refs(base.path), 1);
  host.busy.delete("wrenn-sb");
  host.onCall = () => {};
  await storage.destroy({
    sandboxId: "sb",
    path: "/dev/mapper/wrenn-sb",
    format: "raw",
    state: { cowPath: join(dir, "rootfs.cow"), basePath: base.path },
  });
  assert.deepEqual(host.attached(), []);
  assert.equal(storage.loops.refs(base.path), 0);
});

test("dm-snapshot: stale devices are removed before create and before restore", async (t) => {
  const { work, host, storage, base } = await setup(t, "dm-stale");
  const dir = join(work, "sb");
  host.devices.set("wrenn-sb", "0 1 snapshot /dev/loop90 /dev/loop91 P 8");
  host.busy.set("wrenn-sb", 1);
  const disk = await storage.create("sb", base, 16, dir);
  assert.deepEqual(host.calls.slice(0, 4), [
    ["dmsetup", "info", "wrenn-sb"],
    ["dmsetup", "remove", "wrenn-sb"],
    ["dmsetup", "remove", "wrenn-sb"],
    ["losetup", "--find", "--show", "--read-only", base.path],
  ]);
  const paused = await storage.detach(disk, join(work, "keep"));

  // A crashed agent left a device of that name behind while paused.
  host.devices.set("wrenn-sb", "0 1 snapshot /dev/loop90 /dev/loop91 P 8");
  host.calls = [];
  const resumed = await storage.attach(paused, base);
  assert.deepEqual(withoutCopies(host.calls).slice(0, 3), [
    ["dmsetup", "info", "wrenn-sb"],
    ["dmsetup", "remove", "wrenn-sb"],
    ["losetup", "--find", "--show", "--read-only", base.path],
  ]);
  assert.equal(host.devices.get("wrenn-sb"), `0 131072 snapshot /dev/loop2 /dev/loop3 P 8`);
  await storage.dropKept(paused);
  await storage.destroy(resumed);
  assert.deepEqual(host.attached(), []);
});

test("dm-snapshot: detach keeps the CoW with metadata; attach re-creates the device from it", async (t) => {
  const { work, host, storage, base } = await setup(t, "dm-pause");
  const dir = join(work, "sb");
  const keep = join(work, "keep");
  const disk = await storage.create("sb", base, 16, dir);
  const cow = join(dir, "rootfs.cow");
  await writeFile(cow, Buffer.alloc(8192, 1), { flag: "r+" }); // chunks the guest wrote
  const used = await storage.usage(disk);
  assert.equal(used, 8192);
  host.calls = [];
  const paused = await storage.detach(disk, keep);
  assert.deepEqual(host.calls, [
    ["dmsetup", "info", "wrenn-sb"],
    ["dmsetup", "remove", "wrenn-sb"],
    ["losetup", "--list", "--noheadings", "--output", "NAME", "--associated", cow],
    ["losetup", "--detach", "/dev/loop1"],
    ["losetup", "--detach", "/dev/loop0"],
  ]);
  assert.deepEqual(await readdir(dir), []);
  assert.deepEqual((await readdir(keep)).sort(), ["rootfs.cow", KEEP_META]);
  const meta = await readKeepMeta(keep);
  assert.equal(meta.driver, "dm-snapshot");
  assert.equal(meta.baseName, "minimal");
  assert.equal(meta.sizeMb, 16);
  assert.equal(paused.path, join(keep, "rootfs.cow"));
  assert.equal(await storage.usage(paused), used, "usage follows the kept CoW");
  assert.equal(await storage.detach(paused, keep), paused);

  await assert.rejects(storage.attach(paused, { name: "other", path: base.path }), {
    code: "failed_precondition",
  });
  // The base grew while the sandbox was paused: the device keeps the size the guest saw.
  host.sectors *= 2;
  host.calls = [];
  const resumed = await storage.attach(paused, base);
  assert.deepEqual(withoutCopies(host.calls), [
    ["dmsetup", "info", "wrenn-sb"],
    ["losetup", "--find", "--show", "--read-only", base.path],
    ["blockdev", "--getsz", "/dev/loop2"],
    ["losetup", "--find", "--show", cow],
    ["dmsetup", "create", "wrenn-sb", "--table", "0 131072 snapshot /dev/loop2 /dev/loop3 P 8"],
  ]);
  assert.equal(resumed.path, "/dev/mapper/wrenn-sb");
  assert.equal((await stat(cow)).blocks * 512, used, "the working copy holds the same CoW data");
  // The resumed guest writes its copy; the paused CoW stays as it was.
  await writeFile(cow, Buffer.alloc(4096, 2), { flag: "r+" });
  assert.deepEqual((await readFile(paused.path)).subarray(0, 8192), Buffer.alloc(8192, 1));
  assert.deepEqual((await readdir(keep)).sort(), ["rootfs.cow", KEEP_META]);

  // Undone (a failed resume): the working copy goes, the pause stays whole.
  await storage.destroy(resumed);
  assert.deepEqual(await readdir(dir), []);
  assert.deepEqual((await readdir(keep)).sort(), ["rootfs.cow", KEEP_META]);
  assert.equal(await storage.usage(paused), used);

  // A failed attach leaves no working copy, no loop, and the pause whole.
  host.fail = (a) =>
    a[1] === "create" ? "device-mapper: reload ioctl failed: Invalid argument" : undefined;
  await assert.rejects(storage.attach(paused, base), /Invalid argument/);
  assert.deepEqual((await readdir(keep)).sort(), ["rootfs.cow", KEEP_META]);
  assert.deepEqual(await readdir(dir), []);
  assert.deepEqual(host.attached(), []);
  assert.equal(storage.loops.refs(base.path), 0);
  host.fail = () => undefined;

  // Committed: the kept CoW goes, once and idempotently.
  const again = await storage.attach(paused, base);
  await storage.dropKept(paused);
  await storage.dropKept(paused);
  assert.deepEqual(await readdir(keep), []);
  assert.deepEqual((await readFile(cow)).subarray(0, 8192), Buffer.alloc(8192, 1));
  await storage.destroy(again);
  assert.deepEqual(await readdir(dir), []);
  assert.deepEqual(host.attached(), []);
});

test("dm-snapshot: flatten reads the device into a sparse image, then e2fsck and resize2fs -M", async (t) => {
  const { work, host, storage, base } = await setup(t, "dm-flatten");
  const disk = await storage.create("sb", base, 16, join(work, "sb"));
  const out = join(work, "tmpl.ext4");
  host.calls = [];
  await storage.flatten(disk, out);
  assert.deepEqual(host.calls, [
    ["cp", "--sparse=always", "/dev/mapper/wrenn-sb", `${out}.partial`],
    ["e2fsck", "-fy", `${out}.partial`],
    ["resize2fs", "-M", `${out}.partial`],
    ["dumpe2fs", "-h", `${out}.partial`],
  ]);
  await stat(out);

  // Paused: a temporary device over the kept CoW, torn down afterwards.
  const paused = await storage.detach(disk, join(work, "keep"));
  host.calls = [];
  await storage.flatten(paused, out);
  const keptCow = join(work, "keep", "rootfs.cow");
  assert.deepEqual(host.calls, [
    ["dmsetup", "info", "wrenn-flatten-sb"],
    ["losetup", "--find", "--show", "--read-only", base.path],
    ["losetup", "--find", "--show", keptCow],
    [
      "dmsetup",
      "create",
      "wrenn-flatten-sb",
      "--table",
      "0 131072 snapshot /dev/loop2 /dev/loop3 P 8",
    ],
    ["cp", "--sparse=always", "/dev/mapper/wrenn-flatten-sb", `${out}.partial`],
    ["e2fsck", "-fy", `${out}.partial`],
    ["resize2fs", "-M", `${out}.partial`],
    ["dumpe2fs", "-h", `${out}.partial`],
    ["dmsetup", "remove", "wrenn-flatten-sb"],
    ["losetup", "--detach", "/dev/loop3"],
    ["losetup", "--detach", "/dev/loop2"],
  ]);
  // A failure tears the temporary device down too and leaves no partial image.
  host.fail = (a) => (a[0] === "resize2fs" ? "resize2fs: No space left on device" : undefined);
  await assert.rejects(storage.flatten(paused, join(work, "t2.ext4")), /No space left/);
  assert.deepEqual([...host.devices.keys()], []);
  assert.deepEqual(host.attached(), []);
  host.fail = () => undefined;
  await storage.destroy(paused);
  await runCommand("rm", ["-f", out]);
});

test("dm-snapshot: base images are grown sparsely at start (truncate, e2fsck -fy, resize2fs)", async (t) => {
  const { work, host, storage, base } = await setup(t, "dm-grow");
  await writeFile(base.path, Buffer.alloc(64 * 1024, 1));
  const allocatedBefore = (await stat(base.path)).blocks;
  await storage.growBase(base, 32);
  assert.deepEqual(host.calls, [
    ["e2fsck", "-fy", base.path],
    ["resize2fs", base.path],
  ]);
  const st = await stat(base.path);
  assert.equal(st.size, 32 * MIB);
  assert.equal(st.blocks, allocatedBefore, "growing allocates nothing");

  host.calls = [];
  await storage.growBase(base, 16);
  assert.deepEqual(host.calls, [], "already large enough");

  // e2fsck exit 1 means "errors corrected": still a success.
  host.fail = (a) => (a[0] === "e2fsck" ? "fixed things" : undefined);
  await storage.growBase(base, 40);
  assert.equal((await stat(base.path)).size, 40 * MIB);
  host.fail = (a) =>
    a[0] === "resize2fs" ? "resize2fs: Invalid argument while trying to resize" : undefined;
  await assert.rejects(storage.growBase(base, 48), /Invalid argument/);
  assert.equal((await stat(base.path)).size, 40 * MIB, "a failed grow restores the size");
  host.fail = () => undefined;

  const disk = await storage.create("sb", base, 16, join(work, "sb"));
  await assert.rejects(storage.growBase(base, 64), { code: "failed_precondition" });
  await storage.destroy(disk);
});

test("dm-snapshot: a restarted agent adopts live disks and their base reference", async (t) => {
  const { work, host, storage, base } = await setup(t, "dm-adopt");
  const a = await storage.create("a", base, 16, join(work, "a"));
  const b = await storage.create("b", base, 16, join(work, "b"));
  const paused = await storage.detach(b, join(work, "keep-b"));
  const restarted = new DmSnapshotStorage({ runner: host.runner, log, removeRetry: RETRY });
  assert.equal(await restarted.adopt(a), true);
  assert.equal(await restarted.adopt(a), true);
  assert.equal(await restarted.adopt(paused), true);
  assert.equal(restarted.loops.refs(base.path), 1);
  const gone = { ...a, sandboxId: "zz" };
  assert.equal(await restarted.adopt(gone), false);
  await restarted.destroy(a);
  await restarted.destroy(paused);
  assert.deepEqual(host.attached(), []);
  for (const d of ["a", "b", "keep-b"]) assert.deepEqual(await readdir(join(work, d)), []);
});

test("dm-snapshot with real loop devices (only dmsetup faked)", async (t) => {
  const { root, work } = await scratch(t, "dm-real-loops");
  const basePath = join(root, "base.img");
  await runCommand("truncate", ["-s", "8M", basePath]);
  const host = new FakeHost();
  host.fakeLosetup = false;
  host.passThrough = runCommand;
  const storage = new DmSnapshotStorage({ runner: host.runner, log, removeRetry: RETRY });
  const base = { name: "t", path: basePath };
  const a = await storage.create("ra", base, 8, join(work, "ra"));
  const b = await storage.create("rb", base, 8, join(work, "rb"));
  const { stdout } = await runCommand("losetup", ["--list", "--json"]);
  const ours = (
    JSON.parse(stdout) as { loopdevices: { name: string; "back-file": string; ro: boolean }[] }
  ).loopdevices.filter((l) => l["back-file"].startsWith(root));
  assert.equal(ours.length, 3, "one shared base loop + one CoW loop each");
  assert.equal(ours.filter((l) => l.ro).length, 1);
  assert.equal(a.state.baseLoop, b.state.baseLoop);
  assert.match(
    host.devices.get("wrenn-ra") ?? "",
    /^0 16384 snapshot \/dev\/loop\d+ \/dev\/loop\d+ P 8$/,
  );

  // Injected failure at the last step: the real loops made so far go away.
  host.fail = (argv) =>
    argv[1] === "create" ? "device-mapper: reload ioctl failed: Invalid argument" : undefined;
  await assert.rejects(storage.create("rc", base, 8, join(work, "rc")), /Invalid argument/);
  host.fail = () => undefined;
  await storage.destroy(a);
  const paused = await storage.detach(b, join(work, "keep"));
  const resumed = await storage.attach(paused, base);
  await storage.dropKept(paused);
  await storage.destroy(resumed);
  // The scratch check asserts no loop device backed by a file under `root` is left.
});

test("selectStorage: dm-snapshot for firecracker with device-mapper, qcow2 for qemu, reflink otherwise", async (t) => {
  const { work } = await scratch(t, "select");
  const withDm = new FakeHost();
  const noDm = new FakeHost();
  noDm.fail = (a) =>
    a[0] === "dmsetup"
      ? "/dev/mapper/control: open failed: No such device\nCommand failed.\n"
      : undefined;
  const pick = async (
    host: FakeHost,
    vmm: "qemu" | "firecracker",
    override?: "dm-snapshot" | "qcow2" | "reflink",
  ) => (await selectStorage({ vmm, dataDir: work, runner: host.runner, log, override })).name;
  assert.equal(await pick(withDm, "firecracker"), "dm-snapshot");
  assert.equal(await pick(withDm, "qemu"), "qcow2");
  assert.equal(await pick(noDm, "qemu"), "qcow2");
  assert.equal(await pick(noDm, "firecracker"), "reflink");
  assert.equal(await pick(withDm, "firecracker", "reflink"), "reflink");
  assert.equal(await pick(noDm, "qemu", "reflink"), "reflink");
  await assert.rejects(pick(noDm, "firecracker", "dm-snapshot"), /no usable device-mapper/);
  await assert.rejects(pick(withDm, "firecracker", "qcow2"), /needs the qemu VMM/);
  // The real host: no device-mapper in this kernel.
  const real = await selectStorage({ vmm: "firecracker", dataDir: work, log });
  assert.ok(["dm-snapshot", "reflink"].includes(real.name));
});
