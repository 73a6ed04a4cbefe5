import { and, asc, eq, gt, isNull, sql } from "drizzle-orm";
import { WrennError } from "@wrenn/shared/errors.ts";
import { newSecret, sha256 } from "./auth/tokens.ts";
import { requireTeamRole, type Caller } from "./context.ts";
import type { Db } from "./db/open.ts";
import { invites, type TeamRole } from "./db/schema.ts";

export type InviteRow = typeof invites.$inferSelect;
type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];

export function inviteJson(i: InviteRow) {
  return {
    id: i.id,
    team_id: i.teamId,
    role: i.role,
    email: i.email,
    expires_at: i.expiresAt.toISOString(),
    created_at: i.createdAt.toISOString(),
  };
}

/** One-time tokens with which a team's owners and admins let someone sign up into it. */
export class InviteService {
  readonly #db: Db;

  constructor(deps: { db: Db }) {
    this.#db = deps.db;
  }

  async create(
    caller: Caller,
    input: { role: TeamRole; email?: string | undefined; ttl_sec: number },
  ): Promise<{ row: InviteRow; token: string }> {
    requireTeamRole(caller, "invite people");
    if (input.role === "owner" && caller.role !== "owner") {
      throw new WrennError("permission_denied", "only an owner may invite an owner");
    }
    const token = newSecret("wri");
    const [row] = await this.#db
      .insert(invites)
      .values({
        teamId: caller.teamId,
        tokenHash: token.hash,
        role: input.role,
        email: input.email?.toLowerCase() ?? null,
        createdBy: caller.userId,
        expiresAt: new Date(Date.now() + input.ttl_sec * 1000),
      })
      .returning();
    if (!row) throw new WrennError("internal", "invite insert returned nothing");
    return { row, token: token.value };
  }

  /** The team's invites nobody has used yet and that have not expired. */
  async pending(caller: Caller): Promise<InviteRow[]> {
    requireTeamRole(caller, "see invites");
    return this.#db
      .select()
      .from(invites)
      .where(
        and(
          eq(invites.teamId, caller.teamId),
          isNull(invites.usedAt),
          gt(invites.expiresAt, sql`now()`),
        ),
      )
      .orderBy(asc(invites.createdAt));
  }

  async revoke(caller: Caller, id: string): Promise<void> {
    requireTeamRole(caller, "revoke invites");
    const gone = await this.#db
      .delete(invites)
      .where(and(eq(invites.id, id), eq(invites.teamId, caller.teamId), isNull(invites.usedAt)))
      .returning();
    if (gone.length === 0) throw new WrennError("not_found", "no such unused invite in this team");
  }
}

/** Uses up an invite inside the sign-up's transaction; a used, expired or foreign one is refused. */
export async function redeemInvite(tx: Tx, token: string, email: string): Promise<InviteRow> {
  const [row] = await tx
    .update(invites)
    .set({ usedAt: sql`now()` })
    .where(
      and(
        eq(invites.tokenHash, sha256(token)),
        isNull(invites.usedAt),
        gt(invites.expiresAt, sql`now()`),
        sql`(${invites.email} is null or ${invites.email} = ${email})`,
      ),
    )
    .returning();
  if (!row) {
    throw new WrennError(
      "permission_denied",
      "this invite is unknown, used, expired or for another email address; ask for a new one",
    );
  }
  return row;
}
