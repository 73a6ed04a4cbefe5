/**
 * Control plane ↔ host agent over TLS, on a real VM: the agent serves HTTPS
 * (`tls`, as `--tls-cert/--tls-key`) with a certificate from a throwaway CA
 * this test makes; a control plane given that CA (`agentCa`, as
 * `--agent-ca`) creates, execs in, proxies to and destroys a sandbox on it,
 * with the host secret on top; without the CA (or with another CA) the
 * agent is refused with an error naming --agent-ca. Needs root, QEMU and
 * the image; skips loudly without them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { request as httpRequest } from "node:http";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { HostAgentService } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { until } from "@wrenn/shared/testing/until.ts";
import { AgentPool } from "../src/agents.ts";
import { realAgentSkipReason, startHarness, type Harness } from "./harness.ts";
import { startRealAgent, type RealAgent } from "./real-agent.ts";

type Json = Record<string, unknown>;

/** A CA and a server certificate it signs for 127.0.0.1, made with openssl in `dir`. */
async function makeCa(
  dir: string,
  name: string,
): Promise<{ ca: string; cert: string; key: string }> {
  const f = (n: string) => join(dir, `${name}-${n}`);
  const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl(
    ...["req", "-x509", ...ec, "-days", "1", "-keyout", f("ca.key"), "-out", f("ca.pem")],
    ...["-subj", `/CN=${name} test CA`],
    ...["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"],
  );
  openssl("req", ...ec, "-keyout", f("agent.key"), "-out", f("agent.csr"), "-subj", "/CN=agent");
  await writeFile(
    f("ext.cnf"),
    "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
  );
  openssl(
    ...["x509", "-req", "-in", f("agent.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key")],
    ...["-CAcreateserial", "-days", "1", "-out", f("agent.pem"), "-extfile", f("ext.cnf")],
  );
  const [ca, cert, key] = await Promise.all(
    ["ca.pem", "agent.pem", "agent.key"].map((n) => readFile(f(n), "utf8")),
  );
  return { ca: ca!, cert: cert!, key: key! };
}

/** An upgrade echo server for the guest: answers 101, then sends back what it gets. */
const ECHO_SERVER = [
  "import socket",
  "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)",
  "s.bind(('0.0.0.0', 8001)); s.listen()",
  "while True:",
  "    c, _ = s.accept(); d = b''",
  "    while b'\\r\\n\\r\\n' not in d: d += c.recv(4096)",
  "    c.sendall(b'HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n\\r\\n')",
  "    while True:",
  "        x = c.recv(4096)",
  "        if not x: break",
  "        c.sendall(x)",
  "    c.close()",
].join("\n");

/** An upgrade to the guest's port 8001 through the control plane's proxy; what came back. */
function upgradeEcho(cpUrl: string, sandboxId: string, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(cpUrl, {
      headers: {
        connection: "Upgrade",
        upgrade: "websocket",
        "e2b-sandbox-id": sandboxId,
        "e2b-sandbox-port": "8001",
      },
    });
    req.on("upgrade", (_res, socket) => {
      let got = "";
      socket.setEncoding("utf8");
      socket.on("data", (d: string) => {
        got += d;
        if (got.length >= payload.length) {
          socket.destroy();
          resolve(got);
        }
      });
      socket.on("error", reject);
      socket.write(payload);
    });
    req.on("response", (res) => {
      res.resume();
      reject(new Error(`no upgrade: ${res.statusCode}`));
    });
    req.on("error", reject);
    req.end();
  });
}

test(
  "control plane ↔ agent over TLS: with --agent-ca it drives a VM, without it the agent is refused",
  { skip: realAgentSkipReason("control plane ↔ agent TLS test"), timeout: 900_000 },
  async () => {
    const dir = await mkdtemp(join(tmpdir(), "wrenn-agent-tls-"));
    let agent: RealAgent | undefined;
    let trusting: Harness | undefined;
    let untrusting: Harness | undefined;
    try {
      const pki = await makeCa(dir, "wrenn");
      const other = await makeCa(dir, "other");
      agent = await startRealAgent("tl", { tls: { cert: pki.cert, key: pki.key } });
      const url = agent.agent.url;
      assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/);
      const target = { address: url, secret: agent.secret };

      // The agent's own answers: the certificate's CA and the secret are both needed; HTTP/2 too.
      const bearer = `Bearer ${agent.secret}`;
      const h2 = createClient(
        HostAgentService,
        createConnectTransport({ baseUrl: url, httpVersion: "2", nodeOptions: { ca: pki.ca } }),
      );
      const info = await h2.getHostInfo({}, { headers: { authorization: bearer } });
      assert.equal(info.hostId, agent.agent.hostId);
      await assert.rejects(h2.getHostInfo({}), /secret/);
      for (const pool of [new AgentPool(), new AgentPool({ ca: other.ca })]) {
        await assert.rejects(
          pool.call(target, (c, o) => c.getHostInfo({}, o), 10_000),
          (e: unknown) =>
            e instanceof Error &&
            /its TLS certificate does not verify/.test(e.message) &&
            /--agent-ca/.test(e.message),
        );
      }
      // Plain HTTP to the TLS port is not answered as the API.
      await assert.rejects(
        new AgentPool().call({ ...target, address: url.replace("https:", "http:") }, (c, o) =>
          c.getHostInfo({}, o),
        ),
      );

      // A control plane with the CA: create → exec → the traffic proxy's hop → destroy.
      trusting = await startHarness("pglite", {
        agents: 0,
        agentCa: pki.ca,
        agentTimeoutMs: 600_000,
      });
      const h = trusting;
      await h.cp.addHost(url, { secret: agent.secret });
      const created = await h.api("/v1/sandboxes", {
        method: "POST",
        json: { vcpus: 1, memory_mb: 256, timeout_sec: 600 },
      });
      assert.equal(created.status, 201, await created.clone().text());
      const id = String(((await created.json()) as Json).sandbox_id);
      const exec = (await (
        await h.api(`/v1/sandboxes/${id}/exec`, {
          method: "POST",
          json: { cmd: "/bin/sh", args: ["-c", "echo hello over tls"] },
        })
      ).json()) as Json;
      assert.equal(exec.stdout, "hello over tls\n");
      // REST file reads take the agent's proxy hop (over TLS, with the same CA).
      const form = new FormData();
      form.set("path", "/tmp/tls.txt");
      form.set("file", new Blob(["a file over tls"]), "tls.txt");
      const put = await h.api(`/v1/sandboxes/${id}/files/write`, { method: "POST", body: form });
      assert.equal(put.status, 200, await put.clone().text());
      const got = await h.api(`/v1/sandboxes/${id}/files/read`, {
        method: "POST",
        json: { path: "/tmp/tls.txt" },
      });
      assert.equal(await got.text(), "a file over tls");
      const health = await fetch(`${h.cp.url}/health`, {
        headers: { "e2b-sandbox-id": id, "e2b-sandbox-port": "49983" },
      });
      assert.equal(health.status, 204, `proxied envd /health: ${await health.text()}`);
      // An upgraded connection (WebSockets) crosses the TLS hop too, as raw bytes both ways.
      const started = await h.api(`/v1/sandboxes/${id}/exec`, {
        method: "POST",
        json: {
          cmd: "/bin/sh",
          args: [
            "-c",
            `cat > /tmp/echo.py <<'EOF'\n${ECHO_SERVER}\nEOF\n(setsid python3 /tmp/echo.py >/dev/null 2>&1 &)`,
          ],
        },
      });
      assert.equal(started.status, 200, await started.clone().text());
      const echoed = await until("the guest's upgrade echo server", 60_000, () =>
        upgradeEcho(h.cp.url, id, "ping over the TLS hop").catch(() => undefined),
      );
      assert.equal(echoed, "ping over the TLS hop");
      assert.equal((await h.api(`/v1/sandboxes/${id}`, { method: "DELETE" })).status, 204);
      assert.deepEqual(
        (await agent.agent.manager.list()).map((s) => s.id),
        [],
      );

      // A control plane without the CA: the host turns unreachable, and the log says why.
      const lines: string[] = [];
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          lines.push(...chunk.toString().split("\n").filter(Boolean));
          done();
        },
      });
      untrusting = await startHarness("pglite", {
        agents: 0,
        reconcileIntervalMs: 200,
        hostTimeoutMs: 1,
        log: pino({ level: "warn" }, sink),
      });
      const hostId = await untrusting.cp.addHost(url, { secret: agent.secret });
      const status = async () =>
        ((await (await untrusting!.api("/v1/admin/hosts")).json()) as Json[]).find(
          (r) => r.id === hostId,
        )?.status;
      await until("the untrusted host to turn unreachable", 30_000, async () =>
        (await status()) === "unreachable" ? true : undefined,
      );
      const said = lines
        .map((l) => JSON.parse(l) as Json)
        .find((l) => l.msg === "host unreachable");
      assert.match(String(said?.err), /TLS certificate does not verify.*--agent-ca/);
      const refused = await untrusting.api("/v1/sandboxes", {
        method: "POST",
        json: { vcpus: 1, memory_mb: 256, timeout_sec: 600 },
      });
      assert.notEqual(refused.status, 201);
      assert.deepEqual(
        (await agent.agent.manager.list()).map((s) => s.id),
        [],
      );
    } finally {
      await untrusting?.close();
      await trusting?.close();
      // Destroys what is left, stops the agent, asserts nothing leaked.
      await agent?.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
);
