import { messageOf, isWrennError } from "@wrenn/shared/errors.ts";

/**
 * Each command lives in its own module under commands/ and is loaded only
 * when asked for, so `wrenn envd` does not pay for the host agent's imports.
 */
interface Command {
  summary: string;
  load: () => Promise<{ run: (argv: string[]) => Promise<void> }>;
}

const commands: Record<string, Command> = {
  up: {
    summary: "bring the platform up on this machine and show a sandbox running a command",
    load: () => import("./commands/up.ts"),
  },
  envd: {
    summary: "start the guest daemon on this machine (for testing)",
    load: () => import("./commands/envd.ts"),
  },
  setup: {
    summary: "install the host's system packages (QEMU, debootstrap, nftables, …) with apt",
    load: () => import("./commands/setup.ts"),
  },
  image: {
    summary: "build the guest kernel and the base template ('image build'), or show them",
    load: () => import("./commands/image.ts"),
  },
  "control-plane": {
    summary: "start the control plane (REST API): --port 8080, DATABASE_URL or an embedded PGlite",
    load: () => import("./commands/control-plane.ts"),
  },
  "host-agent": {
    summary: "start the host agent (root): --listen HOST:PORT --data-dir DIR",
    load: () => import("./commands/host-agent.ts"),
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  const lines = Object.entries(commands).map(
    ([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`,
  );
  return `usage: wrenn <command> [options]\n\ncommands:\n${lines.join("\n")}\n`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (command === undefined) {
    process.stderr.write(`wrenn: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  try {
    const mod = await command.load();
    await mod.run(rest);
    return 0;
  } catch (err) {
    const code = isWrennError(err) ? ` (${err.code})` : "";
    process.stderr.write(`wrenn ${name}: ${messageOf(err)}${code}\n`);
    if (process.env.WRENN_DEBUG) console.error(err);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
