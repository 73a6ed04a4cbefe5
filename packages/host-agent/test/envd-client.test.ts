// The agent's envd client in the shapes E2B's SDKs use, against a real envd on the host (no VM).
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { startEnvd, type Envd } from "@wrenn/envd/server.ts";
import { createLogger } from "@wrenn/shared/log.ts";
import { EnvdClient } from "../src/envd/client.ts";

/** An envd on the host as this process's user, gone after `t`. */
async function hostEnvd(t: TestContext): Promise<Envd> {
  const envd = await startEnvd({
    port: 0,
    host: "127.0.0.1",
    defaultUser: userInfo().username,
    log: createLogger("envd-client-test", "warn"),
  });
  t.after(() => envd.close());
  return envd;
}

/** The agent's client of a host envd; both gone after `t`. */
async function clientOfHostEnvd(t: TestContext): Promise<EnvdClient> {
  const envd = await hostEnvd(t);
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

/** envd's /init requests by the way they came: POST /init, or an upgrade to the control channel. */
function countInits(envd: Envd): { http: number; upgrades: number } {
  const seen = { http: 0, upgrades: 0 };
  envd.server.on("request", (req: IncomingMessage) => {
    if (req.url === "/init") seen.http++;
  });
  envd.server.on("upgrade", () => seen.upgrades++);
  return seen;
}

/** A client of `envd` that opened its control channel, then set A and B (and the token twice). */
async function initTwiceOverChannel(t: TestContext, envd: Envd): Promise<EnvdClient> {
  const client = new EnvdClient(new URL(envd.url).host);
  t.after(() => client.close());
  await client.openControl();
  await client.init({ envVars: { A: "1" }, accessToken: "token-1" });
  await client.init({ envVars: { B: "2" }, accessToken: "token-2" });
  assert.deepEqual(envd.context.state.envVars, { A: "1", B: "2" });
  assert.equal(envd.context.state.accessToken, "token-2");
  return client;
}

// No hostname in these /inits: envd would rename the machine the tests run on.
test("/init is one POST until the control channel is opened (a resume's single /init costs no upgrade)", async (t) => {
  const envd = await hostEnvd(t);
  const seen = countInits(envd);
  const client = new EnvdClient(new URL(envd.url).host);
  t.after(() => client.close());
  await client.init({ envVars: { A: "1" }, accessToken: "token-1" });
  assert.deepEqual(seen, { http: 1, upgrades: 0 });
  assert.equal(envd.context.state.accessToken, "token-1");
  assert.equal(client.controlOpen, false);
});

test("once opened, /init goes over envd's control channel, one connection for all of a guest's inits; envd's refusal is POST /init's error", async (t) => {
  const envd = await hostEnvd(t);
  const seen = countInits(envd);
  const client = await initTwiceOverChannel(t, envd);
  assert.deepEqual(seen, { http: 0, upgrades: 1 });
  assert.equal(client.controlOpen, true);
  // The client sends the token it set: its other calls pass.
  await client.listDir(tmpdir());

  // A client that does not know the token: envd refuses, and says so as it would over HTTP.
  const stranger = new EnvdClient(new URL(envd.url).host);
  t.after(() => stranger.close());
  await stranger.openControl();
  await assert.rejects(stranger.init({ envVars: { C: "3" } }), (err: Error & { code?: string }) => {
    assert.equal(err.code, "unavailable");
    assert.match(err.message, /envd \/init answered 401: missing or wrong access token/);
    return true;
  });
  assert.equal(Object.hasOwn(envd.context.state.envVars, "C"), false);
  assert.equal(seen.http, 0, "a refusal is an answer: not sent again over HTTP");
});

test("an envd without the control channel (it answers the upgrade with a plain 404, as envd did before it) gets /init over HTTP, and is not asked again", async (t) => {
  const envd = await hostEnvd(t);
  // What an envd that predates the channel does with the upgrade: a plain request, 404.
  envd.server.removeAllListeners("upgrade");
  envd.server.on("upgrade", (_req: IncomingMessage, socket: Duplex) => {
    socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  });
  const seen = countInits(envd);
  const client = await initTwiceOverChannel(t, envd);
  assert.deepEqual(seen, { http: 2, upgrades: 1 });
  assert.equal(client.controlOpen, false);
});

test("a control channel envd closed is opened again for the next /init", async (t) => {
  const envd = await hostEnvd(t);
  const seen = countInits(envd);
  const client = new EnvdClient(new URL(envd.url).host);
  t.after(() => client.close());
  let control: Duplex | undefined;
  envd.server.on("upgrade", (_req: IncomingMessage, socket: Duplex) => (control = socket));
  await client.openControl();
  await client.init({ envVars: { A: "1" } });
  control?.destroy();
  await new Promise((r) => setTimeout(r, 50));
  await client.init({ envVars: { B: "2" } });
  assert.deepEqual(envd.context.state.envVars, { A: "1", B: "2" });
  assert.deepEqual(seen, { http: 0, upgrades: 2 });
});
