import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/** What fits an HTTP header unquoted; the control plane checks the same. */
export const HOST_SECRET_PATTERN = /^[\x21-\x7e]{16,256}$/;

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

/**
 * Rejects calls without `Authorization: Bearer <secret>`: the agent runs VMs
 * as root, so with a secret only the control plane that holds it drives it.
 * Digests compare in constant time whatever the lengths.
 */
export function hostSecretInterceptor(secret: string): Interceptor {
  const want = digest(secret);
  return (next) => async (req) => {
    const given = /^bearer\s+(\S+)\s*$/i.exec(req.header.get("authorization") ?? "")?.[1];
    if (given === undefined || !timingSafeEqual(digest(given), want)) {
      throw new ConnectError(
        given === undefined
          ? "this host agent needs its secret: send Authorization: Bearer <secret> (the control plane sends the secret the host was registered with)"
          : "wrong host secret: register the host with the secret the agent was started with (--secret, WRENN_HOST_SECRET)",
        Code.Unauthenticated,
      );
    }
    return next(req);
  };
}
