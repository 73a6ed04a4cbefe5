/**
 * The agent killed (SIGKILL, as a power cut or the OOM killer would) at each
 * named step of create, pause, resume, snapshot and destroy, on real VMs:
 * restarted, it finds the sandbox running, paused or cleanly gone — its
 * files and memory intact wherever it had been paused — and no host
 * resource is left behind.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { SandboxState } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { KEEP_META } from "../src/storage/keep.ts";
import type { CrashPoint } from "../src/util/crash-point.ts";
import { AgentHarness, vmSkipReason } from "./agent-harness.ts";

const skip = vmSkipReason("crash-point tests");

type Op = "create" | "pause" | "resume" | "snapshot" | "destroy";
/** What the restarted agent must show: the sandbox gone, running, paused, or either of the last two. */
type After = "gone" | "running" | "paused" | "running-or-paused";

const cases: Array<[CrashPoint, Op, After]> = [
  ["create:after-network", "create", "gone"],
  ["create:after-disk", "create", "gone"],
  ["create:after-vm", "create", "gone"],
  ["pause:after-freeze", "pause", "running"],
  // Inside QEMU's save, before the record says the memory is saved.
  ["pause:after-ram-link", "pause", "running"],
  ["pause:after-memory", "pause", "paused"],
  ["pause:after-stop", "pause", "paused"],
  ["pause:after-detach", "pause", "paused"],
  ["resume:after-attach", "resume", "paused"],
  ["resume:after-network", "resume", "paused"],
  // Committed (the record says running once envd answered), before the
  // VMM's and the agent's clean-up of the pause folder: the next agent does it.
  ["resume:after-restore", "resume", "running"],
  ["resume:after-commit", "resume", "running"],
  ["snapshot:after-flatten", "snapshot", "paused"],
  ["snapshot:after-copy", "snapshot", "paused"],
  ["destroy:after-stop", "destroy", "gone"],
  ["destroy:after-disk", "destroy", "gone"],
];

describe("the agent killed at each lifecycle step", { skip, concurrency: false }, () => {
  // On an xfs pool as `wrenn setup` makes: reflinked RAM files, shared with the VM (the QEMU
  // save links them into the pause folder, which pause:after-ram-link cuts short). Resumes
  // take the standby QEMU their pause started (the crashed agent's, taken or not).
  const h = new AgentHarness("wk", { standbyVmms: 1 }, { pool: true });

  before(async () => {
    await h.setUp();
    // The boot snapshot exists before the first crash: a crash point must
    // hit the test's sandbox, not the agent's own builder.
    await h.startProcess();
    const warm = h.newId();
    await h.create(warm);
    await h.client.destroySandbox({ sandboxId: warm });
    await h.stopProcess();
  });

  after(() => h.tearDown());

  for (const [point, op, expected] of cases) {
    test(`${point}: the sandbox is ${expected} after a restart, nothing leaks`, async () => {
      await h.startProcess({ WRENN_CRASH_AT: point });
      try {
        await crashAndCheck(point, op, expected);
      } finally {
        await h.stopProcess();
      }
    });
  }

  async function crashAndCheck(point: CrashPoint, op: Op, expected: After): Promise<void> {
    const id = h.newId();
    const mark = `mark-${id}`;
    const template = `crash-${id}`;
    if (op !== "create") {
      await h.create(id);
      assert.equal((await h.sh(id, `echo ${mark} > /tmp/mark && sync`)).exitCode, 0);
      if (op === "resume") {
        await h.client.pauseSandbox({ sandboxId: id });
        // Long enough for the standby QEMU the pause starts a second later to wait ready.
        await new Promise((r) => setTimeout(r, 2500));
      }
    }
    const call = {
      create: () => h.create(id),
      pause: () => h.client.pauseSandbox({ sandboxId: id }),
      resume: () => h.client.resumeSandbox({ sandboxId: id }),
      snapshot: () => h.client.createSnapshot({ sandboxId: id, name: template }),
      destroy: () => h.client.destroySandbox({ sandboxId: id }),
    }[op];
    await assert.rejects(call(), "the call must fail: the agent died under it");
    assert.equal(await h.processExit(), "SIGKILL", `the agent did not reach ${point}`);

    await h.startProcess();
    const listed = (await h.client.listSandboxes({})).sandboxes.find((s) => s.sandboxId === id);
    if (expected === "gone") {
      assert.equal(listed, undefined, `the sandbox is still listed: ${listed?.state}`);
    } else {
      assert.ok(listed, "the sandbox is gone: its saved state was lost");
      const want = {
        running: [SandboxState.RUNNING],
        paused: [SandboxState.PAUSED],
        "running-or-paused": [SandboxState.RUNNING, SandboxState.PAUSED],
      }[expected];
      assert.ok(want.includes(listed.state), `state ${SandboxState[listed.state]}`);
      if (listed.state === SandboxState.RUNNING) {
        // A running sandbox's disk is its own: no paused copy of it is left.
        const sandboxes = join(h.root, "data", "sandboxes");
        for (const home of await readdir(sandboxes)) {
          const kept = await readdir(join(sandboxes, home, "paused")).catch((): string[] => []);
          assert.ok(!kept.includes(KEEP_META), `a paused disk is left in ${home}/paused: ${kept}`);
          assert.ok(
            !kept.some((f) => f.startsWith(".discard-")),
            `a discarded memory file is left in ${home}/paused: ${kept}`,
          );
        }
      }
      if (listed.state === SandboxState.PAUSED) {
        await h.client.resumeSandbox({ sandboxId: id });
      } else {
        // Unfrozen where the pause stopped: it still pauses and resumes, into
        // the standby the pause starts.
        await h.client.pauseSandbox({ sandboxId: id });
        await new Promise((r) => setTimeout(r, 2500));
        await h.client.resumeSandbox({ sandboxId: id });
      }
      const read = await h.sh(id, "cat /tmp/mark");
      assert.equal(read.stdout.trim(), mark, "the sandbox's files and memory survived");
      await h.client.destroySandbox({ sandboxId: id });
    }
    const templates = (await h.client.listTemplates({})).templates.map((t) => t.name);
    if (templates.includes(template)) await h.client.deleteSnapshot({ name: template });
    // A resume that took a standby started the next: the agent's stop ends it.
    await h.noLeaksOnceStopped();
  }
});
