/**
 * A stand-in "internet" for egress tests: a network namespace of the test's
 * own behind a veth pair, holding two stand-in hosts (A and B, addresses
 * from the documentation ranges of RFC 5737: public-looking, so the agent's
 * private-range boundary lets them through as it would a real public host,
 * yet routed nowhere real) served by one HTTP server. Give a
 * host agent `egressInterface: internet.hostEnd` and its sandboxes' traffic
 * leaves through it; no traffic reaches real addresses.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCommand } from "@wrenn/shared/command.ts";

const ip = (...args: string[]) => runCommand("ip", args);

export class StandInInternet {
  readonly netns: string;
  /** The host's end of the veth: the agent's egress interface. */
  readonly hostEnd: string;
  readonly a: string;
  readonly b: string;
  readonly port = 8080;
  readonly #nsEnd: string;
  readonly #hostIp: string;
  readonly #nsIp: string;
  #server: ChildProcess | undefined;
  /** What the stand-in hosts serve (outside any test root whose name marks leaks). */
  #www = "";

  /**
   * `prefix` names the namespace and links; `net` (0-30) picks the test's
   * own addresses in 203.0.113.0/24: the link 203.0.113.<8·net>/30 and the
   * hosts 203.0.113.<8·net+5, 8·net+6>, so tests running side by side never
   * share them (203.0.113.252/30 is agent.test.ts's upstream).
   */
  constructor(prefix: string, net: number) {
    if (!Number.isInteger(net) || net < 0 || net > 30) throw new Error(`net ${net} is not 0-30`);
    this.netns = `${prefix}-inet`;
    this.hostEnd = `${prefix}-in0`;
    this.#nsEnd = `${prefix}-in1`;
    this.#hostIp = `203.0.113.${8 * net + 1}`;
    this.#nsIp = `203.0.113.${8 * net + 2}`;
    this.a = `203.0.113.${8 * net + 5}`;
    this.b = `203.0.113.${8 * net + 6}`;
  }

  async start(): Promise<void> {
    await this.stop(); // what a crashed earlier run left
    const inNs = (...args: string[]) => ip("netns", "exec", this.netns, ...args);
    await ip("netns", "add", this.netns);
    await ip(
      "link",
      "add",
      this.hostEnd,
      "type",
      "veth",
      "peer",
      "name",
      this.#nsEnd,
      "netns",
      this.netns,
    );
    await ip("addr", "add", `${this.#hostIp}/30`, "dev", this.hostEnd);
    await ip("link", "set", this.hostEnd, "up");
    await inNs("ip", "addr", "add", `${this.#nsIp}/30`, "dev", this.#nsEnd);
    await inNs("ip", "link", "set", this.#nsEnd, "up");
    await inNs("ip", "link", "set", "lo", "up");
    await inNs("ip", "addr", "add", `${this.a}/32`, "dev", "lo");
    await inNs("ip", "addr", "add", `${this.b}/32`, "dev", "lo");
    // Deleted with the link: the routes go when hostEnd does.
    await ip("route", "add", `${this.a}/32`, "via", this.#nsIp, "dev", this.hostEnd);
    await ip("route", "add", `${this.b}/32`, "via", this.#nsIp, "dev", this.hostEnd);
    this.#www = await mkdtemp(join(tmpdir(), "wrenn-egress-www-"));
    // Slow to download at a limited rate: a connection that stays open.
    await writeFile(join(this.#www, "big"), Buffer.alloc(4 * 1024 * 1024, 1));
    this.#server = spawn(
      "ip",
      [
        "netns",
        "exec",
        this.netns,
        "python3",
        "-m",
        "http.server",
        String(this.port),
        "--bind",
        "0.0.0.0",
      ],
      { stdio: "ignore", cwd: this.#www },
    );
    // Listening once the namespace answers on A.
    for (let i = 0; ; i++) {
      const probe = await runCommand("curl", [
        "-s",
        "-o",
        "/dev/null",
        "-m",
        "1",
        `http://${this.a}:${this.port}/`,
      ]).catch(() => null);
      if (probe) break;
      if (i > 100) throw new Error("the stand-in hosts' HTTP server did not start");
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async stop(): Promise<void> {
    this.#server?.kill("SIGKILL");
    this.#server = undefined;
    const pids = await ip("netns", "pids", this.netns).then(
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
    await ip("link", "del", this.hostEnd).catch(() => undefined);
    await ip("netns", "del", this.netns).catch(() => undefined);
    if (this.#www) await rm(this.#www, { recursive: true, force: true });
    this.#www = "";
  }

  /** A shell loop for a sandbox: prints each host's HTTP status (000: unreachable) and exits 0. */
  probeScript(): string {
    return `for t in ${this.a} ${this.b}; do curl -s -m 5 -o /dev/null -w '%{http_code} ' http://$t:${this.port}/; done; true`;
  }

  /** "A B" with "-" for a blocked host, from `probeScript`'s output. */
  static verdict(output: string): string {
    const [a, b] = output.trim().split(/\s+/);
    return `${a === "200" ? "A" : "-"} ${b === "200" ? "B" : "-"}`;
  }
}
