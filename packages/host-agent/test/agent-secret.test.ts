/**
 * A host agent started with a secret answers only calls that carry it as
 * `Authorization: Bearer`. No VM is started, but the agent itself needs root.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { HostAgentService } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { createLogger } from "@wrenn/shared/log.ts";
import { startHostAgent } from "../src/agent.ts";
import { vmSkipReason } from "./agent-harness.ts";
import { assertNoLeaks, snapshotHostResources } from "./leaks.ts";

const log = createLogger("host-agent", process.env.WRENN_LOG_LEVEL ?? "warn");

test(
  "an agent with a secret refuses calls without it",
  { skip: vmSkipReason("host agent secret test") },
  async () => {
    const prefix = `was${(process.pid % 1296).toString(36)}`;
    const root = await mkdtemp(join(tmpdir(), `wrenn-${prefix}-`));
    const before = await snapshotHostResources({ prefix, markers: [root] });
    const secret = "a-host-secret-0123456789";
    const options = {
      listen: "127.0.0.1:0",
      dataDir: join(root, "data"),
      networkPrefix: prefix,
      log,
    };
    await assert.rejects(startHostAgent({ ...options, secret: "too short" }), /16-256 printable/);
    const agent = await startHostAgent({ ...options, secret });
    try {
      const client = (authorization?: string) => {
        const interceptors: Interceptor[] = authorization
          ? [
              (next) => (req) => {
                req.header.set("authorization", authorization);
                return next(req);
              },
            ]
          : [];
        return createClient(
          HostAgentService,
          createConnectTransport({ baseUrl: agent.url, httpVersion: "1.1", interceptors }),
        );
      };
      for (const auth of [undefined, "Bearer wrong-secret-0123456789", secret, `Basic ${secret}`]) {
        await assert.rejects(client(auth).getHostInfo({}), (err: unknown) => {
          assert.ok(err instanceof ConnectError, String(err));
          assert.equal(err.code, Code.Unauthenticated, `${auth}: ${err.message}`);
          assert.match(err.message, /secret/);
          return true;
        });
      }
      // Streams are guarded too, before the agent looks at the request.
      await assert.rejects(
        (async () => {
          for await (const _ of client().execStream({ sandboxId: "nope", cmd: "true" }));
        })(),
        (err: unknown) => err instanceof ConnectError && err.code === Code.Unauthenticated,
      );
      const info = await client(`Bearer ${secret}`).getHostInfo({});
      assert.equal(info.hostId, agent.hostId);
      assert.equal((await client(`bearer  ${secret}`).listSandboxes({})).sandboxes.length, 0);
    } finally {
      await agent.shutdown();
      await assertNoLeaks(before);
      await rm(root, { recursive: true, force: true });
    }
  },
);
