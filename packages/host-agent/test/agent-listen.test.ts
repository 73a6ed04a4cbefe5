/**
 * Where the agent may listen without a secret (loopback only) and what it
 * says otherwise; a TLS certificate that does not load is refused before
 * the agent starts. The refusals need root only because the agent's root
 * check comes first; the rules themselves are checked without.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WrennError } from "@wrenn/shared/errors.ts";
import { runCommand } from "@wrenn/shared/command.ts";
import { checkTls, isLoopback, requireSecretOffLoopback } from "../src/listener.ts";
import { startHostAgent } from "../src/agent.ts";

const refused = (pattern: RegExp) => (e: unknown) =>
  e instanceof WrennError && e.code === "invalid_argument" && pattern.test(e.message);

test("loopback addresses, and the secret off them", { timeout: 5_000 }, () => {
  for (const h of ["127.0.0.1", "127.1.2.3", "::1", "localhost"]) assert.ok(isLoopback(h), h);
  for (const h of ["0.0.0.0", "::", "192.0.2.2", "10.0.0.1", "example.com", "127.0.0.1.example"]) {
    assert.ok(!isLoopback(h), h);
  }
  assert.doesNotThrow(() => requireSecretOffLoopback("127.0.0.1:7070", "127.0.0.1", undefined));
  assert.doesNotThrow(() => requireSecretOffLoopback("0.0.0.0:7070", "0.0.0.0", "s".repeat(16)));
  assert.throws(
    () => requireSecretOffLoopback("0.0.0.0:7070", "0.0.0.0", undefined),
    refused(
      /^--listen 0\.0\.0\.0:7070 is reachable from other machines: give the agent a --secret/,
    ),
  );
  assert.throws(
    () => checkTls({ cert: "not a certificate", key: "nor a key" }),
    refused(/^--tls-cert\/--tls-key: not a usable PEM/),
  );
});

const notRoot = process.getuid?.() !== 0 ? "needs root (the agent's first check)" : false;
if (notRoot) console.warn(`\n!!! SKIPPING the agent's listen refusals: ${notRoot}\n`);

test(
  "the agent refuses a non-loopback address without a secret before it starts anything",
  { skip: notRoot, timeout: 60_000 },
  async () => {
    const root = await mkdtemp(join(tmpdir(), "wrenn-listen-"));
    try {
      const dataDir = join(root, "data");
      for (const listen of ["0.0.0.0:0", "[::]:0"]) {
        await assert.rejects(
          startHostAgent({ listen, dataDir }),
          refused(
            /is reachable from other machines: give the agent a --secret \(or WRENN_HOST_SECRET\)/,
          ),
          listen,
        );
      }
      await assert.rejects(
        startHostAgent({ listen: "127.0.0.1:0", dataDir, tls: { cert: "x", key: "y" } }),
        refused(/--tls-cert/),
      );
      // Nothing was started: not even the data dir.
      await assert.rejects(runCommand("ls", [dataDir]));

      // The command says it in one line, before checking the host's tools or data dir.
      const cli = new URL("../../cli/src/main.ts", import.meta.url).pathname;
      const r = await runCommand(
        process.execPath,
        [cli, "host-agent", "--listen", "0.0.0.0:7070", "--data-dir", dataDir],
        {
          env: { ...process.env, WRENN_HOST_SECRET: "" },
        },
      ).catch((e: unknown) => e as { exitCode: number; stderr: string; stdout: string });
      assert.ok("exitCode" in r && r.exitCode !== 0, JSON.stringify(r));
      assert.equal(
        r.stderr.trim(),
        "wrenn host-agent: --listen 0.0.0.0:7070 is reachable from other machines: give the agent a --secret (or WRENN_HOST_SECRET) and register the host with it, or listen on 127.0.0.1 (invalid_argument)",
      );
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  },
);
