import type { Command } from "commander";
import { ADMISSION_HELP } from "../commands/admission.ts";

/**
 * The platform's own commands keep their modules and their parseArgs: commander
 * declares the same options (for --help and for refusing unknown ones) and hands
 * the module the arguments as typed.
 */
type Runner = () => Promise<{ run: (argv: string[]) => Promise<void> }>;

/** The words after `path` on the command line, as the user typed them. */
function argsAfter(path: string[]): string[] {
  const argv = process.argv.slice(2);
  let at = -1;
  for (const word of path) at = argv.indexOf(word, at + 1);
  return argv.slice(at + 1);
}

function forward(cmd: Command, path: string[], load: Runner, prefix: string[] = []): Command {
  return cmd.allowExcessArguments(false).action(async () => {
    await (await load()).run([...prefix, ...argsAfter(path)]);
  });
}

/** Traffic into sandboxes: the flags of `up` and `control-plane` (see commands/traffic.ts). */
function withTraffic(cmd: Command): Command {
  return cmd
    .option(
      "--domain <domain>",
      "sandboxes' domain: <port>-<sandboxId>.<domain> reaches that port of that sandbox ($WRENN_DOMAIN)",
    )
    .option("--proxy-port <port>", "also serve the sandbox traffic proxy alone on this port")
    .option("--tls-cert <file>", "serve HTTPS with this certificate chain (PEM)")
    .option("--tls-key <file>", "the private key of --tls-cert (PEM)");
}

const OPEN_SIGNUP_HELP =
  "let anyone sign up; by default only the first user (the admin) and those an admin invites (POST /v1/invites)";

const TEAM_QUOTA_HELP =
  "what each team may hold unless an admin sets its own limits: sandboxes=N,vcpus=N,memory_mb=N,disk_mb=N (any of them; $WRENN_TEAM_QUOTA; default 100, 200, 409600, 4194304)";

const WARM_POOL_HELP =
  "warm sandboxes kept ready per template in use, so a create claims one instead of restoring it: one while the template is used, one per create in the last minute, at most N (default $WRENN_WARM_POOL or 2; 0 turns it off; each is an idle VM); then TEMPLATE=N sizes templates of their own, e.g. 2,python=6,big=0";

const NETWORK_POOL_HELP =
  "network slots kept built ahead so a create or resume need not build one (default $WRENN_NETWORK_POOL or 2; 0 turns it off)";

const STANDBY_VMMS_HELP =
  "VMMs kept started ahead so a resume need not wait for one (QEMU's start): for the machines of recent pauses and resumes, each on a network slot of its own (default $WRENN_STANDBY_VMMS or 2; 0 turns them off)";

const ALLOW_PRIVATE_HELP =
  "private ranges sandboxes may reach, e.g. 192.168.1.0/24,10.0.0.0/8 (repeatable; $WRENN_ALLOW_PRIVATE); by default none: no LAN, CGNAT, link-local or other non-public address";

export function registerDaemons(program: Command): void {
  forward(
    withTraffic(
      program
        .command("up")
        .description("bring the platform up on this machine and show a sandbox running a command")
        .option("--port <port>", "the API's port (default $WRENN_PORT or 8080)")
        .option("--host <address>", "the API's listen address", "127.0.0.1")
        .option("--agent-listen <host:port>", "the host agent's address", "127.0.0.1:7070")
        .option("--data-dir <dir>", "state and images (default $WRENN_DATA_DIR or /var/lib/wrenn)")
        .option("--skip-setup", "do not install host packages first")
        .option("--open-signup", OPEN_SIGNUP_HELP)
        .option("--team-quota <limits>", TEAM_QUOTA_HELP)
        .option("--overcommit-cpu <n>", ADMISSION_HELP.overcommitCpu)
        .option("--overcommit-memory <n>", ADMISSION_HELP.overcommitMemory)
        .option("--reserve-memory <mib>", ADMISSION_HELP.reserveMemory)
        .option("--trust-proxy <cidrs>", ADMISSION_HELP.trustProxy)
        .option("--allow-private <cidrs>", ALLOW_PRIVATE_HELP)
        .option("--network-pool <n>", NETWORK_POOL_HELP)
        .option("--warm-pool <n[,template=n]>", WARM_POOL_HELP)
        .option("--standby-vmms <n>", STANDBY_VMMS_HELP),
    ),
    ["up"],
    () => import("../commands/up.ts"),
  );
  forward(
    program
      .command("setup")
      .description("install the host's system packages (QEMU, debootstrap, nftables, …) with apt")
      .option("--dry-run", "only say what would be installed"),
    ["setup"],
    () => import("../commands/setup.ts"),
  );
  forward(
    withTraffic(
      program
        .command("control-plane")
        .description("start the control plane (REST API) on PostgreSQL or an embedded PGlite")
        .option("--port <port>", "listen port (default $WRENN_PORT or 8080)")
        .option("--host <address>", "listen address", "127.0.0.1")
        .option("--database-url <url>", "PostgreSQL (default $DATABASE_URL; else embedded PGlite)")
        .option("--data-dir <dir>", "where the embedded PGlite keeps its data")
        .option("--reconcile-interval <seconds>", "how often hosts are polled", "10")
        .option("--open-signup", OPEN_SIGNUP_HELP)
        .option("--team-quota <limits>", TEAM_QUOTA_HELP)
        .option("--overcommit-cpu <n>", ADMISSION_HELP.overcommitCpu)
        .option("--overcommit-memory <n>", ADMISSION_HELP.overcommitMemory)
        .option("--reserve-memory <mib>", ADMISSION_HELP.reserveMemory)
        .option("--trust-proxy <cidrs>", ADMISSION_HELP.trustProxy)
        .option(
          "--host-agent <address>",
          "register a host agent by HOST:PORT, or https://HOST:PORT for one serving TLS (repeatable)",
        )
        .option(
          "--agent-ca <file>",
          "CA certificates (PEM) that sign the agents' TLS certificates ($WRENN_AGENT_CA)",
        ),
    ),
    ["control-plane"],
    () => import("../commands/control-plane.ts"),
  );
  forward(
    program
      .command("host-agent")
      .description("start the host agent (root): VMs, network slots, storage, snapshots")
      .option("--listen <host:port>", "listen address", "127.0.0.1:7070")
      .option("--data-dir <dir>", "state and images (default $WRENN_DATA_DIR or /var/lib/wrenn)")
      .option("--vmm <name>", "qemu or firecracker (default: auto, $WRENN_VMM)")
      .option("--storage <name>", "rootfs storage driver (default: auto, $WRENN_STORAGE)")
      .option(
        "--network-prefix <prefix>",
        "names of its namespaces and links ($WRENN_NETWORK_PREFIX)",
      )
      .option("--secret <secret>", "the bearer secret callers need (better: $WRENN_HOST_SECRET)")
      .option("--allow-private <cidrs>", ALLOW_PRIVATE_HELP)
      .option("--network-pool <n>", NETWORK_POOL_HELP)
      .option("--warm-pool <n[,template=n]>", WARM_POOL_HELP)
      .option("--standby-vmms <n>", STANDBY_VMMS_HELP)
      .option(
        "--tls-cert <file>",
        "serve HTTPS (HTTP/2 and 1.1) with this certificate chain (PEM); register the host as https://HOST:PORT",
      )
      .option("--tls-key <file>", "the private key of --tls-cert (PEM)"),
    ["host-agent"],
    () => import("../commands/host-agent.ts"),
  );
  forward(
    program
      .command("envd")
      .description("start the guest daemon on this machine (for testing)")
      .option("--port <port>", "listen port", "49983")
      .option("--host <address>", "listen address", "127.0.0.1")
      .option("--default-user <user>", "the user commands run as (default: you)"),
    ["envd"],
    () => import("../commands/envd.ts"),
  );

  const image = program
    .command("image")
    .description("build the guest kernel and the base template, show them, prune old ones");
  const loadImage = () => import("../commands/image.ts");
  forward(
    image
      .command("build")
      .description(
        "build the guest kernel (Debian's cloud kernel, on Ubuntu its kvm or virtual one; " +
          "WRENN_KERNEL_PACKAGE names another) and the base template into " +
          "$WRENN_DATA_DIR (default /var/lib/wrenn); cached: only what changed is rebuilt",
      )
      .option("--template <name>", "the template to build", "minimal")
      .option("--kernel <path>", "use your own kernel (bzImage or ELF vmlinux; or $WRENN_KERNEL)")
      .option("--initrd <path>", "the initramfs for --kernel")
      .option("--force", "rebuild even when nothing changed"),
    ["image", "build"],
    loadImage,
    ["build"],
  );
  forward(
    image
      .command("show")
      .description("where the kernel and the template are, and what they hold")
      .option("--template <name>", "the template to show", "minimal")
      .option("--json", "print JSON"),
    ["image", "show"],
    loadImage,
    ["show"],
  );
  forward(
    image
      .command("prune")
      .description(
        "remove base images and boot snapshots that rebuilds left behind and no sandbox uses " +
          "(refused while a host agent runs, unless --force)",
      )
      .option("--dry-run", "only list what would be removed")
      .option("--force", "even while host agents run (name each one's --data-dir)")
      .option("--data-dir <dir>", "a data dir whose sandboxes to keep (repeatable)"),
    ["image", "prune"],
    loadImage,
    ["prune"],
  );
  forward(
    image.command("check").description("only check the image build's prerequisites"),
    ["image", "check"],
    loadImage,
    ["check"],
  );
}
