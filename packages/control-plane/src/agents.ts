import { createClient, type CallOptions, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { HostAgentService } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { fromAgentError } from "./errors.ts";

export type AgentClient = Client<typeof HostAgentService>;

/** Where a host agent listens and the secret it expects ("" for none); a host row is one. */
export interface AgentTarget {
  address: string;
  secret: string;
}

/** Generous enough for a cold boot under TCG; a hung agent still fails the call. */
export const DEFAULT_AGENT_TIMEOUT_MS = 120_000;

/**
 * One Connect client per host address, reused across requests; each call
 * carries the host's secret as `Authorization: Bearer`. Calls go through
 * `call`, which turns the agent's errors into the API's.
 */
export class AgentPool {
  readonly #clients = new Map<string, { secret: string; client: AgentClient }>();
  readonly #defaultTimeoutMs: number;

  constructor(defaultTimeoutMs = DEFAULT_AGENT_TIMEOUT_MS) {
    this.#defaultTimeoutMs = defaultTimeoutMs;
  }

  client(host: AgentTarget): AgentClient {
    const cached = this.#clients.get(host.address);
    // A re-registered host may come back with a new secret.
    if (cached?.secret === host.secret) return cached.client;
    const baseUrl = host.address.includes("://") ? host.address : `http://${host.address}`;
    const authorization = `Bearer ${host.secret}`;
    const client = createClient(
      HostAgentService,
      createConnectTransport({
        baseUrl,
        httpVersion: "1.1",
        // Without this the agent gzips every response message over 1 KiB: file chunks
        // cost ~100 ms of CPU per MiB on both sides, for bytes that rarely shrink.
        acceptCompression: [],
        interceptors: host.secret
          ? [
              (next) => (req) => {
                req.header.set("authorization", authorization);
                return next(req);
              },
            ]
          : [],
      }),
    );
    this.#clients.set(host.address, { secret: host.secret, client });
    return client;
  }

  async call<T>(
    host: AgentTarget,
    fn: (client: AgentClient, options: CallOptions) => Promise<T>,
    timeoutMs?: number,
  ): Promise<T> {
    try {
      return await fn(this.client(host), { timeoutMs: timeoutMs ?? this.#defaultTimeoutMs });
    } catch (err) {
      throw fromAgentError(err, host.address);
    }
  }

  forget(address: string): void {
    this.#clients.delete(address);
  }
}
