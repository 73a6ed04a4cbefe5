import { Option, type Command } from "commander";
import { int, keyValue, sandboxId } from "./parsers.ts";

/** Sets the exit code a command's work decided (exec and shell pass the guest's on). */
function exitWith(code: number): void {
  process.exitCode = code;
}

const json = ["--json", "print JSON for scripts"] as const;

export function registerUserCommands(program: Command): void {
  program
    .command("login")
    .description(
      "store the API URL and key for the other commands (in $XDG_CONFIG_HOME/wrenn or " +
        "~/.config/wrenn, mode 0600); WRENN_API_URL and WRENN_API_KEY override it",
    )
    .option(
      "--api-url <url>",
      "the control plane (default $WRENN_API_URL or http://127.0.0.1:8080)",
    )
    .option("--api-key <key>", "the key (default: $WRENN_API_KEY, stdin, or a prompt)")
    .option(...json)
    .action(async (o: { apiUrl?: string; apiKey?: string; json?: boolean }) => {
      await (await import("../user/login.ts")).login(o);
    });
  program
    .command("logout")
    .description("forget the stored API URL and key")
    .option(...json)
    .action(async (o: { json?: boolean }) => {
      await (await import("../user/login.ts")).logout(o);
    });

  const sb = program
    .command("sandbox")
    .alias("sb")
    .description("create, list, enter, copy files to, pause, resume and remove sandboxes");
  const load = () => import("../user/sandbox.ts");

  sb.command("create")
    .description("create a sandbox and print its id")
    .option("-t, --template <name>", "the template to start from", "minimal")
    .option("--vcpus <n>", "virtual CPUs (1-32)", int(1, 32))
    .option("--memory <MiB>", "memory in MiB (128-262144)", int(128, 262144))
    .option("--disk <MiB>", "disk size in MiB (512-1048576)", int(512, 1048576))
    .option("--timeout <seconds>", "lifetime before it is paused (1-86400)", int(1, 86400))
    .option("-e, --env <KEY=VALUE>", "an environment variable (repeatable)", keyValue)
    .option("-m, --metadata <KEY=VALUE>", "a label kept with the sandbox (repeatable)", keyValue)
    .option(...json)
    .action(async (o) => (await load()).create(o));
  sb.command("ls")
    .alias("list")
    .description("list the team's sandboxes")
    .option(...json)
    .action(async (o) => (await load()).list(o));
  sb.command("info")
    .description("show one sandbox")
    .argument("<id>", "the sandbox", sandboxId)
    .option(...json)
    .action(async (id: string, o) => (await load()).info(id, o));
  sb.command("exec")
    .description("run a command in a sandbox, streaming its output; exits with its exit code")
    .argument("<id>", "the sandbox", sandboxId)
    .argument("<command...>", "the command and its arguments (after -- if they start with -)")
    .option("--timeout <seconds>", "how long it may run (1-3600, default 60)", int(1, 3600))
    .option("--cwd <dir>", "working directory")
    .option("-u, --user <user>", "the guest user to run as")
    .option("-e, --env <KEY=VALUE>", "an environment variable (repeatable)", keyValue)
    .option("--json", "wait, then print stdout, stderr and the exit code as JSON")
    .passThroughOptions()
    .action(async (id: string, argv: string[], o) =>
      exitWith(await (await load()).exec(id, argv, o)),
    );
  sb.command("shell")
    .description("an interactive shell in a sandbox (a PTY); exits with the shell's exit code")
    .argument("<id>", "the sandbox", sandboxId)
    .option("-u, --user <user>", "the guest user")
    .action(async (id: string, o: { user?: string }) =>
      exitWith(await (await import("../user/shell.ts")).shell(id, o)),
    );
  sb.command("cp")
    .description("copy a file into or out of a sandbox (ID:/path on one side; - is stdout)")
    .argument("<source>", "a local file or ID:/path")
    .argument("<destination>", "a local file (or -) or ID:/path")
    .option(...json)
    .action(async (src: string, dst: string, o) => (await load()).cp(src, dst, o));
  sb.command("pause")
    .description("pause a sandbox: memory and disk are kept, it stops using CPU")
    .argument("<id>", "the sandbox", sandboxId)
    .option(...json)
    .action(async (id: string, o) => (await load()).pause(id, o));
  sb.command("resume")
    .description("resume a paused sandbox where it was")
    .argument("<id>", "the sandbox", sandboxId)
    .option("--timeout <seconds>", "a new lifetime (1-86400)", int(1, 86400))
    .option(...json)
    .action(async (id: string, o) => (await load()).resume(id, o));
  sb.command("rm")
    .alias("kill")
    .description("destroy sandboxes and everything in them")
    .argument("<id...>", "the sandboxes", (v: string, prev: string[] = []) => [
      ...prev,
      sandboxId(v),
    ])
    .option(...json)
    .action(async (ids: string[], o) => (await load()).rm(ids, o));
  sb.command("logs")
    .description("the sandbox's log: its guest console (kernel, init and envd output)")
    .argument("<id>", "the sandbox", sandboxId)
    .option("-f, --follow", "keep printing what the guest writes (Ctrl-C stops)")
    .option(...json)
    .action(async (id: string, o) => (await load()).logs(id, o));
  sb.command("metrics")
    .description("CPU, memory and disk samples of a running sandbox")
    .argument("<id>", "the sandbox", sandboxId)
    .option(...json)
    .action(async (id: string, o) => (await load()).metrics(id, o));

  const tpl = program.command("template").description("list and remove templates");
  const loadTpl = () => import("../user/templates.ts");
  tpl
    .command("ls")
    .alias("list")
    .description("templates the team can create sandboxes from")
    .addOption(new Option("--type <type>", "only this type").choices(["base", "snapshot"]))
    .option(...json)
    .action(async (o) => (await loadTpl()).list(o));
  tpl
    .command("rm")
    .description("delete snapshot templates")
    .argument("<name...>", "the templates")
    .option(...json)
    .action(async (names: string[], o) => (await loadTpl()).remove(names, o));

  program
    .command("snapshot")
    .description("turn a sandbox into a template new sandboxes start from (it stays paused)")
    .argument("<sandbox>", "the sandbox", sandboxId)
    .argument("[name]", "the template's name (default: one is made up)")
    .option("--overwrite", "replace a template of that name")
    .option(...json)
    .action(async (id: string, name: string | undefined, o) =>
      (await loadTpl()).snapshot(id, name, o),
    );
}
