import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const root = fileURLToPath(new URL("..", import.meta.url));
const repo = join(root, "..", "..");

interface PackResult {
  filename: string;
  files: Array<{ path: string }>;
}

/**
 * What a user of the published package gets: the tarball `npm pack` makes
 * (its prepack builds dist/), unpacked into a fresh project's node_modules
 * the way `npm install` lays it out. Its dependencies are linked from the
 * repository's node_modules, so the test needs no registry.
 */
test(
  "npm pack holds only dist/, README and package.json; a fresh project imports and type-checks it",
  { timeout: 240_000 },
  async () => {
    const dir = await mkdtemp(join(tmpdir(), "wrenn-sdk-pack-"));
    try {
      const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", dir], {
        cwd: root,
        env: { ...process.env, npm_config_update_notifier: "false" },
        maxBuffer: 16 * 1024 * 1024,
      });
      // prepack's build prints tsc's output before npm's JSON.
      const packed = JSON.parse(stdout.slice(stdout.indexOf("["))) as PackResult[];
      const [result] = packed;
      assert.ok(result, "npm pack reported no tarball");
      const files = result.files.map((f) => f.path).sort();
      const stray = files.filter(
        (f) => !/^dist\/[a-z-]+\.(js|d\.ts)$/.test(f) && !/^dist\/gen\/openapi\.d\.ts$/.test(f),
      );
      assert.deepEqual(
        stray,
        ["README.md", "package.json"],
        `unexpected files: ${stray.join(", ")}`,
      );
      for (const f of ["dist/index.js", "dist/index.d.ts", "dist/gen/openapi.d.ts"])
        assert.ok(files.includes(f), `${f} is not in the tarball`);
      assert.ok(!files.some((f) => f.startsWith("src/") || f.startsWith("test/")));

      const manifest = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as {
        private?: boolean;
        dependencies: Record<string, string>;
      };
      assert.equal(manifest.private, undefined, "a private package cannot be published");

      const project = join(dir, "project");
      const pkgDir = join(project, "node_modules", "@wrenn", "sdk");
      await mkdir(pkgDir, { recursive: true });
      await run("tar", ["-xzf", join(dir, result.filename), "-C", pkgDir, "--strip-components=1"]);
      for (const dep of [...Object.keys(manifest.dependencies), "@types/node", "@types/ws"]) {
        const at = join(project, "node_modules", dep);
        await mkdir(join(at, ".."), { recursive: true });
        await symlink(join(repo, "node_modules", dep), at);
      }
      await writeFile(
        join(project, "package.json"),
        JSON.stringify({ name: "consumer", type: "module", private: true }),
      );
      await writeFile(
        join(project, "main.ts"),
        [
          'import { NotFoundError, Sandbox, Wrenn, type SandboxInfo } from "@wrenn/sdk";',
          'const wrenn = Wrenn.connect({ apiUrl: "http://127.0.0.1:9", apiKey: "e2b_00" });',
          "const list: Promise<Sandbox[]> = Sandbox.list(wrenn);",
          "void list.catch(() => {});",
          "const status: SandboxInfo['status'] | undefined = undefined;",
          "console.log(typeof Sandbox.create, new NotFoundError('not_found', 'x', 404).code, status);",
          "",
        ].join("\n"),
      );
      await writeFile(
        join(project, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: {
            target: "es2022",
            module: "nodenext",
            moduleResolution: "nodenext",
            strict: true,
            noEmit: true,
            types: ["node"],
          },
          files: ["main.ts"],
        }),
      );
      // skipLibCheck off: the package's own declarations must check in a user's project.
      await run(join(repo, "node_modules", ".bin", "tsc"), ["-p", project]).catch(
        (err: { stdout?: string }) => {
          throw new Error(`the consumer does not type-check:\n${err.stdout ?? String(err)}`);
        },
      );
      const { stdout: out } = await run(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          'const m = await import("@wrenn/sdk"); console.log(Object.keys(m).sort().join(","));',
        ],
        { cwd: project },
      );
      for (const name of ["Sandbox", "Wrenn", "WrennApiError", "NotFoundError", "Files"])
        assert.ok(out.trim().split(",").includes(name), `${name} is not exported: ${out}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
);
