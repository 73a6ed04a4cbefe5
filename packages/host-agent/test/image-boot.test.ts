// Boots the built base template for real (QEMU microvm, TCG, user-mode
// network with a port forward to envd), runs a command through envd's
// Process/Start, and checks the root filesystem grew to the disk size.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { runCommand } from "@wrenn/shared/command.ts";
import { which } from "../src/image/prerequisites.ts";
import { dataDir, findKernel, findTemplate, guestBootArgs } from "../src/image/store.ts";

const DISK_BYTES = 4 * 1024 ** 3;
// Generous: a loaded 2-core CI machine has been seen to take 90 s under TCG.
const HEALTH_TIMEOUT_MS = 240_000;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() =>
        typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port")),
      );
    });
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Connect's envelope: flags byte, big-endian length, message. */
function envelope(message: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(message));
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

interface ProcessEvent {
  start?: { pid: number };
  data?: { stdout?: string; stderr?: string };
  end?: { exitCode?: number; status?: string };
}

/** Runs a command through envd's Process/Start (Connect JSON, server stream). */
async function exec(
  base: string,
  cmd: string,
  args: string[],
): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const res = await fetch(`${base}/process.Process/Start`, {
    method: "POST",
    headers: { "content-type": "application/connect+json", "connect-protocol-version": "1" },
    body: envelope({ process: { cmd, args } }),
    signal: AbortSignal.timeout(60_000),
  });
  assert.equal(res.status, 200, await res.clone().text());
  const buf = Buffer.from(await res.arrayBuffer());
  let stdout = "";
  let stderr = "";
  let exitCode: number | undefined;
  for (let off = 0; off + 5 <= buf.length;) {
    const flags = buf[off] ?? 0;
    const len = buf.readUInt32BE(off + 1);
    const msg = JSON.parse(buf.subarray(off + 5, off + 5 + len).toString()) as {
      event?: ProcessEvent;
      error?: { message: string };
    };
    off += 5 + len;
    if (flags & 2) {
      if (msg.error) throw new Error(`envd: ${msg.error.message}`);
      continue;
    }
    const ev = msg.event;
    if (ev?.data?.stdout) stdout += Buffer.from(ev.data.stdout, "base64").toString();
    if (ev?.data?.stderr) stderr += Buffer.from(ev.data.stderr, "base64").toString();
    if (ev?.end) exitCode = ev.end.exitCode ?? 0;
  }
  assert.notEqual(exitCode, undefined, `no end event for ${cmd}`);
  return { stdout, stderr, exitCode: exitCode ?? -1 };
}

test("the base template boots under QEMU and runs a command through envd", async (t) => {
  if (which("qemu-system-x86_64") === null || which("qemu-img") === null) {
    console.warn("\n!!! SKIPPED: qemu-system-x86_64/qemu-img missing; run 'wrenn setup'\n");
    t.skip("QEMU is not installed");
    return;
  }
  let kernel;
  let template;
  try {
    kernel = await findKernel(dataDir());
    template = await findTemplate(dataDir(), "minimal");
  } catch (err) {
    const why = `no built image in ${dataDir()} (${String(err)}); run './wrenn image build' as root`;
    console.warn(`\n!!! SKIPPED: ${why}\n`);
    t.skip(why);
    return;
  }

  const dir = await mkdtemp(join(tmpdir(), "wrenn-boot-"));
  const overlay = join(dir, "disk.qcow2");
  let qemuPid = 0;
  let serial = "";
  try {
    await runCommand("qemu-img", [
      "create",
      "-q",
      "-f",
      "qcow2",
      "-b",
      template.rootfs,
      "-F",
      "raw",
      overlay,
      String(DISK_BYTES),
    ]);
    const port = await freePort();
    // Slirp's fixed addresses stand in for the network slot's.
    const bootArgs = guestBootArgs({
      guestIp: "10.0.2.15",
      gatewayIp: "10.0.2.2",
      netmask: "255.255.255.0",
      hostname: "smoke",
      dns: ["10.0.2.3"],
    });
    const started = performance.now();
    const qemu = spawn(
      "qemu-system-x86_64",
      [
        "-M",
        "microvm",
        "-accel",
        "tcg",
        "-m",
        "512",
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-no-reboot",
        "-serial",
        "stdio",
        "-kernel",
        kernel.vmlinuz,
        "-initrd",
        kernel.initrd,
        "-append",
        bootArgs,
        "-drive",
        `id=root,file=${overlay},format=qcow2,if=none`,
        "-device",
        "virtio-blk-device,drive=root",
        "-netdev",
        `user,id=n0,hostfwd=tcp:127.0.0.1:${port}-:49983`,
        "-device",
        "virtio-net-device,netdev=n0",
        "-device",
        "virtio-rng-device",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    qemuPid = qemu.pid ?? 0;
    qemu.stdout.on("data", (b: Buffer) => (serial += b.toString()));
    qemu.stderr.on("data", (b: Buffer) => (serial += b.toString()));
    let exited = false;
    qemu.on("exit", () => (exited = true));

    const base = `http://127.0.0.1:${port}`;
    let healthy = false;
    while (!healthy && !exited && performance.now() - started < HEALTH_TIMEOUT_MS) {
      try {
        const res = await fetch(`${base}/health`, { signal: AbortSignal.timeout(1000) });
        healthy = res.status === 204;
      } catch {
        // Not up yet (slirp accepts and drops until the guest listens).
      }
      if (!healthy) await new Promise((r) => setTimeout(r, 100));
    }
    const bootMs = performance.now() - started;
    assert.ok(healthy, `envd never became healthy (qemu exited: ${exited}); serial:\n${serial}`);
    console.log(
      `boot-to-health (QEMU launch → GET /health 204, TCG): ${(bootMs / 1000).toFixed(2)} s`,
    );

    const hello = await exec(base, "/bin/bash", ["-c", "echo hello"]);
    assert.deepEqual(hello, { stdout: "hello\n", stderr: "", exitCode: 0 });

    const who = await exec(base, "/bin/bash", [
      "-c",
      "id -un; echo $HOME; hostname; sudo -n id -un",
    ]);
    assert.equal(who.stdout, "user\n/home/user\nsmoke\nroot\n", who.stderr);

    const tools = await exec(base, "/bin/bash", [
      "-c",
      "python3 -c 'print(6*7)' && git --version && curl --version | head -1 && ls /bin/ls",
    ]);
    assert.equal(tools.exitCode, 0, tools.stderr);
    assert.match(tools.stdout, /^42\ngit version .*\ncurl .*\n\/bin\/ls\n$/);

    // The grow runs in the background at boot; give it a moment under TCG.
    let size = 0;
    for (let i = 0; i < 60; i++) {
      const df = await exec(base, "df", ["-B1", "--output=size", "/"]);
      size = Number(df.stdout.trim().split("\n").pop());
      if (size > 0.9 * DISK_BYTES) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.ok(size > 0.9 * DISK_BYTES, `root fs is ${size} bytes, disk ${DISK_BYTES}`);
  } finally {
    if (qemuPid && pidAlive(qemuPid)) {
      process.kill(qemuPid, "SIGKILL");
      for (let i = 0; i < 50 && pidAlive(qemuPid); i++)
        await new Promise((r) => setTimeout(r, 100));
    }
    await rm(dir, { recursive: true, force: true });
  }
  assert.ok(!pidAlive(qemuPid), "QEMU is gone");
  await assert.rejects(stat(dir), "the overlay's directory is gone");
});
