import type * as Crypto from "node:crypto";
import type { IncomingMessage } from "node:http";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { EnvdState } from "../state.ts";

// node:crypto is loaded on first use: a fresh sandbox needs none of it
// before its first exec, and loading it is ≈0.1 s of envd's start in a TCG guest.
function crypto(): typeof Crypto {
  return process.getBuiltinModule("node:crypto");
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && crypto().timingSafeEqual(x, y);
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
