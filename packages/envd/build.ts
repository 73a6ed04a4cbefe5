// Bundles envd into one ESM file for the guest image, plus the native addon
// packages it loads at runtime (they cannot be bundled: .node binaries).
//
//   node packages/envd/build.ts OUT_DIR   → OUT_DIR/envd.mjs, OUT_DIR/node_modules/…
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cp, mkdir, readdir, readFile, rm, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { basename, dirname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

/** Packages with native addons, copied next to the bundle (.node binaries cannot be bundled). */
export const NATIVE_PACKAGES: string[] = [
  "@napi-rs/xattr",
  "node-pty",
  "@wrenn/clock",
  "@wrenn/setuser",
];
/** Loaded from node_modules at runtime; @wrenn/clock's and @wrenn/setuser's loaders are bundled, their binaries are not. */
const EXTERNAL = ["@napi-rs/xattr", "node-pty"].flatMap((p) => [p, `${p}/*`]);

const here = dirname(fileURLToPath(import.meta.url));

export interface EnvdBundle {
  dir: string;
  /** The entry file, `envd.cjs`. */
  bundle: string;
  /** Hash over the bundle and every copied file, to decide whether an image is stale. */
  sha256: string;
}

// Sources, build intermediates and other platforms' prebuilt binaries are dead
// weight in the guest.
const SKIP_DIRS = new Set([
  "src",
  "deps",
  "third_party",
  "test",
  "tests",
  "obj.target",
  ".deps",
  "node-addon-api",
  "typings",
  "scripts",
]);
const SKIP_FILE =
  /\.(o|cc|cpp|c|h|hpp|gyp|gypi|mk|md|ts|map)$|\.test\.js$|^Makefile$|^binding\.Makefile$/;

function keep(root: string, src: string): boolean {
  const rel = src.slice(root.length + 1);
  if (rel === "") return true;
  const parts = rel.split(sep);
  const name = parts[parts.length - 1] ?? "";
  if (parts.slice(0, -1).some((p) => SKIP_DIRS.has(p)) || SKIP_DIRS.has(name)) return false;
  if (parts[0] === "prebuilds" && parts[1] !== undefined && parts[1] !== "linux-x64") return false;
  return !SKIP_FILE.test(name);
}

interface PackageJson {
  name: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

/** Copies a package and its installed runtime dependencies into `outModules`. */
async function copyPackage(
  name: string,
  from: string,
  outModules: string,
  done: Set<string>,
): Promise<void> {
  if (done.has(name)) return;
  done.add(name);
  const req = createRequire(join(from, "noop.js"));
  let manifest: string;
  try {
    manifest = req.resolve(`${name}/package.json`);
  } catch {
    // Optional platform packages for other platforms are not installed.
    return;
  }
  const root = dirname(manifest);
  const pkg = JSON.parse(await readFile(manifest, "utf8")) as PackageJson;
  await cp(root, join(outModules, name), {
    recursive: true,
    dereference: true,
    filter: (src) => keep(root, src),
  });
  const deps = { ...pkg.dependencies, ...pkg.optionalDependencies };
  for (const dep of Object.keys(deps)) {
    // Header-only build dependencies are not needed at runtime.
    if (dep === "node-addon-api" || dep === "nan") continue;
    await copyPackage(dep, root, outModules, done);
  }
}

async function hashTree(dir: string, files: string[]): Promise<string> {
  const h = createHash("sha256");
  for (const f of files.sort()) {
    h.update(f.slice(dir.length));
    h.update(await readFile(f));
  }
  return h.digest("hex");
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

/** Binaries npm builds at install from C sources of ours, which a checkout may hold stale. */
const OWN_BUILDS = [
  { pkg: "@wrenn/clock", artefact: "wrenn_clock.node", source: "src/clock.c" },
  { pkg: "@wrenn/setuser", artefact: "wrenn-setuser", source: "src/setuser.c" },
];

/**
 * Whether a binary is built from its current source: a clock addon built
 * before clock.c last changed lacks calls envd makes (reseedRandom), and
 * envd would only warn in the guest.
 */
async function builtFresh(req: NodeJS.Require, own: (typeof OWN_BUILDS)[number]): Promise<boolean> {
  try {
    const artefact = req.resolve(`${own.pkg}/${own.artefact}`);
    const source = join(dirname(req.resolve(`${own.pkg}/package.json`)), own.source);
    return (await stat(artefact)).mtimeMs >= (await stat(source)).mtimeMs;
  } catch {
    return false;
  }
}

/** npm builds them at install; a checkout installed before their source changed (or existed) has not. */
async function ensureOwnBuilds(): Promise<void> {
  const req = createRequire(join(here, "noop.js"));
  const repo = resolve(here, "../..");
  for (const own of OWN_BUILDS) {
    if (await builtFresh(req, own)) continue;
    const result = spawnSync("npm", ["rebuild", own.pkg], { cwd: repo, encoding: "utf8" });
    if (await builtFresh(req, own)) continue;
    const why = (result.error?.message ?? result.stderr ?? "")
      .trim()
      .split("\n")
      .slice(-3)
      .join(" / ");
    throw new Error(
      `${own.pkg}'s ${own.artefact} is older than its source and 'npm rebuild ${own.pkg}' failed (${why}); ` +
        "run 'npm install' in the repository (it needs g++, make and python3)",
    );
  }
}

export async function buildEnvd(outDir: string): Promise<EnvdBundle> {
  const dir = resolve(outDir);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await ensureOwnBuilds();
  const bundle = join(dir, "envd.cjs");
  await build({
    entryPoints: [join(here, "src", "main.ts")],
    outfile: bundle,
    bundle: true,
    platform: "node",
    // CommonJS, not ESM: an ESM import of a Node builtin builds a facade that
    // reads every export, and node:http's lazy getters then load undici,
    // http2 and tls: ≈60 ms on the host, ≈0.6 s of envd's start in a TCG guest.
    format: "cjs",
    target: "node22",
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: "none",
    external: EXTERNAL,
    // Sources resolve packages (addons) with createRequire(import.meta.url).
    define: { "import.meta.url": "__wrennImportMetaUrl" },
    // "use strict" first: esbuild's own would come after the banner, where it is no directive.
    banner: {
      js: "'use strict'; const __wrennImportMetaUrl = require('node:url').pathToFileURL(__filename).href;",
    },
    logLevel: "warning",
  });
  const done = new Set<string>();
  for (const name of NATIVE_PACKAGES) {
    await copyPackage(name, here, join(dir, "node_modules"), done);
    try {
      await stat(join(dir, "node_modules", name, "package.json"));
    } catch {
      throw new Error(`native package ${name} is not installed; run 'npm ci'`);
    }
  }
  return { dir, bundle, sha256: await hashTree(dir, await listFiles(dir)) };
}

if (import.meta.main) {
  const out = process.argv[2];
  if (!out) {
    process.stderr.write(`usage: node ${basename(fileURLToPath(import.meta.url))} OUT_DIR\n`);
    process.exit(2);
  }
  const result = await buildEnvd(out);
  process.stdout.write(`${result.bundle} sha256=${result.sha256}\n`);
}
