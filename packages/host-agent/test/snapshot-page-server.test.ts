import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, open, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCommand } from "@wrenn/shared/command.ts";
import { isWrennError, messageOf } from "@wrenn/shared/errors.ts";
import { BLOCK_SIZE, HEADER_FILE, dataFileName } from "../src/snapshot/header.ts";
import { dirtyBitmap, writeDiff, writeFull } from "../src/snapshot/memfile.ts";
import { LEGACY_FILE, openSnapshot } from "../src/snapshot/reader.ts";
import { dirtyFromSparseFile } from "../src/snapshot/sparse.ts";
import {
  NATIVE_UFFD_DIR,
  adoptPageServer,
  buildPageServer,
  startPageServer,
  type PageServer,
} from "../src/snapshot/page-server.ts";

const HARNESS = join(NATIVE_UFFD_DIR, "test-harness");

function uffdUnavailable(): string | null {
  if (process.getuid?.() === 0) return null;
  const sysctl = "/proc/sys/vm/unprivileged_userfaultfd";
  if (existsSync(sysctl) && readFileSync(sysctl, "utf8").trim() === "1") return null;
  return "userfaultfd needs root (or vm.unprivileged_userfaultfd=1)";
}

let skipReason = uffdUnavailable();
let root: string;
/** Every process a test started; each must be gone when the test ends. */
const started = new Set<number>();

before(async () => {
  root = await mkdtemp(join(tmpdir(), "wrenn-page-server-"));
  if (skipReason !== null) return;
  try {
    await buildPageServer();
  } catch (err) {
    skipReason = `cannot build native/uffd (needs gcc and make): ${messageOf(err)}`;
  }
});

afterEach(async () => {
  const alive = [...started].filter(isAlive);
  for (const pid of alive) process.kill(pid, "SIGKILL");
  started.clear();
  assert.deepEqual(alive, [], "processes leaked past their test");
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function skipped(t: { skip: (msg: string) => void }): boolean {
  if (skipReason === null) return false;
  console.warn(`\n!!! SKIPPED page server test: ${skipReason} !!!\n`);
  t.skip(skipReason);
  return true;
}

async function start(dir: string, name = "uffd.sock"): Promise<PageServer> {
  const server = await startPageServer({ socketPath: join(dir, name), snapshotDir: dir });
  started.add(server.pid);
  return server;
}

interface HarnessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  report: { ok: boolean; bytes: number; pages: number } | null;
  stderr: string;
}

function runHarness(socket: string, expected: string, args: string[] = []): Promise<HarnessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(HARNESS, [...args, socket, expected], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    started.add(child.pid as number);
    let out = "";
    let err = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr.on("data", (b: Buffer) => (err += b.toString()));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const line = out.trim().split("\n").at(-1);
      resolve({ code, signal, report: line ? JSON.parse(line) : null, stderr: err });
    });
  });
}

/** A memory image with zero stretches and random data, like a guest's RAM. */
function makeImage(blocks: number): Buffer {
  const img = Buffer.alloc(blocks * BLOCK_SIZE);
  for (let b = 0; b < blocks; b++) {
    if (b % 9 < 6) randomBytes(BLOCK_SIZE).copy(img, b * BLOCK_SIZE);
  }
  return img;
}

/** Full → Diff (dirty bitmap, sparse file) → Diff (compared with parent); returns the final image. */
async function threeGenerations(dir: string, blocks: number): Promise<string> {
  const img = makeImage(blocks);
  await writeFile(join(dir, "image"), img);
  await writeFull({ imagePath: join(dir, "image"), dir });

  const dirty: number[] = [];
  const sparse = Buffer.alloc(img.length);
  for (let b = 1; b < blocks; b += 13) {
    dirty.push(b);
    const data = b % 2 === 0 ? Buffer.alloc(BLOCK_SIZE) : randomBytes(BLOCK_SIZE);
    data.copy(img, b * BLOCK_SIZE);
    data.copy(sparse, b * BLOCK_SIZE);
  }
  await writeFile(join(dir, "diff1"), sparse);
  await writeDiff({ imagePath: join(dir, "diff1"), dir, dirty: dirtyBitmap(img.length, dirty) });

  for (let b = 5; b < blocks; b += 29) randomBytes(100).copy(img, b * BLOCK_SIZE + 7);
  randomBytes(64 * BLOCK_SIZE).copy(img, 40 * BLOCK_SIZE);
  await writeFile(join(dir, "expected"), img);
  const g2 = await writeDiff({ imagePath: join(dir, "expected"), dir });
  assert.equal(g2.header.metadata.generation, 2);
  return join(dir, "expected");
}

test("the page server serves a 3-generation chain byte for byte to a real userfaultfd", async (t) => {
  if (skipped(t)) return;
  const dir = await mkdtemp(join(root, "chain-"));
  const expected = await threeGenerations(dir, 4096); // 16 MiB
  const server = await start(dir);
  const run = await runHarness(server.socketPath, expected, ["--regions", "3", "--remove"]);
  assert.equal(run.code, 0, `harness failed: ${run.stderr}`);
  assert.equal(run.report?.ok, true);
  assert.equal(run.report?.bytes, 16 << 20);

  const exit = await server.exited;
  assert.equal(exit.vmExited, true, exit.reason);
  assert.match(server.stderr(), /from generation 2 \(3 data file\(s\)/);
  assert.match(server.stderr(), /removes=1/, "the MADV_DONTNEED range was seen as a REMOVE");
  assert.equal(
    existsSync(server.socketPath),
    false,
    "the socket is removed after the one connection",
  );
});

test("faults from several threads at once (vCPUs), in scattered order, are all served correctly", async (t) => {
  if (skipped(t)) return;
  const dir = await mkdtemp(join(root, "threads-"));
  const expected = await threeGenerations(dir, 4096);
  const server = await start(dir);
  const run = await runHarness(server.socketPath, expected, [
    "--threads",
    "4",
    "--regions",
    "5",
    "--random",
  ]);
  assert.equal(run.code, 0, `harness failed: ${run.stderr}`);
  assert.equal(run.report?.ok, true);
  assert.equal((await server.exited).vmExited, true);
});

test("2 MiB hugetlb regions (Firecracker huge_pages 2M) are served whole", async (t) => {
  if (skipped(t)) return;
  const knob = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
  if (!existsSync(knob)) {
    console.warn("\n!!! SKIPPED hugetlb page server test: no 2 MiB huge page support !!!\n");
    t.skip("no 2 MiB huge pages");
    return;
  }
  const before = Number(readFileSync(knob, "utf8"));
  // Reserve on top of whatever others hold, and give exactly that back.
  await writeFile(knob, String(before + 16));
  try {
    if (Number(readFileSync(knob, "utf8")) < before + 8) {
      console.warn("\n!!! SKIPPED hugetlb page server test: cannot reserve 8 huge pages !!!\n");
      t.skip("cannot reserve huge pages");
      return;
    }
    const dir = await mkdtemp(join(root, "huge-"));
    const expected = await threeGenerations(dir, 4096); // 16 MiB = 8 huge pages
    const server = await start(dir);
    const run = await runHarness(server.socketPath, expected, ["--huge", "--threads", "2"]);
    assert.equal(run.code, 0, `harness failed: ${run.stderr}`);
    assert.equal(run.report?.ok, true);
    assert.equal((await server.exited).vmExited, true);
  } finally {
    const now = Number(readFileSync(knob, "utf8"));
    await writeFile(knob, String(Math.max(0, now - 16)));
    assert.equal(Number(readFileSync(knob, "utf8")), before, "huge page reservation leaked");
  }
});

test("a Firecracker-style sparse diff file yields its dirty blocks from its extents", async (t) => {
  if (skipped(t)) return;
  const dir = await mkdtemp(join(root, "sparse-"));
  const size = 1 << 20;
  const file = join(dir, "diff");
  const fh = await open(file, "w");
  for (const b of [0, 3, 4, 200])
    await fh.write(randomBytes(BLOCK_SIZE), 0, BLOCK_SIZE, b * BLOCK_SIZE);
  await fh.truncate(size);
  await fh.close();
  const bitmap = await dirtyFromSparseFile(file, size, runCommand);
  const set: number[] = [];
  for (let b = 0; b < size / BLOCK_SIZE; b++)
    if ((bitmap[b >>> 3] as number) & (1 << (b & 7))) set.push(b);
  // ext4/xfs/btrfs/tmpfs report holes exactly; a file system that cannot would report all.
  assert.ok(set.length === 4 || set.length === size / BLOCK_SIZE, `dirty blocks ${set.join(",")}`);
  if (set.length === 4) assert.deepEqual(set, [0, 3, 4, 200]);
  await assert.rejects(dirtyFromSparseFile(file, size / 2, runCommand), /beyond guest memory/);
});

test("the harness notices a single wrong byte (so a pass means something)", async (t) => {
  if (skipped(t)) return;
  const dir = await mkdtemp(join(root, "wrong-"));
  const img = makeImage(256);
  await writeFile(join(dir, LEGACY_FILE), img);
  img[200 * BLOCK_SIZE + 5] = (img[200 * BLOCK_SIZE + 5] as number) ^ 0xff;
  await writeFile(join(dir, "expected"), img);
  const server = await start(dir);
  const run = await runHarness(server.socketPath, join(dir, "expected"));
  assert.equal(run.code, 1);
  assert.equal(run.report?.ok, false);
  assert.match(run.stderr, new RegExp(`byte at guest offset ${200 * BLOCK_SIZE + 5} `));
  await server.exited;
});

test("the page server serves the legacy single-file layout", async (t) => {
  if (skipped(t)) return;
  const dir = await mkdtemp(join(root, "legacy-"));
  const img = makeImage(1024);
  await writeFile(join(dir, LEGACY_FILE), img);
  const server = await start(dir);
  const run = await runHarness(server.socketPath, join(dir, LEGACY_FILE), ["--regions", "2"]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal((await server.exited).vmExited, true);
});

test("the page server exits when its VM process dies (no silent hang)", async (t) => {
  if (skipped(t)) return;
  const dir = await mkdtemp(join(root, "death-"));
  const expected = await threeGenerations(dir, 512);
  const server = await start(dir);
  const child = spawn(HARNESS, ["--hold", server.socketPath, expected], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  started.add(child.pid as number);
  const line = await new Promise<string>((resolve) => {
    let out = "";
    child.stdout.on("data", (b: Buffer) => {
      out += b.toString();
      if (out.includes("\n")) resolve(out);
    });
  });
  assert.equal(JSON.parse(line).ok, true);
  assert.ok(isAlive(server.pid), "the server serves while its VM lives");
  child.kill("SIGKILL");
  const exit = await Promise.race([
    server.exited,
    new Promise<null>((r) => setTimeout(() => r(null), 5000).unref()),
  ]);
  assert.ok(exit !== null, "the server did not exit within 5 s of its VM's death");
  assert.equal(exit.vmExited, true);
  assert.match(exit.reason, /the VM exited/);
});

test("corrupt or truncated snapshots are refused by the C server and the TS store alike", async (t) => {
  if (skipped(t)) return;
  const cases: [string, (dir: string, dataFile: string) => Promise<void>, RegExp][] = [
    [
      "truncated header",
      async (dir) => {
        const raw = await readFile(join(dir, HEADER_FILE));
        await writeFile(join(dir, HEADER_FILE), raw.subarray(0, raw.length - 1));
      },
      /truncated/,
    ],
    [
      "unknown version",
      async (dir) => {
        const raw = await readFile(join(dir, HEADER_FILE));
        raw.writeBigUInt64LE(9n, 0);
        await writeFile(join(dir, HEADER_FILE), raw);
      },
      /unknown version 9/,
    ],
    [
      "overlapping entries",
      async (dir) => {
        const raw = await readFile(join(dir, HEADER_FILE));
        raw.writeBigUInt64LE(raw.readBigUInt64LE(64 + 40 + 8) + BigInt(BLOCK_SIZE), 64 + 40 + 8);
        await writeFile(join(dir, HEADER_FILE), raw);
      },
      /overlaps|beyond the memory size/,
    ],
    [
      "truncated data file",
      async (_dir, data) => truncate(data, (await stat(data)).size - BLOCK_SIZE),
      /truncated: entry \d+ needs bytes/,
    ],
    ["missing data file", async (_dir, data) => rm(data), /memfile\.[0-9a-f-]+/],
  ];
  for (const [name, damage, re] of cases) {
    const dir = await mkdtemp(join(root, "corrupt-"));
    const img = makeImage(64);
    await writeFile(join(dir, "image"), img);
    const { header } = await writeFull({ imagePath: join(dir, "image"), dir });
    await damage(dir, join(dir, dataFileName(header.metadata.buildId)));
    await assert.rejects(
      start(dir),
      (err) =>
        isWrennError(err, "failed_precondition") &&
        /memory snapshot is invalid/.test(err.message) &&
        re.test(err.message),
      `C server, ${name}`,
    );
    await assert.rejects(openSnapshot(dir), re, `TS store, ${name}`);
  }
});

test("a handshake without a userfaultfd is refused", async (t) => {
  if (skipped(t)) return;
  const dir = await mkdtemp(join(root, "handshake-"));
  await writeFile(join(dir, LEGACY_FILE), makeImage(16));
  const server = await start(dir);
  const sock = connect(server.socketPath);
  await new Promise((r) => sock.once("connect", r));
  sock.end('[{"base_host_virt_addr":4096,"size":65536,"offset":0,"page_size":4096}]');
  const exit = await server.exited;
  sock.destroy();
  assert.equal(exit.code, 4);
  assert.match(exit.reason, /no userfaultfd attached/);
  assert.equal(exit.unexpected, true, "the sandbox must be marked failed");
});

test("a missing page server binary is a clear precondition error", async () => {
  const dir = await mkdtemp(join(root, "nobinary-"));
  await assert.rejects(
    startPageServer({
      socketPath: join(dir, "s.sock"),
      snapshotDir: dir,
      binary: join(dir, "no-such-uffd-server"),
    }),
    (err) =>
      isWrennError(err, "failed_precondition") &&
      /is not built \(run 'make -C native\/uffd'/.test(err.message),
  );
});

test("stop() ends a server nobody connected to", async (t) => {
  if (skipped(t)) return;
  const dir = await mkdtemp(join(root, "stop-"));
  await writeFile(join(dir, LEGACY_FILE), makeImage(16));
  const server = await start(dir);
  const exit = await server.stop();
  assert.equal(exit.signal, "SIGTERM");
  assert.equal(exit.vmExited, false);
  assert.equal(exit.unexpected, false, "a requested stop is not a failure");
  assert.equal(await server.stop(), exit, "idempotent");
});

/** A harness that keeps its memory registered (a running VM) until killed. */
async function holdingVm(socket: string, expected: string) {
  const child = spawn(HARNESS, ["--hold", socket, expected], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  started.add(child.pid as number);
  await new Promise<void>((resolve) => {
    let out = "";
    child.stdout.on("data", (b: Buffer) => {
      out += b.toString();
      if (out.includes("\n")) resolve();
    });
  });
  return child;
}

test("a restarted agent adopts a page server by pid: its VM's exit is normal, its own death is not", async (t) => {
  if (skipped(t)) return;
  const dir = await mkdtemp(join(root, "adopt-"));
  const expected = await threeGenerations(dir, 512);

  // The VM ends first: the adopted server's end is the normal one.
  const first = await start(dir, "a.sock");
  const vm = await holdingVm(first.socketPath, expected);
  const adopted = await adoptPageServer(first.record);
  assert.ok(adopted, "a live server is adopted");
  const vmGone = once(vm, "exit");
  vm.kill("SIGKILL");
  await vmGone;
  const normal = await adopted.exited;
  await first.exited;
  assert.equal(normal.unexpected, false, normal.reason);
  assert.equal(normal.vmExited, true);

  // The server dies under a running VM: unexpected, with what it last said.
  const second = await start(dir, "b.sock");
  const vm2 = await holdingVm(second.socketPath, expected);
  const again = await adoptPageServer(second.record);
  assert.ok(again);
  process.kill(second.pid, "SIGKILL");
  const died = await again.exited;
  await second.exited; // reaped: the leak check must not see its zombie
  assert.equal(died.unexpected, true, "a server killed under its VM is a failure");
  assert.match(died.reason, /serving \d+ region/, "the reason is what the server last said");
  const vm2Gone = once(vm2, "exit");
  vm2.kill("SIGKILL");
  await vm2Gone;

  // Gone, or a pid that is some other process: nothing to adopt.
  assert.equal(await adoptPageServer(second.record), null);
  assert.equal(await adoptPageServer({ pid: process.pid, socketPath: second.socketPath }), null);
});
