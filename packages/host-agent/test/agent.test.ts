/**
 * The host agent end to end, on real parts: QEMU VMs booted from the
 * `minimal` template, network namespaces, qcow2 disks, envd in the guest.
 * Needs root and the image (`./wrenn image build`, which `npm test` runs).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { once } from "node:events";
import type { IncomingMessage } from "node:http";
import { Code, ConnectError } from "@connectrpc/connect";
import { SandboxState } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { runCommand } from "@wrenn/shared/command.ts";
import { ENVD_PORT } from "@wrenn/shared/sandbox-proxy.ts";
import { GUEST_NODE_FLAGS, GUEST_TCG_NODE_FLAGS } from "../src/image/store.ts";
import { AgentHarness, connectCode, vmSkipReason } from "./agent-harness.ts";

const PREFIX = new AgentHarness("wa").prefix;
const UPSTREAM_NS = `${PREFIX}-upstream`;
// Public-looking (RFC 5737) and routed nowhere real: private ranges are closed to sandboxes.
const UPSTREAM_HOST = "203.0.113.253";
const UPSTREAM_PEER = "203.0.113.254";

const skip = vmSkipReason("host-agent end-to-end tests");
const h = new AgentHarness("wa", { egressInterface: `${PREFIX}-up0` });

/** An "outside" host for egress tests: a namespace routed from the host, never the real network. */
async function makeUpstream(): Promise<void> {
  await removeUpstream(); // a crashed earlier run's
  await runCommand("ip", ["netns", "add", UPSTREAM_NS]);
  await runCommand("ip", [
    "link",
    "add",
    `${PREFIX}-up0`,
    "type",
    "veth",
    "peer",
    "name",
    `${PREFIX}-up1`,
  ]);
  await runCommand("ip", ["link", "set", `${PREFIX}-up1`, "netns", UPSTREAM_NS]);
  await runCommand("ip", ["addr", "add", `${UPSTREAM_HOST}/30`, "dev", `${PREFIX}-up0`]);
  await runCommand("ip", ["link", "set", `${PREFIX}-up0`, "up"]);
  const inNs = (...args: string[]) => runCommand("ip", ["netns", "exec", UPSTREAM_NS, ...args]);
  await inNs("ip", "addr", "add", `${UPSTREAM_PEER}/30`, "dev", `${PREFIX}-up1`);
  await inNs("ip", "link", "set", `${PREFIX}-up1`, "up");
  await inNs("ip", "link", "set", "lo", "up");
}

async function removeUpstream(): Promise<void> {
  await runCommand("ip", ["link", "del", `${PREFIX}-up0`]).catch(() => undefined);
  await runCommand("ip", ["netns", "del", UPSTREAM_NS]).catch(() => undefined);
}

describe("host agent with real VMs", { skip, concurrency: false }, () => {
  before(async () => {
    await h.setUp();
    await makeUpstream();
    h.allowed.netns.push(UPSTREAM_NS);
    h.allowed.links.push(`${PREFIX}-up0`);
    await h.start();
  });

  after(async () => {
    await h.agent?.shutdown();
    await removeUpstream();
    await h.tearDown();
  });

  const client = () => h.client;
  const create = (...a: Parameters<AgentHarness["create"]>) => h.create(...a);
  const sh = (...a: Parameters<AgentHarness["sh"]>) => h.sh(...a);
  const sandboxId = () => h.newId();
  const noLeaks = () => h.noLeaks();

  test("create minimal → exec echo hello → destroy", async () => {
    const id = sandboxId();
    const started = performance.now();
    const sb = await create(id);
    const createdMs = performance.now() - started;
    assert.equal(sb?.state, SandboxState.RUNNING);
    const res = await client().exec({
      sandboxId: id,
      cmd: "echo",
      args: ["hello"],
      timeoutSec: 30,
    });
    console.log(
      `create → first exec: ${Math.round(performance.now() - started)} ms (create ${Math.round(createdMs)} ms)`,
    );
    assert.equal(Buffer.from(res.stdout).toString(), "hello\n");
    assert.equal(res.exitCode, 0);
    // Under TCG the guest runs without ASLR (vmm/qemu/args.ts): every process start depends on it.
    const aslr = await sh(id, "cat /proc/sys/kernel/randomize_va_space");
    // (Not /dev/kvm's presence: some hosts have one KVM cannot boot a guest on.)
    assert.equal(aslr.stdout.trim(), h.agent.manager.accel === "kvm" ? "2" : "0");
    // And envd runs on V8's interpreter alone (GUEST_TCG_NODE_FLAGS), its flags before the image's own.
    const envd = await sh(
      id,
      `for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null); case "$c" in node*envd.cjs*) echo "$c";; esac; done`,
    );
    assert.ok(
      envd.stdout.includes(` ${GUEST_NODE_FLAGS.join(" ")} /opt/wrenn/envd/envd.cjs `),
      envd.stdout,
    );
    const tcgFlags = `node ${GUEST_TCG_NODE_FLAGS.join(" ")} ${GUEST_NODE_FLAGS.join(" ")} `;
    assert.equal(envd.stdout.includes(tcgFlags), h.agent.manager.accel === "tcg", envd.stdout);
    const failing = await sh(id, "echo oops >&2; exit 3");
    assert.equal(failing.exitCode, 3);
    assert.equal(failing.stderr, "oops\n");
    const list = await client().listSandboxes({});
    assert.deepEqual(
      list.sandboxes.map((s) => [s.sandboxId, s.state]),
      [[id, SandboxState.RUNNING]],
    );
    await client().pingSandbox({ sandboxId: id });
    await client().destroySandbox({ sandboxId: id });
    await noLeaks();
  });

  test("three sandboxes at once: own networks, no reach between them, egress through NAT", async () => {
    const ids = [sandboxId(), sandboxId(), sandboxId()];
    // The "outside": a server in the upstream namespace that says who called.
    const server = runCommand("ip", [
      "netns",
      "exec",
      UPSTREAM_NS,
      "timeout",
      "120",
      "python3",
      "-c",
      `import http.server as h
class H(h.BaseHTTPRequestHandler):
    def do_GET(s):
        b=s.client_address[0].encode(); s.send_response(200); s.send_header("content-length",str(len(b))); s.end_headers(); s.wfile.write(b)
    def log_message(s,*a): pass
h.HTTPServer(("${UPSTREAM_PEER}",8080),H).serve_forever()`,
    ]).catch(() => undefined);
    try {
      const boxes = await Promise.all(ids.map((id) => create(id)));
      const addresses = boxes.map((b) => b?.envdAddress.split(":")[0]);
      assert.equal(new Set(addresses).size, 3, `distinct host addresses: ${addresses.join(", ")}`);
      for (const [i, id] of ids.entries()) {
        // Every guest has the same address inside its slot.
        const ip = await sh(id, "ip -4 -o addr show eth0 | awk '{print $4}'");
        assert.equal(ip.stdout.trim(), "169.254.0.21/30");
        for (const [j, other] of addresses.entries()) {
          if (i === j) continue;
          const probe = await sh(
            id,
            `curl -s -m 2 -o /dev/null -w '%{http_code}' http://${other}:49983/health; echo " rc=$?"`,
          );
          assert.match(
            probe.stdout,
            /rc=(7|28)/,
            `sandbox ${i} reached sandbox ${j}: ${probe.stdout}`,
          );
        }
        const egress = await sh(id, `curl -s -m 10 http://${UPSTREAM_PEER}:8080/`);
        assert.equal(egress.exitCode, 0, `egress failed: ${egress.stderr}`);
        assert.equal(egress.stdout, UPSTREAM_HOST, "the outside sees the host's address (NAT)");
      }
    } finally {
      await Promise.all(
        ids.map((id) =>
          client()
            .destroySandbox({ sandboxId: id })
            .catch(() => undefined),
        ),
      );
      await runCommand("ip", ["netns", "pids", UPSTREAM_NS]).then(({ stdout }) =>
        stdout
          .split("\n")
          .filter(Boolean)
          .forEach((p) => process.kill(Number(p), "SIGKILL")),
      );
      await server;
    }
    await noLeaks();
  });

  test("disk_size_mb reaches the guest; files through the agent, 256 MiB streamed", async () => {
    const id = sandboxId();
    await create(id, { diskSizeMb: 4096 });
    try {
      const df = await sh(id, "df -k --output=size / | tail -1");
      const sizeMb = Number(df.stdout.trim()) / 1024;
      assert.ok(sizeMb > 3700 && sizeMb <= 4096, `df / reports ${sizeMb} MiB for a 4096 MiB disk`);

      await client().writeFile({
        sandboxId: id,
        path: "/tmp/small.txt",
        content: Buffer.from("hi\n"),
      });
      const back = await client().readFile({ sandboxId: id, path: "/tmp/small.txt" });
      assert.equal(Buffer.from(back.content).toString(), "hi\n");

      // 256 MiB through the agent's proxy hop to envd's /files, both ways, as
      // the control plane's REST file API sends them (the upload chunked).
      const chunk = 1024 * 1024;
      const total = 256;
      const hash = createHash("sha256");
      const block = (i: number) => createHash("sha512").update(String(i)).digest().subarray(0, 64);
      const files = (method: string, headers: Record<string, string> = {}) => {
        const req = h.agent.hop.request(id, ENVD_PORT, {
          method,
          path: "/files?path=%2Fhome%2Fuser%2Fbig.bin&username=user",
          headers,
        });
        const answer = new Promise<IncomingMessage>((resolve, reject) => {
          req.once("response", resolve);
          req.once("error", reject);
        });
        return { req, answer };
      };
      const up = files("POST", { "content-type": "application/octet-stream" });
      for (let i = 0; i < total; i++) {
        const data = Buffer.alloc(chunk, block(i));
        hash.update(data);
        if (!up.req.write(data)) await once(up.req, "drain");
      }
      up.req.end();
      const written = await up.answer;
      const answerText = Buffer.concat(await written.toArray()).toString();
      assert.equal(written.statusCode, 200, answerText);
      const expected = hash.digest("hex");
      const inGuest = await sh(id, "sha256sum /home/user/big.bin | cut -d' ' -f1", 120);
      assert.equal(inGuest.stdout.trim(), expected);
      const down = files("GET");
      down.req.end();
      const read = await down.answer;
      assert.equal(read.statusCode, 200);
      assert.equal(read.headers["content-length"], String(total * chunk));
      const readHash = createHash("sha256");
      let got = 0;
      for await (const c of read as AsyncIterable<Buffer>) {
        readHash.update(c);
        got += c.length;
      }
      assert.equal(got, total * chunk);
      assert.equal(readHash.digest("hex"), expected);

      const missing = await client()
        .readFile({ sandboxId: id, path: "/nope" })
        .catch((e: unknown) => e);
      assert.equal(connectCode(missing), Code.NotFound);
    } finally {
      await client().destroySandbox({ sandboxId: id });
    }
    await noLeaks();
  });

  test("bad input is refused with the right code and leaves nothing behind", async () => {
    const bad = await client()
      .createSandbox({ sandboxId: "Bad-Id" })
      .catch((e: unknown) => e);
    assert.equal(connectCode(bad), Code.InvalidArgument);
    const huge = await client()
      .createSandbox({ sandboxId: sandboxId(), memoryMb: 10_000_000 })
      .catch((e: unknown) => e);
    assert.equal(connectCode(huge), Code.InvalidArgument);
    const noTemplate = await client()
      .createSandbox({ sandboxId: sandboxId(), template: "does-not-exist" })
      .catch((e: unknown) => e);
    assert.equal(connectCode(noTemplate), Code.NotFound);
    const unknown = await client()
      .exec({ sandboxId: "nosuchsandbox", cmd: "true" })
      .catch((e: unknown) => e);
    assert.equal(connectCode(unknown), Code.NotFound);
    const noCmd = await client()
      .exec({ sandboxId: "nosuchsandbox", cmd: "" })
      .catch((e: unknown) => e);
    assert.equal(connectCode(noCmd), Code.InvalidArgument);
    const destroyUnknown = await client()
      .destroySandbox({ sandboxId: "nosuchsandbox" })
      .catch((e: unknown) => e);
    assert.equal(connectCode(destroyUnknown), Code.NotFound);
    await noLeaks();
  });

  test("the VMM killed mid-create gives a clean error and leaks nothing", async () => {
    const id = sandboxId();
    const creating = create(id).catch((e: unknown) => e);
    process.kill(await h.vmmPid(id), "SIGKILL");
    const err = await creating;
    assert.ok(err instanceof ConnectError, `create should fail, got ${String(err)}`);
    assert.equal(err.code, Code.Unavailable, err.message);
    await noLeaks();
  });

  test("the VMM killed mid-exec gives a clean error; the sandbox is reported failed", async () => {
    const id = sandboxId();
    await create(id);
    const running = sh(id, "sleep 30").catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 500));
    process.kill(await h.vmmPid(id), "SIGKILL");
    const err = await running;
    assert.ok(err instanceof ConnectError, `exec should fail, got ${JSON.stringify(err)}`);
    assert.equal(err.code, Code.Unavailable, err.message);
    let state: SandboxState | undefined;
    for (let i = 0; i < 50 && state !== SandboxState.FAILED; i++) {
      state = (await client().listSandboxes({})).sandboxes.find((s) => s.sandboxId === id)?.state;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(state, SandboxState.FAILED);
    const after = await sh(id, "true").catch((e: unknown) => e);
    assert.equal(connectCode(after), Code.FailedPrecondition);
    await client().destroySandbox({ sandboxId: id });
    await noLeaks();
  });

  test("an agent restarted with a sandbox running re-adopts it", async () => {
    const id = sandboxId();
    await create(id);
    await sh(id, "echo kept > /tmp/state");
    await h.agent.close();
    await h.start();
    const list = await client().listSandboxes({});
    assert.deepEqual(
      list.sandboxes.map((s) => [s.sandboxId, s.state]),
      [[id, SandboxState.RUNNING]],
    );
    assert.equal((await sh(id, "cat /tmp/state")).stdout, "kept\n");
    await client().destroySandbox({ sandboxId: id });
    await noLeaks();
  });

  test("the TTL reaper auto-pauses an idle sandbox and reports it", async () => {
    const id = sandboxId();
    await create(id, { timeoutSec: 1 });
    const state = async () =>
      (await client().listSandboxes({})).sandboxes.find((s) => s.sandboxId === id)?.state;
    for (let i = 0; i < 150 && (await state()) !== SandboxState.PAUSED; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(await state(), SandboxState.PAUSED, "not paused after its TTL");
    assert.ok((await client().listSandboxes({})).autoPausedSandboxIds.includes(id));
    await client().destroySandbox({ sandboxId: id });
    await noLeaks();
  });

  test("a user's pause racing the TTL reaper: the sandbox ends paused, never destroyed", async () => {
    const id = sandboxId();
    await create(id);
    await sh(id, "echo kept > /home/user/f");
    const farFuture = Date.now() + 3_600_000;
    const manager = h.agent.manager;
    // The user's pause takes the sandbox's lock first; the reaper's pause
    // then finds it paused. A second reaper pass must not pause again.
    await Promise.all([manager.pause(id), manager.reap(farFuture), manager.reap(farFuture)]);
    const listed = await client().listSandboxes({});
    assert.equal(listed.sandboxes.find((s) => s.sandboxId === id)?.state, SandboxState.PAUSED);
    await client().resumeSandbox({ sandboxId: id });
    assert.equal((await sh(id, "cat /home/user/f")).stdout, "kept\n");
    await client().destroySandbox({ sandboxId: id });
    await noLeaks();
  });
});
