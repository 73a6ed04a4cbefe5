import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { userInfo } from "node:os";
import { spawnEnvd } from "./spawn-envd.ts";

const main = join(import.meta.dirname, "../src/main.ts");
const user = userInfo().username;

/** The boot snapshot builder's request for a collection (boot-snapshot-builder.ts). */
describe("envd SIGUSR2", () => {
  test("runs a full collection when gc is exposed (as in the guest)", async (t) => {
    const envd = await spawnEnvd(t, main, user, { nodeFlags: ["--expose-gc", "--trace-gc"] });
    const before = envd.out().length;
    envd.child.kill("SIGUSR2");
    const deadline = Date.now() + 10_000;
    while (!/Mark-Compact[^\n]*testing/.test(envd.out().slice(before)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.match(envd.out().slice(before), /Mark-Compact[^\n]*testing/);
    assert.equal((await fetch(`${envd.url}/health`)).status, 204);
  });

  test("is harmless without it: envd keeps answering", async (t) => {
    const envd = await spawnEnvd(t, main, user);
    envd.child.kill("SIGUSR2");
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual([envd.child.exitCode, envd.child.signalCode], [null, null]);
    assert.equal((await fetch(`${envd.url}/health`)).status, 204);
    envd.child.kill("SIGTERM");
    assert.equal(await envd.exited, 0);
  });
});
