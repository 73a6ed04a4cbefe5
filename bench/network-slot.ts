/**
 * Network slot setup + teardown: the manager's batched path (one `ip -batch`
 * on the host, one shell in the namespace) against a baseline measured in
 * the same run that spawns one process per step, as a straightforward
 * implementation would. Needs root; prints a ratio (lower is better).
 *
 *   node_modules/.bin/node bench/network-slot.ts [rounds]
 */
import { runCommand } from "@wrenn/shared/command.ts";
import { createLogger } from "@wrenn/shared/log.ts";
import { createNetworkManager } from "@wrenn/host-agent/network/netns-network.ts";
import { slotAddresses, slotNames } from "@wrenn/host-agent/network/addresses.ts";
import { hostSlotBatch, namespaceScript } from "@wrenn/host-agent/network/rules.ts";

const PREFIX = "wnb";
const INDEX = 3001;
const rounds = Number(process.argv[2] ?? 20);

if (process.getuid?.() !== 0) {
  console.warn("network-slot bench: SKIPPED, needs root");
  process.exit(0);
}

/** The same work as the manager, one spawned process per step. */
async function naiveSlot(): Promise<void> {
  const { netns, hostVeth } = slotNames(PREFIX, INDEX);
  const addresses = slotAddresses(INDEX);
  for (const line of hostSlotBatch(netns, hostVeth, addresses)) {
    await runCommand("ip", line.split(" "));
  }
  const script = namespaceScript(PREFIX, addresses);
  const between = (start: string, end: string) =>
    script.slice(script.indexOf(start) + start.length + 1, script.indexOf(`\n${end}\n`));
  await runCommand("ip", ["netns", "exec", netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  for (const line of between("<<'WRENN_IP'", "WRENN_IP").split("\n")) {
    await runCommand("ip", ["-n", netns, ...line.split(" ")]);
  }
  await runCommand("ip", ["netns", "exec", netns, "nft", "-f", "-"], {
    input: between("<<'WRENN_NFT'", "WRENN_NFT"),
  });
  await runCommand("ip", ["link", "del", hostVeth]);
  await runCommand("ip", ["netns", "del", netns]);
}

const net = createNetworkManager({
  prefix: PREFIX,
  firstIndex: INDEX,
  egressInterface: "lo",
  log: createLogger("bench", "warn"),
});
const acquireMs: number[] = [];
async function managedSlot(): Promise<void> {
  const start = performance.now();
  const slot = await net.acquire();
  acquireMs.push(performance.now() - start);
  await net.release(slot);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

async function time(fn: () => Promise<void>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

try {
  await managedSlot(); // loads the host table once, outside the measurement
  acquireMs.length = 0;
  const managed: number[] = [];
  const naive: number[] = [];
  for (let i = 0; i < rounds; i++) {
    managed.push(await time(managedSlot));
    naive.push(await time(naiveSlot));
  }
  const m = median(managed);
  const b = median(naive);
  console.log(
    `network slot setup+teardown, median of ${rounds}: batched ${m.toFixed(1)} ms, ` +
      `one process per step ${b.toFixed(1)} ms, ratio ${(m / b).toFixed(2)} ` +
      `(batched setup alone ${median(acquireMs).toFixed(1)} ms)`,
  );
} finally {
  await net.removeHostRules();
}
