import { Command, CommanderError } from "commander";
import { WrennApiError } from "../../sdk/src/errors.ts";
import { isWrennError, messageOf } from "@wrenn/shared/errors.ts";
import pkg from "../package.json" with { type: "json" };
import { registerDaemons } from "./program/daemons.ts";
import { registerUserCommands } from "./program/user.ts";

/** The command path the user typed (`sandbox exec`), for error lines. */
function commandPath(program: Command, argv: string[]): string {
  const names: string[] = [];
  let cmd: Command = program;
  for (const word of argv) {
    const next = cmd.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (!next) break;
    names.push(next.name());
    cmd = next;
  }
  return names.join(" ");
}

function program(): Command {
  const p = new Command("wrenn")
    .description("Self-hosted microVM sandboxes that speak E2B's protocol")
    .version(pkg.version, "-V, --version", "print the version")
    .enablePositionalOptions()
    .showSuggestionAfterError(true)
    .configureOutput({ outputError: () => {} })
    .exitOverride();
  registerDaemons(p);
  registerUserCommands(p);
  return p;
}

/** Every failure is one line: `wrenn <command>: <what> (<code>)`, and a hint where it helps. */
async function main(argv: string[]): Promise<number> {
  const p = program();
  const path = commandPath(p, argv);
  const prefix = path ? `wrenn ${path}` : "wrenn";
  try {
    await p.parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === "commander.helpDisplayed" || err.code === "commander.version") return 0;
      if (err.code === "commander.help" || err.code === "commander.executeSubCommandAsync")
        return err.exitCode;
      const what = err.message.replace(/^error: /, "").replace(/\s*\n\s*/g, " ");
      process.stderr.write(`${prefix}: ${what} (see '${prefix} --help')\n`);
      return 2;
    }
    if ((err as NodeJS.ErrnoException).code === "EPIPE") return SIGPIPE_EXIT;
    const code = isWrennError(err) || err instanceof WrennApiError ? ` (${err.code})` : "";
    // API answers are one line; a build's failure keeps the command output it quotes.
    const text =
      err instanceof WrennApiError ? err.message.replace(/\s*\n\s*/g, " ") : messageOf(err);
    process.stderr.write(`${prefix}: ${text}${code}\n`);
    if (process.env.WRENN_DEBUG) console.error(err);
    return 1;
  }
}

/** What a process killed by SIGPIPE exits with, as `wrenn sb exec ID -- yes | head` expects. */
const SIGPIPE_EXIT = 141;

// A reader that went away (`| head`) is not an error to report, only a reason to stop.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(SIGPIPE_EXIT);
  throw err;
});

process.exitCode = await main(process.argv.slice(2));
// The abandoned download may still hold a socket open; nothing is left to write.
if (process.exitCode === SIGPIPE_EXIT) process.exit(SIGPIPE_EXIT);
