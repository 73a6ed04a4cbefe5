import { and, asc, eq, isNull, lt, or, sql } from "drizzle-orm";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { Caller } from "../context.ts";
import type { Db } from "../db/open.ts";
import { InFlight } from "@wrenn/shared/in-flight.ts";
import { apiKeys, teamMembers, users } from "../db/schema.ts";
import type { Sessions } from "./sessions.ts";
import { clientKey, type Throttles } from "./throttle.ts";
import { API_KEY_PATTERN, API_KEY_PREFIXES, sha256 } from "./tokens.ts";

export interface Credentials {
  apiKey?: string | null;
  /** A session JWT from `Authorization: Bearer` (or `?token=` on WebSocket routes). */
  bearer?: string | null;
  /** `X-Team-Id`: which of a user's teams a session acts for. */
  teamId?: string | null;
}

export interface AuthDeps {
  db: Db;
  sessions: Sessions;
  throttles: Pick<Throttles, "badCredentials">;
}

/**
 * The caller behind a request's credentials. Refusals are counted per client
 * address: past the limit, that address's credentials are not even looked up
 * (429) until its bucket refills; accepted ones cost nothing.
 */
export async function authenticate(
  deps: AuthDeps,
  credentials: Credentials,
  address?: string,
): Promise<Caller> {
  // A request without credentials costs no lookup: it is refused, not counted.
  if (!credentials.apiKey && !credentials.bearer) return lookUp(deps.db, deps.sessions, {});
  const client = clientKey(address);
  const throttle = deps.throttles.badCredentials;
  throttle.check(client);
  try {
    return await lookUp(deps.db, deps.sessions, credentials);
  } catch (err) {
    if (err instanceof WrennError && err.code === "unauthenticated") throttle.take(client);
    throw err;
  }
}

async function lookUp(db: Db, sessions: Sessions, credentials: Credentials): Promise<Caller> {
  if (credentials.apiKey) return byApiKey(db, credentials.apiKey);
  if (credentials.bearer) {
    // API keys also work as bearer tokens, for clients that can only set Authorization.
    const bearer = credentials.bearer;
    if (API_KEY_PREFIXES.some((p) => bearer.startsWith(p))) return byApiKey(db, bearer);
    const userId = await sessions.verify(credentials.bearer);
    return bySession(db, userId, credentials.teamId ?? null);
  }
  throw new WrennError(
    "unauthenticated",
    "send an API key in X-API-Key, or a session token in Authorization: Bearer",
  );
}

async function byApiKey(db: Db, key: string): Promise<Caller> {
  if (!API_KEY_PATTERN.test(key)) {
    throw new WrennError(
      "unauthenticated",
      "malformed API key; keys look like e2b_ + 40 hex digits (or wrn_ + 32 for older ones)",
    );
  }
  const hash = sha256(key);
  let lookups = keyLookups.get(db);
  if (!lookups) keyLookups.set(db, (lookups = new InFlight()));
  const row = await lookups.run(hash, () => keyRow(db, hash));
  if (!row) throw new WrennError("unauthenticated", "unknown or revoked API key");
  if (!row.role) {
    throw new WrennError(
      "unauthenticated",
      "this API key's creator is no longer a member of its team; a team admin can create a new key",
    );
  }
  // Recording every use would make each request a write; a few seconds of
  // slack is plenty, and this process skips even the conditional update
  // while its own last one is that recent (with the embedded database every
  // query is CPU on the request's event loop).
  const now = Date.now();
  if (now - (lastUseWritten.get(row.id) ?? 0) >= LAST_USED_SLACK_MS) {
    if (lastUseWritten.size >= 10_000) lastUseWritten.clear();
    lastUseWritten.set(row.id, now);
    recordUse(db, row.id);
  }
  return {
    teamId: row.teamId,
    role: row.role,
    userId: row.userId,
    isAdmin: row.isAdmin ?? false,
    via: "api_key",
  };
}

/** Lookups of one key hash in flight, per database. */
const keyLookups = new WeakMap<Db, InFlight<KeyRow | undefined>>();

type KeyRow = Awaited<ReturnType<typeof keyRow>>;

/**
 * A key acts as its creator does in its team today: with their current
 * role, and not at all once they left the team (or were deleted).
 */
async function keyRow(db: Db, hash: string) {
  const [row] = await db
    .select({
      id: apiKeys.id,
      teamId: apiKeys.teamId,
      userId: apiKeys.createdBy,
      isAdmin: users.isAdmin,
      role: teamMembers.role,
    })
    .from(apiKeys)
    .leftJoin(users, eq(users.id, apiKeys.createdBy))
    .leftJoin(
      teamMembers,
      and(eq(teamMembers.teamId, apiKeys.teamId), eq(teamMembers.userId, apiKeys.createdBy)),
    )
    .where(and(eq(apiKeys.keyHash, hash), isNull(apiKeys.revokedAt)));
  return row;
}

const LAST_USED_SLACK_MS = 5000;
/** When this process last recorded each key's use. */
const lastUseWritten = new Map<string, number>();

function recordUse(db: Db, keyId: string): void {
  void db
    .update(apiKeys)
    .set({ lastUsedAt: sql`now()` })
    .where(
      and(
        eq(apiKeys.id, keyId),
        or(isNull(apiKeys.lastUsedAt), lt(apiKeys.lastUsedAt, sql`now() - interval '5 seconds'`)),
      ),
    )
    .catch(() => {});
}

async function bySession(db: Db, userId: string, teamId: string | null): Promise<Caller> {
  const [user] = await db.select().from(users).where(eq(users.id, userId));
  if (!user) throw new WrennError("unauthenticated", "the session's user no longer exists");
  const memberships = await db
    .select({ teamId: teamMembers.teamId, role: teamMembers.role })
    .from(teamMembers)
    .where(eq(teamMembers.userId, userId))
    .orderBy(asc(teamMembers.createdAt));
  const membership =
    teamId === null ? memberships[0] : memberships.find((m) => m.teamId === teamId);
  if (!membership) {
    throw new WrennError(
      teamId === null ? "failed_precondition" : "permission_denied",
      teamId === null
        ? "you belong to no team; create one"
        : `you are not a member of team ${teamId}`,
    );
  }
  return {
    teamId: membership.teamId,
    role: membership.role,
    userId,
    isAdmin: user.isAdmin,
    via: "session",
  };
}
