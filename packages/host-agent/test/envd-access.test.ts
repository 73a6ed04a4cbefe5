/**
 * A sandbox's envd token and env vars on real VMs: the token given at create
 * locks envd against anyone else who reaches the slot address (the agent
 * itself passes it), also after pause/resume and in a template's clones;
 * env vars given at create reach every process envd starts.
 * Needs root and the image (`./wrenn image build`).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { AgentHarness, vmSkipReason } from "./agent-harness.ts";

const skip = vmSkipReason("envd token and env var tests");
const h = new AgentHarness("wt");

/**
 * A raw HTTP call to the guest's envd, as any process on the host could
 * make, on a connection of its own: slot addresses are reused, and a pooled
 * connection to an earlier guest at the same address would only be reset.
 */
function raw(
  address: string,
  path: string,
  token?: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`http://${address}${path}`, {
      method: init.method ?? "GET",
      agent: false,
      headers: { ...(token ? { "x-access-token": token } : {}), ...init.headers },
      signal: AbortSignal.timeout(30_000),
    });
    req.once("response", (res) => {
      res.resume();
      res.once("end", () => resolve(res.statusCode ?? 0));
    });
    req.once("error", reject);
    req.end(init.body);
  });
}

/** Process/List over Connect JSON: the RPC side of envd. */
const listProcesses = (address: string, token?: string) =>
  raw(address, "/process.Process/List", token, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });

async function assertLocked(address: string, token: string, when: string): Promise<void> {
  assert.equal(await raw(address, "/health"), 204, `${when}: /health stays open`);
  assert.equal(await raw(address, "/metrics"), 401, `${when}: /metrics without the token`);
  assert.equal(await raw(address, "/metrics", "wrong-token-123456"), 401, `${when}: wrong token`);
  assert.equal(await raw(address, "/files?path=/etc/hostname"), 401, `${when}: /files`);
  assert.equal(await listProcesses(address), 401, `${when}: Process/List without the token`);
  assert.equal(await raw(address, "/metrics", token), 200, `${when}: /metrics with the token`);
  assert.equal(await listProcesses(address, token), 200, `${when}: Process/List with the token`);
}

describe("envd access token and env vars", { skip, concurrency: false, timeout: 600_000 }, () => {
  before(() => h.setUp().then(() => h.start()));
  after(() => h.tearDown());

  test("the create's token locks envd, also after pause/resume; env vars reach every process", async () => {
    const id = h.newId();
    const token = `tok-${id}-0123456789`;
    try {
      const sb = await h.client.createSandbox({
        sandboxId: id,
        template: "minimal",
        vcpus: 1,
        memoryMb: 256,
        envdAccessToken: token,
        envVars: { WRENN_TEST_A: "alpha", WRENN_TEST_B: "with space" },
      });
      const address = sb.sandbox?.envdAddress ?? "";
      assert.match(address, /^10\.11\.\d+\.\d+:49983$/);
      await assertLocked(address, token, "after create");

      // The agent's own calls carry the token.
      const envs = async (user?: string) =>
        Buffer.from(
          (
            await h.client.exec({
              sandboxId: id,
              cmd: "/bin/sh",
              args: ["-c", `echo "$WRENN_TEST_A|$WRENN_TEST_B"; sh -c 'echo "$WRENN_TEST_A"'`],
              timeoutSec: 60,
              ...(user ? { user } : {}),
            })
          ).stdout,
        ).toString();
      const expected = "alpha|with space\nalpha\n";
      assert.equal(await envs(), expected, "default user and its child");
      assert.equal(await envs("root"), expected, "as root");
      // A request's own env wins over the sandbox's.
      const own = await h.client.exec({
        sandboxId: id,
        cmd: "/bin/sh",
        args: ["-c", 'echo "$WRENN_TEST_A"'],
        envs: { WRENN_TEST_A: "mine" },
        timeoutSec: 60,
      });
      assert.equal(Buffer.from(own.stdout).toString(), "mine\n");
      // A background process started in one call is seen with them from another.
      const pid = (await h.sh(id, "nohup sleep 300 >/dev/null 2>&1 & echo $!")).stdout.trim();
      const bg = await h.sh(id, `tr '\\0' '\\n' < /proc/${pid}/environ | grep '^WRENN_TEST_A='`);
      assert.equal(bg.stdout, "WRENN_TEST_A=alpha\n");

      await h.client.pauseSandbox({ sandboxId: id });
      const resumed = await h.client.resumeSandbox({ sandboxId: id });
      const again = resumed.sandbox?.envdAddress ?? "";
      await assertLocked(again, token, "after resume");
      assert.equal(await envs(), expected, "after resume");
    } finally {
      await h.client.destroySandbox({ sandboxId: id }).catch(() => undefined);
    }
    await h.noLeaks();
  });

  test("a template's clone answers only to its own token, not the template's", async () => {
    const src = h.newId();
    const clone = h.newId();
    const name = `tpl-${src}`;
    const srcToken = `tok-${src}-0123456789`;
    const cloneToken = `tok-${clone}-0123456789`;
    try {
      await h.create(src, { token: srcToken });
      await h.client.createSnapshot({ sandboxId: src, name });
      const sb = await h.create(clone, { template: name, token: cloneToken });
      const address = sb?.envdAddress ?? "";
      await assertLocked(address, cloneToken, "clone");
      assert.equal(await raw(address, "/metrics", srcToken), 401, "the template's token");
      assert.equal((await h.sh(clone, "echo ok")).stdout, "ok\n");
    } finally {
      for (const id of [clone, src]) {
        await h.client.destroySandbox({ sandboxId: id }).catch(() => undefined);
      }
      await h.client.deleteSnapshot({ name }).catch(() => undefined);
    }
    await h.noLeaks();
  });
});
