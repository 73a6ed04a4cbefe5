/**
 * Pause, resume and snapshot templates on real VMs: memory and files survive
 * many cycles, templates spawn sandboxes that diverge, and the failure rules
 * hold (the VMM killed mid-resume leaves the sandbox paused and retryable).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { SandboxState } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { readFile } from "node:fs/promises";
import { AgentHarness, connectCode, vmSkipReason } from "./agent-harness.ts";

const skip = vmSkipReason("pause/resume/snapshot tests");
// On an xfs pool, as `wrenn setup` prepares a data dir: clones get their own
// reflinked RAM file. lifecycle-faults.test.ts covers the plain (ext4) paths.
const h = new AgentHarness("wl", {}, { pool: true });

/**
 * A process that keeps a counter in memory and appends it to a file it holds
 * open; prints its pid once it has written its first line, so a pause or a
 * snapshot right after cannot catch python still starting (an empty log).
 */
const COUNTER = `nohup python3 -c '
import time
f = open("/home/user/counter.log", "a", buffering=1)
i = 0
while True:
    i += 1
    f.write("%d\\n" % i)
    time.sleep(0.05)
' >/dev/null 2>&1 & pid=$!
until [ -s /home/user/counter.log ]; do sleep 0.05; done; echo $pid`;

async function state(id: string): Promise<SandboxState | undefined> {
  return (await h.client.listSandboxes({})).sandboxes.find((s) => s.sandboxId === id)?.state;
}

/** The counter's pid is alive and its log counts up without a gap or a restart. */
async function counterIntact(id: string, pid: string): Promise<number> {
  const alive = await h.sh(id, `kill -0 ${pid} && echo alive`);
  assert.equal(alive.stdout, "alive\n", `counter process ${pid} is gone`);
  const log = await h.sh(id, "cat /home/user/counter.log");
  const values = log.stdout.trim().split("\n").map(Number);
  values.forEach((v, i) => assert.equal(v, i + 1, `counter log broken at line ${i + 1}`));
  return values.length;
}

describe("pause, resume and snapshot templates", { skip, concurrency: false }, () => {
  before(async () => {
    await h.setUp();
    await h.start();
  });
  after(() => h.tearDown());

  test("memory and files survive 12 pause/resume cycles", async () => {
    const id = h.newId();
    await h.create(id);
    try {
      const pid = (await h.sh(id, COUNTER)).stdout.trim();
      await h.sh(id, "head -c 8M /dev/urandom > /home/user/data.bin; sync");
      const sum = (await h.sh(id, "sha256sum /home/user/data.bin")).stdout;
      let seen = 0;
      const times: string[] = [];
      for (let cycle = 1; cycle <= 12; cycle++) {
        await new Promise((r) => setTimeout(r, 300));
        const t0 = performance.now();
        await h.client.pauseSandbox({ sandboxId: id });
        const t1 = performance.now();
        assert.equal(await state(id), SandboxState.PAUSED);
        const paused = await h.sh(id, "true").catch((e: unknown) => e);
        assert.equal(connectCode(paused), Code.FailedPrecondition);
        await h.client.resumeSandbox({ sandboxId: id });
        const t2 = performance.now();
        times.push(`${Math.round(t1 - t0)}/${Math.round(t2 - t1)}`);
        const count = await counterIntact(id, pid);
        assert.ok(count > seen, `cycle ${cycle}: the counter did not advance (${count})`);
        seen = count;
        assert.equal((await h.sh(id, "sha256sum /home/user/data.bin")).stdout, sum);
        await h.sh(id, `echo ${cycle} >> /home/user/cycles.txt`);
      }
      const cycles = (await h.sh(id, "cat /home/user/cycles.txt")).stdout;
      assert.equal(cycles, Array.from({ length: 12 }, (_, i) => `${i + 1}\n`).join(""));
      console.log(`pause/resume ms per cycle: ${times.join(" ")}`);
    } finally {
      await h.client.destroySandbox({ sandboxId: id });
    }
    await h.noLeaks();
  });

  test("a template spawns 3 sandboxes that see its state and then diverge", async () => {
    const src = h.newId();
    const name = `tpl-${src}`;
    // Secure sandboxes: each clone's /init must get past the template's token.
    await h.create(src, { token: `token-${src}` });
    const clones: string[] = [];
    try {
      const pid = (await h.sh(src, COUNTER)).stdout.trim();
      await h.sh(src, "echo from-template > /home/user/marker");
      await h.client.createSnapshot({ sandboxId: src, name });
      assert.equal(await state(src), SandboxState.PAUSED, "the source stays paused");
      const dup = await h.client.createSnapshot({ sandboxId: src, name }).catch((e: unknown) => e);
      assert.equal(connectCode(dup), Code.AlreadyExists);
      const templates = (await h.client.listTemplates({})).templates.map((t) => t.name);
      assert.ok(templates.includes(name) && templates.includes("minimal"), templates.join(","));

      for (let i = 0; i < 3; i++) clones.push(h.newId());
      const created = await Promise.all(
        clones.map(async (id) => {
          const t0 = performance.now();
          const sb = await h.create(id, { template: name, memoryMb: 512, token: `token-${id}` });
          await h.sh(id, "true");
          return { sb, ms: performance.now() - t0 };
        }),
      );
      console.log(
        `create from template → first exec (3 at once): ${created.map((c) => Math.round(c.ms)).join(", ")} ms`,
      );
      for (const { sb } of created) {
        assert.equal(sb?.memoryMb, 256, "a template keeps its memory size");
      }
      for (const id of clones) {
        assert.equal((await h.sh(id, "cat /home/user/marker")).stdout, "from-template\n");
        // Its own name, not the source's, in the kernel and in /etc (sudo
        // resolves it there), whose files are in memory (/init writes no disk).
        const names = await h.sh(
          id,
          "hostname; cat /etc/hostname; getent hosts $(hostname); readlink /etc/hosts /etc/hostname",
        );
        assert.match(
          names.stdout,
          new RegExp(
            `^${id}\\n${id}\\n127\\.0\\.1\\.1\\s+${id}\\n/run/wrenn/hosts\\n/run/wrenn/hostname\\n$`,
          ),
        );
        await counterIntact(id, pid);
        await h.sh(id, `echo ${id} > /home/user/who`);
      }
      for (const id of clones) {
        assert.equal((await h.sh(id, "cat /home/user/who")).stdout, `${id}\n`);
      }
      const inUse = await h.client.deleteSnapshot({ name }).catch((e: unknown) => e);
      assert.equal(connectCode(inUse), Code.FailedPrecondition);
      // A clone pauses and resumes like any sandbox.
      await h.client.pauseSandbox({ sandboxId: clones[0] as string });
      await h.client.resumeSandbox({ sandboxId: clones[0] as string });
      assert.equal(
        (await h.sh(clones[0] as string, "cat /home/user/who")).stdout,
        `${clones[0]}\n`,
      );
    } finally {
      for (const id of [...clones, src]) {
        await h.client.destroySandbox({ sandboxId: id }).catch(() => undefined);
      }
      await h.client.deleteSnapshot({ name }).catch(() => undefined);
    }
    assert.equal(
      connectCode(await h.client.deleteSnapshot({ name }).catch((e: unknown) => e)),
      Code.NotFound,
    );
    await h.noLeaks();
  });

  test("the VMM killed during resume leaves the sandbox paused, and a retry works", async () => {
    const id = h.newId();
    await h.create(id);
    try {
      await h.sh(id, "echo before > /home/user/f");
      await h.client.pauseSandbox({ sandboxId: id });
      const resuming = h.client.resumeSandbox({ sandboxId: id }).catch((e: unknown) => e);
      process.kill(await h.vmmPid(id), "SIGKILL");
      const err = await resuming;
      assert.equal(connectCode(err), Code.Unavailable, String(err));
      assert.equal(await state(id), SandboxState.PAUSED);
      await h.client.resumeSandbox({ sandboxId: id });
      assert.equal((await h.sh(id, "cat /home/user/f")).stdout, "before\n");
    } finally {
      await h.client.destroySandbox({ sandboxId: id });
    }
    await h.noLeaks();
  });

  test("pausing twice, resuming a running sandbox and snapshotting bad names are refused", async () => {
    const id = h.newId();
    await h.create(id);
    try {
      const running = await h.client.resumeSandbox({ sandboxId: id }).catch((e: unknown) => e);
      assert.equal(connectCode(running), Code.FailedPrecondition);
      const badName = await h.client
        .createSnapshot({ sandboxId: id, name: "../etc" })
        .catch((e: unknown) => e);
      assert.equal(connectCode(badName), Code.InvalidArgument);
      const base = await h.client
        .createSnapshot({ sandboxId: id, name: "minimal" })
        .catch((e: unknown) => e);
      assert.equal(connectCode(base), Code.AlreadyExists);
      await h.client.pauseSandbox({ sandboxId: id });
      const twice = await h.client.pauseSandbox({ sandboxId: id }).catch((e: unknown) => e);
      assert.equal(connectCode(twice), Code.FailedPrecondition);
      const record = JSON.parse(
        await readFile(`${h.root}/data/sandboxes/${id}/record.json`, "utf8"),
      ) as { status: string; slotIndex: number | null; vm: unknown };
      assert.deepEqual([record.status, record.slotIndex, record.vm], ["paused", null, null]);
    } finally {
      await h.client.destroySandbox({ sandboxId: id });
    }
    await h.noLeaks();
  });
});
