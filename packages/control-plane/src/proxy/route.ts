import type { IncomingMessage } from "node:http";
import { SANDBOX_ID, parsePort } from "@wrenn/shared/sandbox-proxy.ts";

/** A request meant for a sandbox's port, or one that says so but is malformed. */
export type ProxyRoute =
  { sandboxId: string; port: number; error?: undefined } | { error: string; sandboxId?: string };

const HOST_LABEL = /^(\d{1,5})-([a-z0-9]{1,64})$/;

/**
 * Which sandbox port a request is for, or null for the API. Host routing:
 * `<port>-<sandboxId>.<domain>` (what the SDK builds from `domain`, and the
 * only way signed file URLs arrive). Header routing: `E2b-Sandbox-Id` and
 * `E2b-Sandbox-Port` (what the SDK sends on every envd call, the way through
 * one URL such as `E2B_SANDBOX_URL` or `sandbox.<domain>`).
 */
export function routeOf(req: IncomingMessage, domain: string | null): ProxyRoute | null {
  const host = (req.headers.host ?? "").toLowerCase().replace(/:\d+$/, "");
  if (domain && host.endsWith(`.${domain}`)) {
    const label = host.slice(0, -domain.length - 1);
    const m = HOST_LABEL.exec(label);
    if (m?.[1] && m[2]) {
      const port = parsePort(m[1]);
      if (port === null) return { error: `'${m[1]}' is not a port`, sandboxId: m[2] };
      return { sandboxId: m[2], port };
    }
  }
  const id = req.headers["e2b-sandbox-id"];
  const portHeader = req.headers["e2b-sandbox-port"];
  if (id === undefined && portHeader === undefined) return null;
  if (typeof id !== "string" || !SANDBOX_ID.test(id)) {
    return { error: "E2b-Sandbox-Id must be a sandbox id (lowercase letters and digits)" };
  }
  const port = parsePort(typeof portHeader === "string" ? portHeader : undefined);
  if (port === null) return { error: "E2b-Sandbox-Port must be a port (1-65535)", sandboxId: id };
  return { sandboxId: id, port };
}
