import type * as Crypto from "node:crypto";
import type { IncomingMessage } from "node:http";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { EnvdState } from "../state.ts";

// node:crypto is loaded on first use (a signed URL): loading it is ≈0.1 s
// of a TCG guest's CPU.
function crypto(): typeof Crypto {
  return process.getBuiltinModule("node:crypto");
}

/**
 * Whether two secrets are equal, in time that depends on their length
 * alone. Not crypto's timingSafeEqual: every request checks the token, and
 * loading node:crypto for the first one cost each sandbox with a token
 * ≈ 80 ms of its VMM's CPU and 6 000 more translated blocks under TCG.
 */
export function sameSecret(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * The e2b SDK's signed /files URLs: "v1_" + base64(sha256(
 * "<path>:<read|write>:<user>:<token>[:<expiration>]")) without padding,
 * where path and user are the query parameters exactly as sent.
 */
export function fileSignature(
  path: string,
  operation: "read" | "write",
  user: string,
  token: string,
  expiration?: number,
): string {
  const raw =
    `${path}:${operation}:${user}:${token}` + (expiration === undefined ? "" : `:${expiration}`);
  return "v1_" + crypto().createHash("sha256").update(raw).digest("base64").replace(/=+$/, "");
}

function checkSignature(url: URL, operation: "read" | "write", token: string, nowMs: number): void {
  const signature = url.searchParams.get("signature") ?? "";
  const rawExpiration = url.searchParams.get("signature_expiration");
  let expiration: number | undefined;
  if (rawExpiration !== null) {
    expiration = Number(rawExpiration);
    if (!Number.isInteger(expiration)) {
      throw new WrennError(
        "unauthenticated",
        "signature_expiration must be a unix time in seconds",
      );
    }
    if (expiration * 1000 < nowMs)
      throw new WrennError("unauthenticated", "the signed URL has expired");
  }
  const path = url.searchParams.get("path") ?? "";
  const user = url.searchParams.get("username") ?? "";
  if (!sameSecret(signature, fileSignature(path, operation, user, token, expiration))) {
    throw new WrennError("unauthenticated", "invalid signature for this path, operation and user");
  }
}

/**
 * Once /init set an access token, every route but /health needs it in
 * X-Access-Token; /files also takes a signed URL instead.
 */
export function checkAccess(
  req: IncomingMessage,
  url: URL,
  state: EnvdState,
  fileOperation?: "read" | "write",
): void {
  const token = state.accessToken;
  if (token === undefined) return;
  const given = req.headers["x-access-token"];
  if (typeof given === "string" && sameSecret(given, token)) return;
  if (fileOperation !== undefined && url.searchParams.has("signature")) {
    checkSignature(url, fileOperation, token, Date.now());
    return;
  }
  throw new WrennError("unauthenticated", "missing or wrong X-Access-Token");
}
