/**
 * The private-range boundary on a real VM. A stand-in LAN — a namespace of
 * this test's own behind its own veth (not the egress interface, as a LAN
 * on a second NIC), holding 192.168.77.1 and 172.16.77.1 — and a stand-in
 * internet (RFC 5737 addresses behind the egress interface). No traffic
 * reaches a real private or public address. Needs root and the image.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { runCommand } from "@wrenn/shared/command.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import { AgentHarness, vmSkipReason } from "./agent-harness.ts";
import { StandInInternet } from "./stand-in-internet.ts";
import { startHostAgent } from "../src/agent.ts";

const h = new AgentHarness("wp");
const internet = new StandInInternet(h.prefix, 10);
const skip = vmSkipReason("host-agent private-range tests");
h.configure({ egressInterface: internet.hostEnd });

const PORT = 8080;
const LAN = "192.168.77.1";
const LAN_HOST_END = "192.168.77.2";
/** A second private host on the same LAN, in a range the operator never opens here. */
const LAN2 = "172.16.77.1";
/**
 * A private address out of the egress interface (a LAN behind the default
 * route, the usual case): the stand-in internet's server answers on it too.
 */
const UPLINK_PRIVATE = "10.77.0.1";

/** A LAN host in a namespace of its own, behind a veth that is not the egress interface. */
class StandInLan {
  readonly netns = `${h.prefix}-lan`;
  readonly hostEnd = `${h.prefix}-ln0`;
  #server: ChildProcess | undefined;

  async start(): Promise<void> {
    await this.stop();
    const ip = (...args: string[]) => runCommand("ip", args);
    const inNs = (...args: string[]) => ip("-n", this.netns, ...args);
    await ip("netns", "add", this.netns);
    await ip(
      ...["link", "add", this.hostEnd, "type", "veth"],
      ...["peer", "name", "eth0", "netns", this.netns],
    );
    await ip("addr", "add", `${LAN_HOST_END}/30`, "dev", this.hostEnd);
    await ip("link", "set", this.hostEnd, "up");
    await inNs("addr", "add", `${LAN}/30`, "dev", "eth0");
    await inNs("link", "set", "eth0", "up");
    await inNs("link", "set", "lo", "up");
    await inNs("addr", "add", `${LAN2}/32`, "dev", "lo");
    // Goes with the link.
    await ip("route", "add", `${LAN2}/32`, "via", LAN, "dev", this.hostEnd);
    this.#server = spawn(
      "ip",
      ["netns", "exec", this.netns, "python3", "-m", "http.server", String(PORT)],
      { stdio: "ignore", cwd: "/" },
    );
    for (let i = 0; ; i++) {
      const ok = await runCommand("curl", [
        "-s",
        "-o",
        "/dev/null",
        "-m",
        "1",
        `http://${LAN}:${PORT}/`,
      ])
        .then(() => true)
        .catch(() => false);
      if (ok) break;
      if (i > 100) throw new Error("the stand-in LAN host's HTTP server did not start");
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async stop(): Promise<void> {
    this.#server?.kill("SIGKILL");
    this.#server = undefined;
    const pids = await runCommand("ip", ["netns", "pids", this.netns]).then(
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
    await runCommand("ip", ["link", "del", this.hostEnd]).catch(() => undefined);
    await runCommand("ip", ["netns", "del", this.netns]).catch(() => undefined);
  }
}

const lan = new StandInLan();

describe("sandboxes and private ranges", { skip, concurrency: false, timeout: 900_000 }, () => {
  before(async () => {
    await h.setUp();
    await internet.start();
    await lan.start();
    await runCommand("ip", [
      "-n",
      internet.netns,
      "addr",
      "add",
      `${UPLINK_PRIVATE}/32`,
      "dev",
      "lo",
    ]);
    // Goes with the link; the namespace answers ARP for its loopback address.
    await runCommand("ip", ["route", "add", `${UPLINK_PRIVATE}/32`, "dev", internet.hostEnd]);
    h.allowed.netns.push(internet.netns, lan.netns);
    h.allowed.links.push(internet.hostEnd, lan.hostEnd);
    await h.start();
  });

  after(async () => {
    try {
      await h.agent?.shutdown();
    } finally {
      await internet.stop();
      await lan.stop();
      // Asserts that nothing of this file is left: namespaces, links, the nft table, VMs.
      await h.tearDown();
    }
  });

  /** Each target's HTTP status ("000": unreachable) and how long curl took, in seconds. */
  async function reach(id: string): Promise<Record<string, { code: string; s: number }>> {
    const targets = { internet: internet.a, lan: LAN, lan2: LAN2, uplink: UPLINK_PRIVATE };
    const script = Object.values(targets)
      .map((t) => `curl -s -m 8 -o /dev/null -w '%{http_code}:%{time_total} ' http://${t}:${PORT}/`)
      .join("; ");
    const out = (await h.sh(id, `${script}; true`, 90)).stdout.trim().split(/\s+/);
    return Object.fromEntries(
      Object.keys(targets).map((name, i) => {
        const [code = "", s = "0"] = (out[i] ?? "").split(":");
        return [name, { code, s: Number(s) }];
      }),
    );
  }
  const codes = async (id: string) => {
    const r = await reach(id);
    return `internet ${r.internet!.code}, lan ${r.lan!.code}, lan2 ${r.lan2!.code}, uplink ${r.uplink!.code}`;
  };

  test("denied by default, a user's allowOut opens nothing, the operator's --allow-private opens only what it names", async () => {
    const id = h.newId();
    try {
      await h.create(id);
      const closed = await reach(id);
      assert.equal(closed.internet!.code, "200", "the stand-in internet is reachable");
      assert.equal(closed.lan!.code, "000", "the LAN host is not");
      assert.equal(closed.lan2!.code, "000");
      assert.equal(closed.uplink!.code, "000", "nor a private address behind the egress interface");
      // Refused, not dropped: the guest's connection fails at once rather than at curl's 8 s.
      assert.ok(closed.lan!.s < 4, `refused at once (${closed.lan!.s} s)`);
      // Its name servers are public ones (the internet reached above went through its gateway).
      const dns = (await h.sh(id, "awk '/^nameserver/ {print $2}' /etc/resolv.conf")).stdout;
      assert.deepEqual(dns.trim().split("\n"), ["8.8.8.8", "1.1.1.1"]);

      // The owner's allowOut is the sandbox's rule, not the host's: it opens no private range.
      await h.client.updateNetwork({
        sandboxId: id,
        network: { allowOut: [LAN, "172.16.0.0/12"], denyOut: ["0.0.0.0/0"] },
      });
      assert.equal(await codes(id), "internet 000, lan 000, lan2 000, uplink 000");
      await h.client.updateNetwork({ sandboxId: id, network: { allowOut: [LAN], denyOut: [] } });
      assert.equal(await codes(id), "internet 200, lan 000, lan2 000, uplink 000");

      // The operator opens the LAN's /24: a restarted agent (the VM keeps running) replaces the host table.
      await h.agent.close();
      h.configure({ allowPrivate: ["192.168.77.0/24"] });
      await h.start();
      assert.equal(
        await codes(id),
        "internet 200, lan 200, lan2 000, uplink 000",
        "only the named range opens",
      );

      // Within what the operator opened, the owner's own rules still hold.
      await h.client.updateNetwork({ sandboxId: id, network: { allowOut: [], denyOut: [LAN] } });
      assert.equal(await codes(id), "internet 200, lan 000, lan2 000, uplink 000");
      await h.client.updateNetwork({ sandboxId: id, network: { allowOut: [], denyOut: [] } });
      assert.equal(await codes(id), "internet 200, lan 200, lan2 000, uplink 000");
    } finally {
      await h.client.destroySandbox({ sandboxId: id }).catch(() => undefined);
    }
    await h.noLeaks();
  });

  test("the agent refuses an --allow-private entry outside the private ranges", async () => {
    for (const entry of ["8.8.8.0/24", "0.0.0.0/0", "lan.example"]) {
      await assert.rejects(
        startHostAgent({ listen: "127.0.0.1:0", dataDir: h.root, allowPrivate: [entry] }),
        (e: unknown) =>
          e instanceof WrennError &&
          e.code === "invalid_argument" &&
          e.message.startsWith(`--allow-private: '${entry}'`),
        entry,
      );
    }
  });
});
