import { describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { userInfo } from "node:os";
import { join } from "node:path";

const main = join(import.meta.dirname, "../src/main.ts");

/** envd's sources under `flags`, with --trace-gc: resolves its URL and what it printed so far. */
async function start(t: TestContext, flags: string[]) {
  const child = spawn(
    process.execPath,
    [
      ...flags,
      "--trace-gc",
      main,
      "--port",
      "0",
      "--host",
      "127.0.0.1",
      "--default-user",
      userInfo().username,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  t.after(() => child.kill("SIGKILL"));
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
  child.stderr.setEncoding("utf8").on("data", (c: string) => (err += c));
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr.on("data", () => {
      const m = /"url":"(http:\/\/[^"]+)".*"envd listening"/.exec(err);
      if (m?.[1]) resolve(m[1]);
    });
    child.once("exit", (code) => reject(new Error(`envd exited (${code}): ${err}`)));
  });
  return { child, url, out: () => out };
}

/** The boot snapshot builder's request for a collection (boot-snapshot-builder.ts). */
describe("envd SIGUSR2", () => {
  test("runs a full collection when gc is exposed (as in the guest)", async (t) => {
    const envd = await start(t, ["--expose-gc"]);
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
    const envd = await start(t, []);
    envd.child.kill("SIGUSR2");
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual([envd.child.exitCode, envd.child.signalCode], [null, null]);
    assert.equal((await fetch(`${envd.url}/health`)).status, 204);
    envd.child.kill("SIGTERM");
    assert.deepEqual(await once(envd.child, "exit"), [0, null]);
  });
});
