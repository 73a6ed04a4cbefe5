import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { startHarness } from "../../control-plane/test/harness.ts";

const run = promisify(execFile);
const root = fileURLToPath(new URL("..", import.meta.url));

test(
  "builds to dist/ with declarations; the README's example runs on it",
  { timeout: 180_000 },
  async () => {
    await run(process.execPath, [join(root, "scripts", "build.ts")]);
    for (const f of ["index.js", "index.d.ts", "sandbox.d.ts", "gen/openapi.d.ts"])
      assert.ok(existsSync(join(root, "dist", f)), `dist/${f} is missing`);

    const readme = await readFile(join(root, "README.md"), "utf8");
    const example = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(example, "the README has a ts example");
    assert.equal(example.trim().split("\n").length, 5, "the example is five lines");
    const dir = await mkdtemp(join(tmpdir(), "wrenn-sdk-readme-"));
    const h = await startHarness("pglite");
    try {
      const script = join(dir, "example.mts");
      const dist = pathToFileURL(join(root, "dist", "index.js")).href;
      await writeFile(script, example.replace('"@wrenn/sdk"', JSON.stringify(dist)));
      const { stdout } = await run(process.execPath, [script], {
        env: { ...process.env, WRENN_API_URL: h.cp.url, WRENN_API_KEY: h.key },
      });
      assert.match(stdout, /^echo hello from [a-z0-9]+\n/);
      const left = (await (await h.api("/v1/sandboxes")).json()) as unknown[];
      assert.equal(left.length, 0, "the example destroys its sandbox");
    } finally {
      await h.close();
      await rm(dir, { recursive: true, force: true });
    }
  },
);
