import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { ControlChannel } from "@wrenn/host-agent/envd/control.ts";
import { buildEnvd } from "../build.ts";
import { isRoot, tempDir } from "./filesystem-fixtures.ts";
import { spawnEnvd } from "./spawn-envd.ts";

/** The bundle as the guest runs it: `node envd.cjs` with its native packages beside it. */
describe("envd bundle", () => {
  test("is one CommonJS file that starts, answers /health and /init (over HTTP and its control channel), and ships its addons", async (t) => {
    const dir = await tempDir(t, "wrenn-envd-bundle-");
    const out = await buildEnvd(join(dir, "out"));
    assert.equal(out.bundle, join(out.dir, "envd.cjs"));
    assert.match(out.sha256, /^[0-9a-f]{64}$/);
    for (const f of [
      "node_modules/node-pty/package.json",
      "node_modules/@napi-rs/xattr/package.json",
      "node_modules/@wrenn/clock/build/Release/wrenn_clock.node",
    ]) {
      await stat(join(out.dir, f));
    }
    // envd's user switch ships as an executable the bundled loader finds by package name.
    const setuser = join(out.dir, "node_modules/@wrenn/setuser/build/Release/wrenn-setuser");
    assert.ok((await stat(setuser)).mode & 0o111, "wrenn-setuser is executable in the bundle");
    const found = spawnSync(
      process.execPath,
      [
        "-e",
        `process.stdout.write(require("node:module").createRequire(${JSON.stringify(out.bundle)}).resolve("@wrenn/setuser/wrenn-setuser"))`,
      ],
      { encoding: "utf8" },
    );
    assert.equal(found.stdout, setuser, found.stderr);
    // The bundled clock loader resolves the addon by package name from the bundle's directory.
    const probe = spawnSync(
      process.execPath,
      [
        "-e",
        `const a = require("node:module").createRequire(${JSON.stringify(out.bundle)})("@wrenn/clock/wrenn_clock.node");
        if (typeof a.setRealtime !== "function" || typeof a.reseedRandom !== "function") throw new Error("stale addon: " + Object.keys(a));`,
      ],
      { encoding: "utf8" },
    );
    assert.equal(probe.status, 0, probe.stderr);

    const { child, url, log, exited } = await spawnEnvd(t, out.bundle, undefined, {
      env: { ...process.env, WRENN_LOG_LEVEL: "debug" },
    });
    assert.equal((await fetch(`${url}/health`)).status, 204);
    const init = await fetch(`${url}/init`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        envVars: { A: "1" },
        timestamp: new Date().toISOString(),
        entropy: randomBytes(64).toString("base64"),
      }),
    });
    assert.equal(init.status, 204);
    // The agent's way in: without the channel it would fall back to HTTP silently.
    const control = new ControlChannel(new URL(url).host);
    await control.init(undefined, { envVars: { B: "2" } }, AbortSignal.timeout(10_000));
    control.close();
    child.kill("SIGTERM");
    assert.equal(await exited, 0, log());
    // As root the bundled loader found the addon and the kernel took the entropy.
    const warnings = log()
      .split("\n")
      .filter((l) => /"level":(40|50)/.test(l));
    assert.deepEqual(
      warnings.filter((l) => isRoot || !/not privileged to reseed the kernel RNG/.test(l)),
      [],
      "no warnings or errors",
    );
    if (isRoot) assert.match(log(), /"reseeded":true.*"msg":"init"/);
    assert.equal(log().match(/"msg":"init"/g)?.length, 2, "both /inits applied");
  });
});
