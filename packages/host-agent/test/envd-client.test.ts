// The agent's envd client in the shapes E2B's SDKs use, against a real envd on the host (no VM).
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import { startEnvd } from "@wrenn/envd/server.ts";
import { createLogger } from "@wrenn/shared/log.ts";
import { EnvdClient } from "../src/envd/client.ts";

/** An envd on the host as this process's user, and the agent's client of it; both gone after `t`. */
async function clientOfHostEnvd(t: TestContext): Promise<EnvdClient> {
  const envd = await startEnvd({
    port: 0,
    host: "127.0.0.1",
    defaultUser: userInfo().username,
    log: createLogger("envd-client-test", "warn"),
  });
  t.after(() => envd.close());
  const client = new EnvdClient(new URL(envd.url).host);
  t.after(() => client.close());
  return client;
}

test("a file written raw and as a form (E2B's SDKs' shape) reads back and is listed; a path no form can name is refused before sending", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "wrenn-envd-client-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const client = await clientOfHostEnvd(t);

  const path = join(dir, "sub", "a b.txt");
  await client.writeFile(path, Buffer.from("raw\n"));
  assert.equal(await readFile(path, "utf8"), "raw\n");
  const bytes = Buffer.from([0, 1, 2, 0x0d, 0x0a, 0x2d, 0x2d, 255]);
  await client.writeFileForm(path, bytes);
  assert.deepEqual(await readFile(path), bytes, "the form's part replaced the file, byte for byte");
  assert.deepEqual(await buffer(await client.readFile(path)), bytes);
  assert.deepEqual(await client.listDir(join(dir, "sub")), ["a b.txt"]);
  await assert.rejects(client.listDir(join(dir, "none")), /no such|not found|does not exist/i);

  for (const bad of [join(dir, 'q"uote'), join(dir, "line\nbreak"), join(dir, "cr\r")]) {
    await assert.rejects(client.writeFileForm(bad, bytes), (err: Error & { code?: string }) => {
      assert.equal(err.code, "invalid_argument");
      return true;
    });
  }
  assert.deepEqual((await readdir(dir)).sort(), ["sub"], "nothing written for a refused path");
});

test("a command runs the same in Connect's JSON (E2B's SDKs) as in the agent's binary", async (t) => {
  const client = await clientOfHostEnvd(t);
  for (const json of [false, true]) {
    let out = "";
    let exit: number | undefined;
    for await (const ev of client.execStream({
      cmd: "/bin/sh",
      args: ["-c", "printf 'a\\0b'; exit 3"],
      json,
    })) {
      if (ev.type === "stdout") out += Buffer.from(ev.data).toString("latin1");
      if (ev.type === "end") exit = ev.exitCode;
    }
    assert.equal(out, "a\0b", `stdout, json: ${json}`);
    assert.equal(exit, 3, `exit code, json: ${json}`);
  }
});
