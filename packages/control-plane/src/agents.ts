import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { createClient, type CallOptions, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { HostAgentService } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { WrennError } from "@wrenn/shared/errors.ts";
import { fromAgentError } from "./errors.ts";

export type AgentClient = Client<typeof HostAgentService>;

/**
 * Where a host agent listens — `HOST:PORT` (plain HTTP) or an
 * `http(s)://` URL — and the secret it expects ("" for none); a host row is one.
 */
export interface AgentTarget {
  address: string;
  secret: string;
}

/** Generous enough for a cold boot under TCG; a hung agent still fails the call. */
export const DEFAULT_AGENT_TIMEOUT_MS = 120_000;

/**
 * How long a socket to an agent stays open unused. Node's default pool
 * closes it after 5 s, so a burst of creates after a quiet spell opened a
 * connection per RPC (20 in a 20-create burst, each set up on both ends on
 * the event loop every request needs; a TLS handshake each for https
 * agents). Below the agent's own keep-alive (65 s, listener.ts), so the
 * agent never closes a socket just as it is reused.
 */
const AGENT_SOCKET_IDLE_MS = 60_000;

/**
 * Largest Connect message taken from or sent to an agent: an exec reply
 * carries up to 16 MiB of each stream (the agent's cap), and nothing larger
 * is ever buffered here whatever an agent sends.
 */
export const AGENT_MESSAGE_MAX_BYTES = 48 * 1024 * 1024;

export interface AgentPoolOptions {
  /** Deadline of a call when the caller gives none (default DEFAULT_AGENT_TIMEOUT_MS). */
  defaultTimeoutMs?: number | undefined;
  /**
   * PEM CA certificates that sign the agents' TLS certificates (`--agent-ca`),
   * trusted instead of the system's; without it `https://` agents need a
   * certificate the system trusts.
   */
  ca?: string | undefined;
}

/** The base URL of an agent address (`HOST:PORT` is plain HTTP). */
export function agentBaseUrl(address: string): string {
  return address.includes("://") ? address : `http://${address}`;
}

/** Node's codes for a peer certificate that does not verify. */
const UNTRUSTED_CERT =
  /^(SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_UNTRUSTED|CERT_SIGNATURE_FAILURE|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|ERR_TLS_CERT_ALTNAME_INVALID)$/;

/**
 * When the call failed because the agent's certificate did not verify, an
 * error that says what to do about it (null otherwise). The cause chain
 * carries Node's TLS error code; ConnectError's own message only says
 * "internal".
 */
export function untrustedAgentError(err: unknown, address: string): WrennError | null {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && UNTRUSTED_CERT.test(code)) {
      return new WrennError(
        "unavailable",
        `host agent at ${address}: its TLS certificate does not verify (${code}: ${e.message}); start the control plane with --agent-ca naming the CA that signed it, and register the host by a name or address its certificate carries`,
        { cause: err },
      );
    }
    e = e.cause;
  }
  return null;
}

/**
 * One Connect client per host address, reused across requests; each call
 * carries the host's secret as `Authorization: Bearer`. Calls go through
 * `call`, which turns the agent's errors into the API's.
 */
export class AgentPool {
  readonly #clients = new Map<
    string,
    { secret: string; client: AgentClient; sockets: HttpAgent | HttpsAgent }
  >();
  readonly #defaultTimeoutMs: number;
  readonly #ca: string | undefined;

  constructor(options: AgentPoolOptions = {}) {
    this.#defaultTimeoutMs = options.defaultTimeoutMs ?? DEFAULT_AGENT_TIMEOUT_MS;
    this.#ca = options.ca;
  }

  /** The CA that signs `https://` agents' certificates (for other clients of the agents). */
  get ca(): string | undefined {
    return this.#ca;
  }

  client(host: AgentTarget): AgentClient {
    const cached = this.#clients.get(host.address);
    // A re-registered host may come back with a new secret.
    if (cached?.secret === host.secret) return cached.client;
    const baseUrl = agentBaseUrl(host.address);
    const authorization = `Bearer ${host.secret}`;
    const kept = { keepAlive: true, scheduling: "lifo", timeout: AGENT_SOCKET_IDLE_MS } as const;
    const sockets = baseUrl.startsWith("https:")
      ? // Verified against the operator's CA when given; Node's default CAs otherwise.
        new HttpsAgent({ ...kept, ...(this.#ca !== undefined ? { ca: this.#ca } : {}) })
      : new HttpAgent(kept);
    const client = createClient(
      HostAgentService,
      createConnectTransport({
        baseUrl,
        httpVersion: "1.1",
        nodeOptions: { agent: sockets },
        // Without this the agent gzips every response message over 1 KiB: file chunks
        // cost ~100 ms of CPU per MiB on both sides, for bytes that rarely shrink.
        acceptCompression: [],
        readMaxBytes: AGENT_MESSAGE_MAX_BYTES,
        writeMaxBytes: AGENT_MESSAGE_MAX_BYTES,
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
    this.#clients.set(host.address, { secret: host.secret, client, sockets });
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
      throw untrustedAgentError(err, host.address) ?? fromAgentError(err, host.address);
    }
  }

  /** A forgotten host's idle sockets close on their own (AGENT_SOCKET_IDLE_MS); calls in flight finish. */
  forget(address: string): void {
    this.#clients.delete(address);
  }

  /** At shutdown: closes every socket, in use or kept. */
  close(): void {
    for (const { sockets } of this.#clients.values()) sockets.destroy();
    this.#clients.clear();
  }
}
