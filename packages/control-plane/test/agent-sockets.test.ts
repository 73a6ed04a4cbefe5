/**
 * The control plane keeps its sockets to an agent open between calls, past
 * Node's default 5 s pool: a burst of creates after a quiet spell must not
 * open a connection per call (nor, to an https agent, a TLS handshake per
 * call). Shutting the pool down closes them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { HostAgentService } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { until } from "@wrenn/shared/testing/until.ts";
import { AgentPool } from "../src/agents.ts";

/** A Connect server that answers GetHostInfo and keeps idle sockets 65 s, as the agent's listener does. */
async function agentServer(): Promise<{ server: Server; address: string; sockets: Set<Socket> }> {
  const routes = (router: ConnectRouter) =>
    router.service(HostAgentService, { getHostInfo: () => ({ hostId: "h", totalVcpus: 2 }) });
  const server = createServer(connectNodeAdapter({ routes }));
  server.keepAliveTimeout = 65_000;
  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, address: `127.0.0.1:${(server.address() as AddressInfo).port}`, sockets };
}

test("calls to an agent reuse one socket after 5 s of quiet; close() ends it", async (t) => {
  const agent = await agentServer();
  t.after(() => new Promise<void>((resolve) => agent.server.close(() => resolve())));
  let connections = 0;
  agent.server.on("connection", () => connections++);
  const pool = new AgentPool();
  t.after(() => pool.close());
  const target = { address: agent.address, secret: "" };
  const info = await pool.call(target, (c, o) => c.getHostInfo({}, o));
  assert.equal(info.hostId, "h");
  // Node's default pool closes an idle socket after 5 s.
  await new Promise((r) => setTimeout(r, 5500));
  await Promise.all([1, 2].map(() => pool.call(target, (c, o) => c.getHostInfo({}, o))));
  await pool.call(target, (c, o) => c.getHostInfo({}, o));
  // The first call's socket, and one more for the two at once.
  assert.equal(connections, 2);
  pool.close();
  await until("the pool's sockets to close", 2000, () =>
    agent.sockets.size === 0 ? true : undefined,
  );
});
