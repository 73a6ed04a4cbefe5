import { runCommand } from "@wrenn/shared/command.ts";

/**
 * Why this host cannot run the network tests (root, namespaces, nftables),
 * or null: a probe namespace named with the caller's prefix is made and
 * removed.
 */
export async function networkCapabilityProblem(prefix: string): Promise<string | null> {
  if (process.getuid?.() !== 0) return "needs root (network namespaces, veth, nftables)";
  const probe = `${prefix}-probe-${process.pid}`;
  try {
    await runCommand("nft", ["--version"]);
    await runCommand("ip", ["netns", "add", probe]);
    await runCommand("ip", ["netns", "del", probe]);
    return null;
  } catch (err) {
    await runCommand("ip", ["netns", "del", probe]).catch(() => undefined);
    return `network namespaces or nftables unusable here (apt-get install iproute2 nftables): ${err instanceof Error ? err.message : String(err)}`;
  }
}
