import { createClient, type CallOptions, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { HostAgentService } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { fromAgentError } from "./errors.ts";

export type AgentClient = Client<typeof HostAgentService>;

/** Generous enough for a cold boot under TCG; a hung agent still fails the call. */
export const DEFAULT_AGENT_TIMEOUT_MS = 120_000;

/**
 * One Connect client per host address, reused across requests. Calls go
 * through `call`, which turns the agent's errors into the API's.
 */
export class AgentPool {
  readonly #clients = new Map<string, AgentClient>();
  readonly #defaultTimeoutMs: number;

  constructor(defaultTimeoutMs = DEFAULT_AGENT_TIMEOUT_MS) {
    this.#defaultTimeoutMs = defaultTimeoutMs;
  }

  client(address: string): AgentClient {
    let client = this.#clients.get(address);
    if (!client) {
      const baseUrl = address.includes("://") ? address : `http://${address}`;
      client = createClient(
        HostAgentService,
        createConnectTransport({ baseUrl, httpVersion: "1.1" }),
      );
      this.#clients.set(address, client);
    }
    return client;
  }

  async call<T>(
    address: string,
    fn: (client: AgentClient, options: CallOptions) => Promise<T>,
    timeoutMs?: number,
  ): Promise<T> {
    try {
      return await fn(this.client(address), { timeoutMs: timeoutMs ?? this.#defaultTimeoutMs });
    } catch (err) {
      throw fromAgentError(err, address);
    }
  }

  forget(address: string): void {
    this.#clients.delete(address);
  }
}
