// envd's control channel (src/control.ts) on the wire: the upgrade, its lines, and what it refuses.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import type { Socket } from "node:net";
import { CONTROL_PATH, CONTROL_PROTOCOL } from "@wrenn/shared/envd-control.ts";
import type { Envd } from "../src/server.ts";
import { startHostEnvd } from "./host-envd.ts";

interface Channel {
  socket: Socket;
  /** Sends one line, returns envd's answer line parsed. */
  send(line: string): Promise<{ ok: boolean; status?: number; message?: string }>;
  closed: Promise<void>;
}

/** Upgrades a connection to `envd`'s control channel (or answers what envd said instead). */
function upgrade(
  envd: Envd,
  path = CONTROL_PATH,
): Promise<Channel | { status: number | undefined }> {
  const { port } = new URL(envd.url);
  return new Promise((resolve, reject) => {
    const req = request({
      host: "127.0.0.1",
      port,
      path,
      agent: false,
      headers: { connection: "Upgrade", upgrade: CONTROL_PROTOCOL },
    });
    req.once("response", (res) => {
      res.resume();
      resolve({ status: res.statusCode });
    });
    req.once("upgrade", (res, socket: Socket) => {
      assert.equal(res.statusCode, 101);
      assert.equal(res.headers.upgrade, CONTROL_PROTOCOL);
      let pending = Buffer.alloc(0);
      const answers: Array<(line: string) => void> = [];
      socket.on("data", (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        for (let nl = pending.indexOf(10); nl >= 0; nl = pending.indexOf(10)) {
          answers.shift()?.(pending.toString("utf8", 0, nl));
          pending = pending.subarray(nl + 1);
        }
      });
      const closed = new Promise<void>((r) => socket.once("close", () => r()));
      resolve({
        socket,
        closed,
        send: (line) =>
          new Promise((r) => {
            answers.push((l) => r(JSON.parse(l) as { ok: boolean }));
            socket.write(`${line}\n`);
          }),
      });
    });
    req.once("error", reject);
    req.end();
  });
}

async function channel(t: TestContext, envd: Envd): Promise<Channel> {
  const c = await upgrade(envd);
  assert.ok("socket" in c, `envd answered the upgrade with ${JSON.stringify(c)}`);
  t.after(() => c.socket.destroy());
  return c;
}

test("/init over the control channel applies as POST /init does, line after line on one connection", async (t) => {
  const envd = await startHostEnvd(t);
  const { state } = envd.context;
  const c = await channel(t, envd);
  assert.deepEqual(await c.send(JSON.stringify({ init: { envVars: { A: "1" } } })), { ok: true });
  assert.equal(state.envVars.A, "1");
  assert.deepEqual(
    await c.send(JSON.stringify({ init: { envVars: { B: "2" }, accessToken: "secret-1" } })),
    { ok: true },
  );
  assert.equal(state.envVars.B, "2");
  assert.equal(state.accessToken, "secret-1");

  // From now on every request carries the token; the connection grants nothing by itself.
  const refused = await c.send(JSON.stringify({ init: { envVars: { C: "3" } } }));
  assert.equal(refused.ok, false);
  assert.equal(refused.status, 401);
  assert.equal(state.envVars.C, undefined, "a refused request changed nothing");
  const wrong = await c.send(JSON.stringify({ token: "secret-2", init: { envVars: { C: "3" } } }));
  assert.equal(wrong.status, 401);
  assert.deepEqual(
    await c.send(JSON.stringify({ token: "secret-1", init: { envVars: { C: "3" } } })),
    { ok: true },
  );
  assert.equal(state.envVars.C, "3");
});

test("the control channel answers bad requests as POST /init does and stays open; a line over 1 MiB ends it", async (t) => {
  const envd = await startHostEnvd(t);
  const c = await channel(t, envd);
  for (const [line, message] of [
    ["{not json", /not JSON/],
    ["[1]", /must be an object/],
    ["{}", /no 'init'/],
    [JSON.stringify({ init: { envVars: { A: 1 } } }), /envVars\.A must be a string/],
    [JSON.stringify({ init: { hostname: "-bad-" } }), /not a valid host name/],
    [JSON.stringify({ init: { entropy: "!!" } }), /entropy is not valid base64/],
  ] as const) {
    const answer = await c.send(line);
    assert.equal(answer.ok, false, line);
    assert.equal(answer.status, 400, line);
    assert.match(answer.message ?? "", message);
  }
  assert.deepEqual(envd.context.state.envVars, {}, "nothing applied");
  assert.deepEqual(await c.send(JSON.stringify({ init: {} })), { ok: true }, "still open");

  const big = await c.send("x".repeat((1 << 20) + 10));
  assert.equal(big.status, 400);
  assert.match(big.message ?? "", /larger than 1 MiB/);
  await c.closed;
});

test("only GET /control upgrades; other upgrade offers (h2c) are plain requests; envd's close ends the channel", async (t) => {
  const envd = await startHostEnvd(t);
  assert.deepEqual(await upgrade(envd, "/elsewhere"), { status: 404 });
  const { port } = new URL(envd.url);
  const h2c = await new Promise<number | undefined>((resolve, reject) => {
    const req = request({
      host: "127.0.0.1",
      port,
      path: "/health",
      agent: false,
      headers: { connection: "Upgrade, HTTP2-Settings", upgrade: "h2c", "http2-settings": "" },
    });
    req.once("response", (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.once("upgrade", () => reject(new Error("envd took an h2c upgrade")));
    req.once("error", reject);
    req.end();
  });
  assert.equal(h2c, 204, "curl --http2 still gets envd's plain answer");

  const c = await channel(t, envd);
  await envd.close();
  await c.closed;
});
