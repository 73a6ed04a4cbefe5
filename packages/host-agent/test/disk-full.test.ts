/**
 * The agent's data disk full (0 bytes free, on a throw-away xfs pool of the
 * test's own), on real VMs: an operation that cannot get space fails with
 * resource_exhausted and a message that says so — never "internal" — takes
 * nothing with it, and works again once space is back; a running sandbox
 * whose pause fails runs on; a paused sandbox stays paused and resumes with
 * its disk intact.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { SandboxState } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { join } from "node:path";
import { AgentHarness, connectCode, vmSkipReason } from "./agent-harness.ts";
import { fillDisk, type Filler } from "./fill-disk.ts";

const skip = vmSkipReason("disk-full tests");

describe("a full data disk", { skip, concurrency: false, timeout: 300_000 }, () => {
  const h = new AgentHarness("wdf", {}, { pool: true });
  let filler: Filler | undefined;

  before(async () => {
    await h.setUp();
    await h.start();
  });
  after(async () => {
    await filler?.remove();
    await h.tearDown();
  });

  async function fill(): Promise<void> {
    // Filling the host's own /tmp would hurt everyone on it.
    assert.ok(h.ownsDataFs, "the data dir must be a pool of this test's own");
    filler = await fillDisk(join(h.root, "data"));
    assert.ok(filler.freeBytes < 1024 * 1024, `${filler.freeBytes} bytes left free`);
  }
  async function unfill(): Promise<void> {
    await filler?.remove();
    filler = undefined;
  }
  async function state(id: string): Promise<SandboxState | undefined> {
    const { sandboxes } = await h.client.listSandboxes({});
    return sandboxes.find((s) => s.sandboxId === id)?.state;
  }

  test("a create fails with resource_exhausted, leaves nothing, and works once space is back", async () => {
    await fill();
    const id = h.newId();
    const err = await h.create(id).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err, "the create on a full disk failed");
    assert.equal(connectCode(err), Code.ResourceExhausted, String(err));
    assert.match(String(err), /data disk is full/);
    assert.equal(await state(id), undefined, "no record left of the failed create");
    await unfill();
    await h.create(id);
    assert.equal((await h.sh(id, "echo ok")).stdout, "ok\n");
    await h.client.destroySandbox({ sandboxId: id });
    await h.noLeaks();
  });

  test("a pause that cannot get space fails with resource_exhausted, and the sandbox runs on", async () => {
    const id = h.newId();
    await h.create(id);
    await h.sh(id, "echo kept > ~/marker && sync");
    await fill();
    const paused = await h.client.pauseSandbox({ sandboxId: id }).then(
      () => null,
      (e: unknown) => e,
    );
    await unfill();
    if (paused !== null) {
      // Its pause folder, its state or its record needed a block.
      assert.equal(connectCode(paused), Code.ResourceExhausted, String(paused));
      assert.match(String(paused), /data disk is full/);
      assert.equal(await state(id), SandboxState.RUNNING, "a failed pause leaves it running");
      assert.equal((await h.sh(id, "cat ~/marker")).stdout, "kept\n");
      await h.client.pauseSandbox({ sandboxId: id });
    }
    await h.client.resumeSandbox({ sandboxId: id });
    assert.equal((await h.sh(id, "cat ~/marker")).stdout, "kept\n");
    await h.client.destroySandbox({ sandboxId: id });
    await h.noLeaks();
  });

  test("a paused sandbox stays paused, and resumes with its disk once space is back", async () => {
    const id = h.newId();
    await h.create(id);
    await h.sh(id, "echo kept > ~/marker && sync");
    await h.client.pauseSandbox({ sandboxId: id });
    await fill();
    const resumed = await h.client.resumeSandbox({ sandboxId: id }).then(
      () => null,
      (e: unknown) => e,
    );
    await unfill();
    if (resumed !== null) {
      // The VM cannot grow its memory file on a full disk: the resume says why.
      assert.equal(connectCode(resumed), Code.ResourceExhausted, String(resumed));
      assert.equal(await state(id), SandboxState.PAUSED, "a failed resume leaves it paused");
      await h.client.resumeSandbox({ sandboxId: id });
    }
    assert.equal((await h.sh(id, "cat ~/marker")).stdout, "kept\n");
    await h.client.destroySandbox({ sandboxId: id });
    await h.noLeaks();
  });
});
