/**
 * Per-sandbox egress rules on real VMs. The "internet" is a namespace of the
 * test's own behind a veth pair, holding two stand-in hosts (A and B, from
 * the 198.18.0.0/15 benchmark range) served by one HTTP server; the agent is
 * told that veth is its egress interface. No traffic reaches real addresses.
 * Needs root and the image (`./wrenn image build`).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ConnectError } from "@connectrpc/connect";
import { Code } from "@connectrpc/connect";
import { runCommand } from "@wrenn/shared/command.ts";
import { until } from "@wrenn/shared/testing/until.ts";
import { AgentHarness, connectCode, vmSkipReason } from "./agent-harness.ts";

const h = new AgentHarness("we");
const NS = `${h.prefix}-inet`;
const HOST_END = `${h.prefix}-in0`;
const NS_END = `${h.prefix}-in1`;
const HOST_IP = "198.18.20.1";
const NS_IP = "198.18.20.2";
const A = "198.18.21.1";
const B = "198.18.21.2";
const PORT = 8080;

const skip = vmSkipReason("host-agent egress tests");
h.configure({ egressInterface: HOST_END });

let server: ChildProcess | undefined;
/** What the stand-in hosts serve (outside the harness's root, whose name marks leaks). */
let www = "";

const ip = (...args: string[]) => runCommand("ip", args);
const inNs = (...args: string[]) => ip("netns", "exec", NS, ...args);

async function makeInternet(): Promise<void> {
  await removeInternet(); // what a crashed earlier run left
  await ip("netns", "add", NS);
  await ip("link", "add", HOST_END, "type", "veth", "peer", "name", NS_END, "netns", NS);
  await ip("addr", "add", `${HOST_IP}/30`, "dev", HOST_END);
  await ip("link", "set", HOST_END, "up");
  await inNs("ip", "addr", "add", `${NS_IP}/30`, "dev", NS_END);
  await inNs("ip", "link", "set", NS_END, "up");
  await inNs("ip", "link", "set", "lo", "up");
  await inNs("ip", "addr", "add", `${A}/32`, "dev", "lo");
  await inNs("ip", "addr", "add", `${B}/32`, "dev", "lo");
  // Deleted with the link: the route goes when HOST_END does.
  await ip("route", "add", `${A}/32`, "via", NS_IP, "dev", HOST_END);
  await ip("route", "add", `${B}/32`, "via", NS_IP, "dev", HOST_END);
  www = await mkdtemp(join(tmpdir(), "wrenn-egress-www-"));
  // Slow to download at a limited rate: a connection that stays open.
  await writeFile(join(www, "big"), Buffer.alloc(4 * 1024 * 1024, 1));
  server = spawn(
    "ip",
    ["netns", "exec", NS, "python3", "-m", "http.server", String(PORT), "--bind", "0.0.0.0"],
    { stdio: "ignore", cwd: www },
  );
  // Listening once the namespace answers on A.
  for (let i = 0; ; i++) {
    const probe = await runCommand("curl", [
      "-s",
      "-o",
      "/dev/null",
      "-m",
      "1",
      `http://${A}:${PORT}/`,
    ]).catch(() => null);
    if (probe) break;
    if (i > 100) throw new Error("the stand-in hosts' HTTP server did not start");
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function removeInternet(): Promise<void> {
  server?.kill("SIGKILL");
  server = undefined;
  const pids = await ip("netns", "pids", NS).then(
    (r) => r.stdout.split("\n").filter(Boolean),
    () => [],
  );
  for (const pid of pids) {
    try {
      process.kill(Number(pid), "SIGKILL");
    } catch {
      // Gone already.
    }
  }
  await ip("link", "del", HOST_END).catch(() => undefined);
  await ip("netns", "del", NS).catch(() => undefined);
  if (www) await rm(www, { recursive: true, force: true });
}

describe("egress rules per sandbox", { skip, concurrency: false, timeout: 600_000 }, () => {
  before(async () => {
    await h.setUp();
    await makeInternet();
    h.allowed.netns.push(NS);
    h.allowed.links.push(HOST_END);
    await h.start();
  });

  after(async () => {
    try {
      await h.agent?.shutdown();
    } finally {
      await removeInternet();
      await h.tearDown();
    }
  });

  /** Which of A and B the sandbox reaches now, as "A B" with "-" for blocked. */
  async function reach(id: string): Promise<string> {
    const res = await h.sh(
      id,
      `for t in ${A} ${B}; do curl -s -m 5 -o /dev/null -w '%{http_code} ' http://$t:${PORT}/; done`,
      60,
    );
    const [a, b] = res.stdout.trim().split(/\s+/);
    return `${a === "200" ? "A" : "-"} ${b === "200" ? "B" : "-"}`;
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
      const rc = await until("the open download to end", 30_000, async () => {
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
