import { randomBytes } from "node:crypto";
import { eq } from "drizzle-orm";
import { SignJWT, jwtVerify } from "jose";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { Db } from "../db/open.ts";
import { settings } from "../db/schema.ts";

const ISSUER = "wrenn";
const AUDIENCE = "wrenn-dashboard";

export interface Sessions {
  issue(userId: string): Promise<{ token: string; expiresAt: Date }>;
  /** The user id of a valid session token. */
  verify(token: string): Promise<string>;
}

/**
 * Dashboard sessions are HS256 JWTs. The key comes from WRENN_JWT_SECRET or,
 * when that is unset, from a secret generated once and kept in the database,
 * so every control plane instance on that database accepts the same sessions.
 */
export async function createSessions(
  db: Db,
  options: { secret?: string; ttlSec?: number } = {},
): Promise<Sessions> {
  const secret = options.secret ?? (await storedSecret(db));
  const key = new TextEncoder().encode(secret);
  const ttlSec = options.ttlSec ?? 7 * 24 * 3600;
  return {
    async issue(userId) {
      const expiresAt = new Date(Date.now() + ttlSec * 1000);
      const token = await new SignJWT({})
        .setProtectedHeader({ alg: "HS256" })
        .setSubject(userId)
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setIssuedAt()
        .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
        .sign(key);
      return { token, expiresAt };
    },
    async verify(token) {
      try {
        const { payload } = await jwtVerify(token, key, {
          issuer: ISSUER,
          audience: AUDIENCE,
          algorithms: ["HS256"],
        });
        if (typeof payload.sub !== "string") throw new Error("no subject");
        return payload.sub;
      } catch (err) {
        throw new WrennError("unauthenticated", "session is invalid or expired; log in again", {
          cause: err,
        });
      }
    },
  };
}

async function storedSecret(db: Db): Promise<string> {
  await db
    .insert(settings)
    .values({ key: "jwt_secret", value: randomBytes(32).toString("base64url") })
    .onConflictDoNothing();
  const [row] = await db.select().from(settings).where(eq(settings.key, "jwt_secret"));
  if (!row) throw new WrennError("internal", "jwt secret missing after insert");
  return row.value;
}
