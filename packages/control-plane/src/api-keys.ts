import { and, asc, eq, isNull } from "drizzle-orm";
import { WrennError } from "@wrenn/shared/errors.ts";
import { newApiKey } from "./auth/tokens.ts";
import { requireTeamRole, type Caller } from "./context.ts";
import type { Db } from "./db/open.ts";
import { apiKeys } from "./db/schema.ts";

export type KeyRow = typeof apiKeys.$inferSelect;

export function keyJson(k: KeyRow) {
  return {
    id: k.id,
    name: k.name,
    prefix: k.prefix,
    created_at: k.createdAt.toISOString(),
    last_used_at: k.lastUsedAt?.toISOString() ?? null,
    revoked_at: k.revokedAt?.toISOString() ?? null,
  };
}

/** A team's API keys: stored hashed, shown once. */
export class ApiKeyService {
  readonly #db: Db;

  constructor(deps: { db: Db }) {
    this.#db = deps.db;
  }

  /** The new key in clear, with its row; the clear key is never stored. */
  async create(caller: Caller, name: string): Promise<{ row: KeyRow; key: string }> {
    requireTeamRole(caller, "create API keys");
    const k = newApiKey();
    const [row] = await this.#db
      .insert(apiKeys)
      .values({
        teamId: caller.teamId,
        createdBy: caller.userId,
        name,
        prefix: k.prefix,
        keyHash: k.hash,
      })
      .returning();
    if (!row) throw new WrennError("internal", "api key insert returned nothing");
    return { row, key: k.key };
  }

  async list(caller: Caller): Promise<KeyRow[]> {
    return this.#db
      .select()
      .from(apiKeys)
      .where(eq(apiKeys.teamId, caller.teamId))
      .orderBy(asc(apiKeys.createdAt));
  }

  async revoke(caller: Caller, id: string): Promise<void> {
    requireTeamRole(caller, "revoke API keys");
    const revoked = await this.#db
      .update(apiKeys)
      .set({ revokedAt: new Date() })
      .where(and(eq(apiKeys.id, id), eq(apiKeys.teamId, caller.teamId), isNull(apiKeys.revokedAt)))
      .returning();
    if (revoked.length === 0)
      throw new WrennError("not_found", "no such active API key in this team");
  }
}
