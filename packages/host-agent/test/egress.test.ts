/**
 * Per-sandbox egress rules on real VMs. The "internet" is a namespace of the
 * test's own behind a veth pair, holding two stand-in hosts (A and B, from
 * RFC 5737's documentation ranges) served by one HTTP server; the agent is
 * told that veth is its egress interface. No traffic reaches real addresses.
 * Needs root and the image (`./wrenn image build`).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { ConnectError } from "@connectrpc/connect";
import { Code } from "@connectrpc/connect";
import { until } from "@wrenn/shared/testing/until.ts";
import { AgentHarness, connectCode, vmSkipReason } from "./agent-harness.ts";
import { StandInInternet } from "./stand-in-internet.ts";

const h = new AgentHarness("we");
const internet = new StandInInternet(h.prefix, 20);
const { a: A, b: B, port: PORT } = internet;

const skip = vmSkipReason("host-agent egress tests");
h.configure({ egressInterface: internet.hostEnd });

describe("egress rules per sandbox", { skip, concurrency: false, timeout: 600_000 }, () => {
  before(async () => {
    await h.setUp();
    await internet.start();
    h.allowed.netns.push(internet.netns);
    h.allowed.links.push(internet.hostEnd);
    await h.start();
  });

  after(async () => {
    try {
      await h.agent?.shutdown();
    } finally {
      await internet.stop();
      await h.tearDown();
    }
  });

  /** Which of A and B the sandbox reaches now, as "A B" with "-" for blocked. */
  async function reach(id: string): Promise<string> {
    return StandInInternet.verdict((await h.sh(id, internet.probeScript(), 60)).stdout);
  }

  const update = (sandboxId: string, allowOut: string[], denyOut: string[]) =>
    h.client.updateNetwork({ sandboxId, network: { allowOut, denyOut } });

  test("no rules reach both; deny, allow-over-deny, updates at once, across restart and pause/resume", async () => {
    const open = h.newId();
    const ruled = h.newId();
    try {
      await h.create(open);
      assert.equal(await reach(open), "A B", "no rules: both");
      await h.client.destroySandbox({ sandboxId: open });

      await h.client.createSandbox({
        sandboxId: ruled,
        template: "minimal",
        vcpus: 1,
        memoryMb: 256,
        timeoutSec: 600,
        network: { allowOut: [], denyOut: [A] },
      });
      assert.equal(await reach(ruled), "- B", "deny_out [A]");

      // A download from B, kept slow so it is still open when B is denied.
      await h.sh(
        ruled,
        `nohup sh -c 'curl -s --limit-rate 16k -m 200 -o /dev/null http://${B}:${PORT}/big; echo $? > /tmp/rc' >/dev/null 2>&1 &`,
      );
      await new Promise((r) => setTimeout(r, 2000));
      assert.equal((await h.sh(ruled, "cat /tmp/rc 2>/dev/null")).stdout, "", "still downloading");

      const denied = performance.now();
      await update(ruled, [A], ["0.0.0.0/0"]);
      assert.equal(await reach(ruled), "A -", "deny_out [0.0.0.0/0], allow_out [A]: A only");
      // The open connection to B is cut at its next packet, not left to finish.
      // Bounded generously: on a loaded TCG host each probe is itself an exec of seconds.
      const rc = await until("the open download to end", 120_000, async () => {
        const out = (await h.sh(ruled, "cat /tmp/rc 2>/dev/null")).stdout.trim();
        return out === "" ? undefined : out;
      });
      console.log(
        `open connection to a newly denied host ended with curl exit ${rc} after ${Math.round(performance.now() - denied)} ms`,
      );
      assert.notEqual(rc, "0", "the download finished although its host was denied");

      // The namespace keeps its rules while the agent is away; the record keeps them on disk.
      await h.agent.close();
      await h.start();
      assert.equal(await reach(ruled), "A -", "after an agent restart");

      await h.client.pauseSandbox({ sandboxId: ruled });
      await h.client.resumeSandbox({ sandboxId: ruled });
      assert.equal(await reach(ruled), "A -", "after pause and resume (a new slot)");

      // Paused: stored, applied by the resume.
      await h.client.pauseSandbox({ sandboxId: ruled });
      await update(ruled, [], [`${A}/32`]);
      await h.client.resumeSandbox({ sandboxId: ruled });
      assert.equal(await reach(ruled), "- B", "rules changed while paused");

      await update(ruled, [], []);
      assert.equal(await reach(ruled), "A B", "rules cleared");
    } finally {
      for (const id of [open, ruled]) {
        await h.client.destroySandbox({ sandboxId: id }).catch(() => undefined);
      }
    }
    await h.noLeaks();
  });

  test("bad entries are refused naming them; the sandbox keeps its rules", async () => {
    const badCreate = await h.client
      .createSandbox({
        sandboxId: h.newId(),
        template: "minimal",
        network: { allowOut: [], denyOut: ["198.18.0.0/15", "300.1.1.1"] },
      })
      .catch((e: unknown) => e);
    assert.equal(connectCode(badCreate), Code.InvalidArgument);
    assert.match(
      (badCreate as ConnectError).rawMessage,
      /network\.denyOut\.1: '300\.1\.1\.1' is not/,
    );

    const id = h.newId();
    try {
      await h.client.createSandbox({
        sandboxId: id,
        template: "minimal",
        vcpus: 1,
        memoryMb: 256,
        network: { allowOut: [], denyOut: [B] },
      });
      const badCidr = await update(id, ["10.0.0.0/33"], []).catch((e: unknown) => e);
      assert.equal(connectCode(badCidr), Code.InvalidArgument);
      assert.match((badCidr as ConnectError).rawMessage, /'10\.0\.0\.0\/33'/);
      const unresolved = await update(id, [], ["nowhere.invalid"]).catch((e: unknown) => e);
      assert.equal(connectCode(unresolved), Code.InvalidArgument);
      assert.match((unresolved as ConnectError).rawMessage, /'nowhere\.invalid' does not resolve/);
      assert.equal(await reach(id), "A -", "the previous rules still hold");
    } finally {
      await h.client.destroySandbox({ sandboxId: id }).catch(() => undefined);
    }
    const unknown = await update("nosuchsandbox", [], []).catch((e: unknown) => e);
    assert.equal(connectCode(unknown), Code.NotFound);
    await h.noLeaks();
  });
});
