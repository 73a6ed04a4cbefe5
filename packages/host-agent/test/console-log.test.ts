/**
 * The bounded console log: the sink rotates at its cap and keeps two files,
 * reads follow absolute offsets across rotations, and the front door's
 * `logs()` reads a sandbox's console (in-memory drivers; the real guest's
 * console is covered by console-cap.test.ts).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer, type Socket } from "node:net";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createLogger } from "@wrenn/shared/log.ts";
import { isWrennError } from "@wrenn/shared/errors.ts";
import { ConsoleSink, consoleFiles, drainConsole, readConsole } from "../src/vmm/console-log.ts";
import { SandboxManager } from "../src/sandbox/manager.ts";
import {
  Faults,
  MemoryNetwork,
  MemoryStorage,
  MemoryVmm,
  memoryImages,
  startStandInEnvd,
} from "./in-memory-drivers.ts";

const log = createLogger("test", "silent");

async function write(dir: string, vmId: string, chunks: string[], cap: number): Promise<void> {
  await pipeline(Readable.from(chunks.map((c) => Buffer.from(c))), new ConsoleSink(dir, vmId, cap));
}

describe("console log", { timeout: 30_000 }, () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "wrenn-console-"));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test("rotates at the cap, keeps two files, reads by absolute offset", async () => {
    const dir = join(root, "rotate");
    await mkdir(dir);
    // 26 letters × 10 bytes = 260 bytes through a 64-byte cap: 4 rotations.
    const text = "abcdefghijklmnopqrstuvwxyz".split("").map((c) => c.repeat(10));
    await write(dir, "vm1", text, 64);
    const all = text.join("");
    const f = consoleFiles(dir, "vm1");
    assert.equal((await stat(f.current)).size, 260 - 256);
    assert.equal((await stat(f.rotated(192))).size, 64);
    // Two files: the current one and the older one, named for its offset.
    assert.deepEqual((await readdir(dir)).sort(), ["vm1.console.192.log", "vm1.console.log"]);
    // The oldest kept byte is 192: a read from 0 starts there.
    const first = await readConsole(dir, "vm1", { offset: 0 });
    assert.equal(first.offset, 192);
    assert.equal(first.text, all.slice(192));
    assert.equal(first.nextOffset, 260);
    const mid = await readConsole(dir, "vm1", { offset: 250, limit: 5 });
    assert.deepEqual(mid, { text: all.slice(250, 255), offset: 250, nextOffset: 255 });
    // Across the two files.
    const across = await readConsole(dir, "vm1", { offset: 250, limit: 100 });
    assert.equal(across.text, all.slice(250));
    // At the end: nothing new, the same offset back.
    assert.deepEqual(await readConsole(dir, "vm1", { offset: 260 }), {
      text: "",
      offset: 260,
      nextOffset: 260,
    });
    // A later sink (a re-adopted VM) appends and keeps counting.
    await write(dir, "vm1", ["0123456789"], 64);
    const more = await readConsole(dir, "vm1", { offset: 260 });
    assert.deepEqual(more, { text: "0123456789", offset: 260, nextOffset: 270 });
  });

  test("consoles drained at once keep their own bytes, sent a byte per write as QEMU's serial port sends them", async () => {
    const dir = join(root, "drain");
    await mkdir(dir);
    // Two VMs' console sockets, each writing its own letter 3000 times, a byte at a time.
    const consoles = ["vma", "vmb"].map((vmId, i) => {
      const letter = "ab"[i] as string;
      const path = join(dir, `${vmId}.sock`);
      const server = createServer((sock: Socket) => {
        void (async () => {
          for (let k = 0; k < 3000; k++) {
            // Yield now and then, so both consoles' bytes arrive interleaved.
            if (!sock.write(letter) || k % 100 === 0) await new Promise((r) => setImmediate(r));
          }
          sock.end(`\n${vmId} done\n`);
        })();
      });
      return { vmId, letter, path, server };
    });
    await Promise.all(
      consoles.map((c) => new Promise<void>((r) => c.server.listen(c.path, () => r()))),
    );
    try {
      const drains = consoles.map((c) => drainConsole(c.path, dir, c.vmId, log));
      // Each ends when its VM closes the socket, with every byte in the file.
      await Promise.all(drains.map((d) => d.done));
      for (const c of consoles) {
        const read = await readConsole(dir, c.vmId);
        assert.equal(read.text, `${c.letter.repeat(3000)}\n${c.vmId} done\n`);
      }
    } finally {
      await Promise.all(consoles.map((c) => new Promise<void>((r) => c.server.close(() => r()))));
    }
  });

  test("no console yet reads as empty", async () => {
    assert.deepEqual(await readConsole(join(root, "none"), "vm"), {
      text: "",
      offset: 0,
      nextOffset: 0,
    });
  });

  test("manager.logs reads a sandbox's console and checks its arguments", async () => {
    const faults = new Faults();
    const envd = await startStandInEnvd(faults);
    try {
      const manager = new SandboxManager({
        dataDir: join(root, "data"),
        runRoot: join(root, "run"),
        vmm: new MemoryVmm(faults),
        storage: new MemoryStorage(faults),
        network: new MemoryNetwork(faults, envd.address),
        images: await memoryImages(join(root, "images")),
        log,
        bootSnapshotDir: null,
      });
      await manager.start();
      await manager.create({
        id: "logs1",
        template: "minimal",
        vcpus: 1,
        memoryMb: 256,
        diskSizeMb: 64,
        timeoutSec: 0,
        envVars: {},
      });
      await write(join(root, "run", "logs1"), "logs1", ["[    0.000000] Linux version\n"], 1024);
      const all = await manager.logs("logs1");
      assert.equal(all.text, "[    0.000000] Linux version\n");
      assert.equal(all.nextOffset, all.text.length);
      const tail = await manager.logs("logs1", { offset: 15, limit: 5 });
      assert.deepEqual(tail, { text: "Linux", offset: 15, nextOffset: 20 });
      await assert.rejects(manager.logs("logs1", { offset: -1 }), (err: unknown) =>
        isWrennError(err, "invalid_argument"),
      );
      await assert.rejects(manager.logs("logs1", { limit: 2 ** 30 }), (err: unknown) =>
        isWrennError(err, "invalid_argument"),
      );
      await assert.rejects(manager.logs("nope"), (err: unknown) => isWrennError(err, "not_found"));
      await manager.destroy("logs1");
    } finally {
      await envd.close();
    }
  });
});
