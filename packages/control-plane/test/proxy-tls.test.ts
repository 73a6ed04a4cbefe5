/**
 * The control plane over HTTPS (`tls`), as the SDK needs for host-routed
 * sandbox URLs (`https://<port>-<id>.<domain>`), and the proxy-only
 * listener (`proxyPort`): both answer as the plain listener does. No VMs:
 * what crosses TLS is the routing, the API and E2B's 502 shape.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startControlPlane } from "../src/server.ts";
import { freshDatabase, silent } from "./harness.ts";
import { rawRequest } from "./raw-http.ts";

const DOMAIN = "sbx.example.test";

function get(url: string, host: string, ca: string) {
  const u = new URL(url);
  return rawRequest(u.origin, u.pathname, { host, ca });
}

test("HTTPS with --tls-cert/--tls-key, and a proxy-only port", { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), "wrenn-tls-"));
  try {
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-keyout",
        join(dir, "key.pem"),
        "-out",
        join(dir, "cert.pem"),
        "-subj",
        `/CN=${DOMAIN}`,
        "-addext",
        `subjectAltName=DNS:${DOMAIN},DNS:*.${DOMAIN},IP:127.0.0.1`,
      ],
      { stdio: "ignore" },
    );
    const cert = await readFile(join(dir, "cert.pem"), "utf8");
    const key = await readFile(join(dir, "key.pem"), "utf8");
    const db = await freshDatabase("pglite");
    const cp = await startControlPlane({
      port: 0,
      log: silent,
      reconcileIntervalMs: 3600_000,
      ...db.options,
      domain: DOMAIN,
      tls: { cert, key },
      proxyPort: 0,
    });
    try {
      assert.match(cp.url, /^https:\/\/127\.0\.0\.1:\d+$/);
      const health = await get(`${cp.url}/health`, "127.0.0.1", cert);
      assert.equal(health.status, 200, health.body);
      assert.equal((JSON.parse(health.body) as { status: string }).status, "ok");
      // Host routing over TLS, as the SDK sends it: E2B's 502 for a sandbox that does not exist.
      const routed = await get(`${cp.url}/health`, `49983-nosuchsandbox.${DOMAIN}`, cert);
      assert.equal(routed.status, 502);
      assert.deepEqual(JSON.parse(routed.body), {
        code: 502,
        message: "The sandbox was not found",
        sandboxId: "nosuchsandbox",
      });
      // The proxy-only port routes sandboxes and nothing else.
      assert.ok(cp.proxyUrl?.startsWith("https://"), String(cp.proxyUrl));
      const proxyUrl = cp.proxyUrl ?? "";
      const viaProxyPort = await get(`${proxyUrl}/`, `8080-nosuchsandbox.${DOMAIN}`, cert);
      assert.equal(viaProxyPort.status, 502, viaProxyPort.body);
      const notSandbox = await get(`${proxyUrl}/health`, "127.0.0.1", cert);
      assert.equal(notSandbox.status, 400, notSandbox.body);
      assert.match(
        (JSON.parse(notSandbox.body) as { message: string }).message,
        /only reaches sandboxes/,
      );
    } finally {
      await cp.close();
      await db.drop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
