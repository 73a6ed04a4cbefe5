/**
 * The traffic proxy on real VMs: the control plane routes requests by Host
 * (`<port>-<id>.<domain>`) and by E2B's E2b-Sandbox-Id/-Port headers
 * through the sandbox's host agent to any port of the guest — a Python HTTP
 * server started inside, envd itself, a raw upgraded connection — with
 * bodies streamed both ways; unknown, paused and destroyed sandboxes answer
 * E2B's 502 JSON; the agent's proxy refuses callers without its secret.
 * Needs root, QEMU and the image; skips loudly without them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { connect } from "node:net";
import { eq } from "drizzle-orm";
import { PROXY_SANDBOX_HEADER } from "@wrenn/shared/sandbox-proxy.ts";
import { until } from "@wrenn/shared/testing/until.ts";
import { sandboxes } from "../src/db/schema.ts";
import { realAgentSkipReason, startHarness, type Harness } from "./harness.ts";
import { rawRequest } from "./raw-http.ts";
import { startRealAgent, type RealAgent } from "./real-agent.ts";

type Json = Record<string, unknown>;
const DOMAIN = "sbx.test";

/** A GET to the control plane; `headers` may name the Host (host routing). */
const get = (base: string, path: string, headers: Record<string, string>) =>
  rawRequest(base, path, { host: headers.host ?? new URL(base).host, headers });

/**
 * Sends a WebSocket upgrade on a raw socket, then bytes; resolves with what
 * came back after the 101 (the proxy passes the upgraded connection through
 * as bytes, so the guest's server need not speak WebSocket framing).
 */
function upgradeEcho(base: string, headers: string, payload: string): Promise<string> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(url.port), url.hostname);
    let data = "";
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => {
      data += d;
      const [head, rest = ""] = data.split("\r\n\r\n");
      if (data.includes("\r\n\r\n") && !head?.startsWith("HTTP/1.1 101")) {
        sock.destroy();
        reject(new Error(`no upgrade: ${data}`));
      } else if (rest.length >= payload.length) {
        sock.destroy();
        resolve(rest);
      }
    });
    sock.on("error", reject);
    sock.on("close", () => reject(new Error(`closed after: ${JSON.stringify(data)}`)));
    sock.write(
      `GET /echo HTTP/1.1\r\nHost: ${url.host}\r\n${headers}Connection: Upgrade\r\nUpgrade: websocket\r\n` +
        `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\n\r\n`,
    );
    setTimeout(() => sock.write(payload), 200);
  });
}

const ECHO_SERVER = `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8001)); s.listen()
while True:
    c, _ = s.accept(); d = b""
    while b"\\r\\n\\r\\n" not in d: d += c.recv(4096)
    c.sendall(b"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n\\r\\n")
    rest = d.split(b"\\r\\n\\r\\n", 1)[1]
    if rest: c.sendall(rest)
    while True:
        x = c.recv(4096)
        if not x: break
        c.sendall(x)
    c.close()
`;

// Over the agent's HTTP listener (an agent on another host), and handed to
// the agent's hop in this process, as `wrenn up` runs them.
for (const hop of ["http", "in-process"] as const)
  test(
    `traffic proxy: host and header routing to guest ports through the host agent (${hop} hop)`,
    { skip: realAgentSkipReason("traffic proxy test"), timeout: 600_000 },
    async () => {
      let agent: RealAgent | undefined;
      let h: Harness | undefined;
      try {
        agent = await startRealAgent(hop === "http" ? "px" : "pxl");
        h = await startHarness("pglite", {
          agents: 0,
          agentTimeoutMs: 600_000,
          domain: DOMAIN,
          ...(hop === "in-process"
            ? { localHops: new Map([[agent.address, agent.agent.hop]]) }
            : {}),
        });
        // Proxied requests the agent's listener served: none but the direct one below in-process.
        let overHttp = 0;
        agent.agent.server.on("request", (req: IncomingMessage) => {
          if (req.headers[PROXY_SANDBOX_HEADER] !== undefined) overHttp++;
        });
        const cp = h;
        await cp.cp.addHost(agent.address, { secret: agent.secret });
        const created = await cp.api("/v1/sandboxes", {
          method: "POST",
          json: { vcpus: 1, memory_mb: 512, timeout_sec: 600 },
        });
        assert.equal(created.status, 201, await created.clone().text());
        const sandbox = (await created.json()) as Json;
        const id = String(sandbox.sandbox_id);
        // envd's token, as E2B's create returns it to the sandbox's owner.
        const [row] = await cp.cp.db
          .select({ token: sandboxes.envdAccessToken })
          .from(sandboxes)
          .where(eq(sandboxes.id, id));
        const token = row?.token ?? "";
        const exec = async (cmd: string) => {
          const res = await cp.api(`/v1/sandboxes/${id}/exec`, {
            method: "POST",
            json: { cmd: "/bin/sh", args: ["-c", cmd] },
          });
          assert.equal(res.status, 200, await res.clone().text());
          return (await res.json()) as Json;
        };
        const form = new FormData();
        form.set("path", "/tmp/echo.py");
        form.set("file", new Blob([ECHO_SERVER]));
        const written = await cp.api(`/v1/sandboxes/${id}/files/write`, {
          method: "POST",
          body: form,
        });
        assert.equal(written.status, 200, await written.clone().text());
        await exec(
          "mkdir -p /tmp/www && echo proxied > /tmp/www/hello.txt && " +
            "(setsid python3 -m http.server 8000 --directory /tmp/www >/dev/null 2>&1 &) && " +
            "(setsid python3 /tmp/echo.py >/dev/null 2>&1 &)",
        );
        const byHeaders = { "e2b-sandbox-id": id, "e2b-sandbox-port": "8000" };
        const served = await until(
          "the guest's HTTP server through the proxy",
          60_000,
          async () => {
            const res = await get(cp.cp.url, "/hello.txt", byHeaders);
            return res.status === 200 ? res : undefined;
          },
        );
        assert.equal(served.body, "proxied\n");

        // Host routing: what the SDK builds from `domain`, and how signed URLs arrive.
        const byHost = await get(cp.cp.url, "/hello.txt", { host: `8000-${id}.${DOMAIN}` });
        assert.deepEqual(byHost, { status: 200, body: "proxied\n" });

        // envd's own port: /health needs no token; /files does when the sandbox has one.
        const health = await get(cp.cp.url, "/health", { host: `49983-${id}.${DOMAIN}` });
        assert.equal(health.status, 204, health.body);

        // A 16 MiB body streams up through both hops and back down, byte-identical.
        const blob = randomBytes(16 << 20);
        const envdHeaders = {
          "e2b-sandbox-id": id,
          "e2b-sandbox-port": "49983",
          ...(token ? { "x-access-token": token } : {}),
        };
        const up = await fetch(`${cp.cp.url}/files?path=/tmp/blob.bin&username=root`, {
          method: "POST",
          headers: { ...envdHeaders, "content-type": "application/octet-stream" },
          body: blob,
        });
        assert.equal(up.status, 200, await up.clone().text());
        // Read off the socket past the parser (body-relay.ts), so the connection ends with it.
        assert.equal(up.headers.get("connection"), "close");
        const down = await fetch(`${cp.cp.url}/files?path=/tmp/blob.bin&username=root`, {
          headers: envdHeaders,
        });
        assert.equal(down.status, 200);
        const digest = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
        assert.equal(digest(new Uint8Array(await down.arrayBuffer())), digest(blob));

        // An upgraded connection (what WebSockets use) passes through as raw bytes both ways.
        const echoed = await until("the guest's upgrade echo server", 60_000, async () =>
          upgradeEcho(
            cp.cp.url,
            `E2b-Sandbox-Id: ${id}\r\nE2b-Sandbox-Port: 8001\r\n`,
            "ping through the proxy",
          ).catch(() => undefined),
        );
        assert.equal(echoed, "ping through the proxy");

        // E2B's answers for what cannot be reached.
        const closed = await get(cp.cp.url, "/", { ...byHeaders, "e2b-sandbox-port": "8999" });
        assert.equal(closed.status, 502);
        assert.deepEqual(JSON.parse(closed.body), {
          code: 502,
          message: "The sandbox is running but port is not open",
          sandboxId: id,
          port: 8999,
        });
        // The same for a large body the relay reads itself: the answer, not a reset.
        const closedUpload = await fetch(`${cp.cp.url}/upload`, {
          method: "POST",
          headers: { ...byHeaders, "e2b-sandbox-port": "8999" },
          body: randomBytes(4 << 20),
        });
        assert.equal(closedUpload.status, 502);
        assert.equal(
          ((await closedUpload.json()) as Json).message,
          "The sandbox is running but port is not open",
        );
        const unknown = await get(cp.cp.url, "/", { host: `8000-nosuchsandbox0.${DOMAIN}` });
        assert.equal(unknown.status, 502);
        assert.deepEqual(JSON.parse(unknown.body), {
          code: 502,
          message: "The sandbox was not found",
          sandboxId: "nosuchsandbox0",
        });
        const malformed = await get(cp.cp.url, "/", { ...byHeaders, "e2b-sandbox-port": "http" });
        assert.equal(malformed.status, 400, malformed.body);
        // The API itself is untouched by the proxy.
        const api = await cp.api(`/v1/sandboxes/${id}`);
        assert.equal(api.status, 200);

        // The agent's half answers only the control plane that holds its secret.
        const direct = await get(`http://${agent.address}`, "/hello.txt", {
          "x-wrenn-proxy-sandbox": id,
          "x-wrenn-proxy-port": "8000",
        });
        assert.equal(direct.status, 401, direct.body);

        // Paused: 502 (the SDK's "not running"); resumed: reachable again, server and all.
        assert.equal((await cp.api(`/v1/sandboxes/${id}/pause`, { method: "POST" })).status, 200);
        const paused = await get(cp.cp.url, "/hello.txt", byHeaders);
        assert.equal(paused.status, 502, paused.body);
        assert.equal((await cp.api(`/v1/sandboxes/${id}/resume`, { method: "POST" })).status, 200);
        const again = await until("the resumed guest's server", 60_000, async () => {
          const res = await get(cp.cp.url, "/hello.txt", byHeaders);
          return res.status === 200 ? res : undefined;
        });
        assert.equal(again.body, "proxied\n");

        // A connection open through both hops closes as soon as its sandbox goes.
        const held = connect(Number(new URL(cp.cp.url).port), "127.0.0.1");
        held.write(
          `GET /echo HTTP/1.1\r\nHost: x\r\nE2b-Sandbox-Id: ${id}\r\nE2b-Sandbox-Port: 8001\r\n` +
            `Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n` +
            `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\n\r\n`,
        );
        await new Promise((r) => held.once("data", r));
        const heldClosed = new Promise((r) => held.once("close", r));
        held.on("error", () => undefined);
        const killedAt = performance.now();
        assert.equal((await cp.api(`/v1/sandboxes/${id}`, { method: "DELETE" })).status, 204);
        await heldClosed;
        const lingered = performance.now() - killedAt;
        assert.ok(lingered < 15_000, `the proxied connection lingered ${Math.round(lingered)} ms`);
        const gone = await get(cp.cp.url, "/hello.txt", byHeaders);
        assert.equal(gone.status, 502);
        assert.equal((JSON.parse(gone.body) as Json).message, "The sandbox was not found");
        if (hop === "in-process")
          assert.equal(overHttp, 1, "only the direct request used the socket");
        else assert.ok(overHttp > 10, `${overHttp} proxied requests reached the agent's listener`);
      } finally {
        await h?.close();
        await agent?.stop();
      }
    },
  );
