/**
 * The agent's proxy hop relaying large bodies past Node's HTTP parser
 * (shared/body-relay.ts), on loopback with a local server as the guest:
 * bytes arrive whole both ways, a HEAD answer's length is not waited for,
 * a guest that stops short or a caller that goes away leaves no socket
 * open, and a guest that refuses the connection answers the caller's large
 * upload with a 502 once its body is read.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { createServer as createHttpServer, request, type IncomingMessage } from "node:http";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { test } from "node:test";
import { WrennError } from "@wrenn/shared/errors.ts";
import { createLogger } from "@wrenn/shared/log.ts";
import { PROXY_PORT_HEADER, PROXY_SANDBOX_HEADER } from "@wrenn/shared/sandbox-proxy.ts";
import { until } from "@wrenn/shared/testing/until.ts";
import { createGuestProxy } from "../src/proxy/proxy.ts";

const MiB = 1 << 20;

async function listen(server: ReturnType<typeof createServer | typeof createHttpServer>) {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as AddressInfo).port;
}

function bytes(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE(i, i);
  return b;
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

test("large bodies through the agent's hop, and what happens when a side fails", async () => {
  const sent = bytes(8 * MiB);
  let stopShortAfter = 0;
  const guestSockets = new Set<Socket>();
  const guest = createHttpServer((req, res) => {
    if (req.url === "/echo-hash") {
      const hash = createHash("sha256");
      req.on("data", (d: Buffer) => hash.update(d));
      req.on("end", () => res.end(hash.digest("hex")));
      return;
    }
    res.writeHead(200, { "content-length": sent.length });
    if (req.method === "HEAD") return void res.end();
    if (req.url === "/short") {
      // Half the body, then the connection goes.
      res.write(sent.subarray(0, stopShortAfter), () => res.socket?.destroy());
      return;
    }
    res.end(sent);
  });
  guest.on("connection", (s: Socket) => {
    guestSockets.add(s);
    s.once("close", () => guestSockets.delete(s));
  });
  const guestPort = await listen(guest);
  // A port nothing listens on.
  const closed = createServer();
  const closedPort = await listen(closed);
  closed.close();

  const run = new AbortController();
  const proxy = createGuestProxy(
    { guestAddress: () => ({ host: "127.0.0.1", gone: run.signal }) },
    { log: createLogger("test", "silent") },
  );
  const agent = createHttpServer((req, res) => proxy.web(req, res));
  const agentPort = await listen(agent);

  const call = (
    method: string,
    path: string,
    port: number,
    body?: Buffer,
  ): Promise<{ res: IncomingMessage; body: Buffer }> =>
    new Promise((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: agentPort,
          method,
          path,
          headers: {
            [PROXY_SANDBOX_HEADER]: "sbx1",
            [PROXY_PORT_HEADER]: String(port),
            ...(body ? { "content-length": String(body.length) } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ res, body: Buffer.concat(chunks) }));
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(body);
    });

  try {
    // Up and down, byte for byte; both connections end with their answers.
    const up = await call("POST", "/echo-hash", guestPort, sent);
    assert.equal(up.res.statusCode, 200);
    assert.equal(up.body.toString(), sha(sent));
    assert.equal(up.res.headers.connection, "close");
    const down = await call("GET", "/file", guestPort);
    assert.equal(down.res.statusCode, 200);
    assert.equal(down.body.length, sent.length);
    assert.equal(sha(down.body), sha(sent));
    // The guest's socket of a large answer is closed, not pooled.
    await until("the guest's sockets to close", 5000, () =>
      guestSockets.size === 0 ? true : undefined,
    );

    // HEAD: the length is the file's, and no body is waited for.
    const head = await call("HEAD", "/file", guestPort);
    assert.equal(head.res.headers["content-length"], String(sent.length));
    assert.equal(head.body.length, 0);

    // A guest that stops short: the caller's answer is cut off (not hung), nothing stays open.
    stopShortAfter = 3 * MiB;
    await assert.rejects(call("GET", "/short", guestPort), /aborted|ECONNRESET|socket hang up/);

    // A caller that goes away mid-download: the guest's socket closes too.
    const client = connect(agentPort, "127.0.0.1");
    client.on("error", () => undefined);
    client.write(
      `GET /file HTTP/1.1\r\nHost: x\r\n${PROXY_SANDBOX_HEADER}: sbx1\r\n` +
        `${PROXY_PORT_HEADER}: ${guestPort}\r\n\r\n`,
    );
    await once(client, "data");
    client.destroy();
    await until("the guest's sockets to close", 5000, () =>
      guestSockets.size === 0 ? true : undefined,
    );

    // Nothing listens: the large upload is read, then answered with E2B's 502.
    const refused = await call("POST", "/upload", closedPort, bytes(4 * MiB));
    assert.equal(refused.res.statusCode, 502);
    assert.match(refused.body.toString(), /port is not open/);
  } finally {
    proxy.close();
    agent.closeAllConnections();
    agent.close();
    guest.closeAllConnections();
    guest.close();
  }
});

test("a sandbox stopped until its disk has space: the proxy answers 503 saying so, not 'not found'", async () => {
  const proxy = createGuestProxy(
    {
      guestAddress: () => {
        throw new WrennError(
          "resource_exhausted",
          "sandbox 'sbx1' is stopped until the host's data disk has space",
        );
      },
    },
    { log: createLogger("test", "silent") },
  );
  const agent = createHttpServer((req, res) => proxy.web(req, res));
  const port = await listen(agent);
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`, {
      headers: { [PROXY_SANDBOX_HEADER]: "sbx1", [PROXY_PORT_HEADER]: "8080" },
    });
    assert.equal(res.status, 503);
    const body = (await res.json()) as { message: string; sandboxId: string };
    assert.match(body.message, /data disk has space/);
    assert.equal(body.sandboxId, "sbx1");
  } finally {
    agent.close();
  }
});
