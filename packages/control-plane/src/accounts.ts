import { and, asc, eq } from "drizzle-orm";
import { WrennError } from "@wrenn/shared/errors.ts";
import { hashPassword, verifyPassword } from "./auth/passwords.ts";
import type { Sessions } from "./auth/sessions.ts";
import { requireTeamRole, type Caller } from "./context.ts";
import type { Db } from "./db/open.ts";
import { invites, teamMembers, teams, users, type TeamRole } from "./db/schema.ts";
import { redeemInvite } from "./invites.ts";

export type UserRow = typeof users.$inferSelect;
export type TeamRow = typeof teams.$inferSelect;

export interface TeamOfUser {
  id: string;
  name: string;
  role: TeamRole;
  createdAt: Date;
}

export interface MemberOfTeam {
  userId: string;
  email: string;
  role: TeamRole;
  createdAt: Date;
}

/** A logged-in user: a session token, who they are, and the team they act for first. */
export interface SignedIn {
  session: { token: string; expiresAt: Date };
  user: UserRow;
  team: TeamOfUser;
}

export function userJson(u: UserRow) {
  return {
    id: u.id,
    email: u.email,
    name: u.name,
    is_admin: u.isAdmin,
    created_at: u.createdAt.toISOString(),
  };
}

export function teamJson(t: TeamOfUser) {
  return { id: t.id, name: t.name, role: t.role, created_at: t.createdAt.toISOString() };
}

export function memberJson(m: MemberOfTeam) {
  return {
    user_id: m.userId,
    email: m.email,
    role: m.role,
    created_at: m.createdAt.toISOString(),
  };
}

/** Users, their teams and team membership. */
export class AccountService {
  readonly #db: Db;
  readonly #sessions: Sessions;
  readonly #openSignup: boolean;

  /** `openSignup`: anyone may sign up, not only the first user and those invited. */
  constructor(deps: { db: Db; sessions: Sessions; openSignup?: boolean | undefined }) {
    this.#db = deps.db;
    this.#sessions = deps.sessions;
    this.#openSignup = deps.openSignup ?? false;
  }

  /**
   * A new user. With an invite they join its team in its role; without one
   * they get a team of their own, which only the first user of the platform
   * (its admin) may do unless sign-up is open.
   */
  async signup(input: {
    email: string;
    password: string;
    name?: string | undefined;
    invite?: string | undefined;
  }): Promise<SignedIn> {
    const email = input.email.toLowerCase();
    const passwordHash = await hashPassword(input.password);
    const { user, team } = await this.#db.transaction(async (tx) => {
      const [anyUser] = await tx.select({ id: users.id }).from(users).limit(1);
      if (anyUser && !input.invite && !this.#openSignup) {
        throw new WrennError(
          "permission_denied",
          "sign-up is closed: ask an admin of your team for an invite",
        );
      }
      const invite = input.invite ? await redeemInvite(tx, input.invite, email) : undefined;
      const [user] = await tx
        .insert(users)
        .values({ email, name: input.name ?? "", passwordHash, isAdmin: !anyUser })
        .onConflictDoNothing()
        .returning();
      if (!user)
        throw new WrennError("already_exists", `a user with email ${email} exists; log in`);
      if (invite) {
        await tx.update(invites).set({ usedBy: user.id }).where(eq(invites.id, invite.id));
        const [m] = await tx
          .insert(teamMembers)
          .values({ teamId: invite.teamId, userId: user.id, role: invite.role })
          .returning();
        const [t] = await tx.select().from(teams).where(eq(teams.id, invite.teamId));
        if (!m || !t) throw new WrennError("not_found", "the invite's team no longer exists");
        return { user, team: { id: t.id, name: t.name, role: m.role, createdAt: t.createdAt } };
      }
      const [team] = await tx
        .insert(teams)
        .values({ name: input.name ? `${input.name}'s team` : email })
        .returning();
      if (!team) throw new WrennError("internal", "team insert returned nothing");
      await tx.insert(teamMembers).values({ teamId: team.id, userId: user.id, role: "owner" });
      const role: TeamRole = "owner";
      return { user, team: { id: team.id, name: team.name, role, createdAt: team.createdAt } };
    });
    return { session: await this.#sessions.issue(user.id), user, team };
  }

  async login(input: { email: string; password: string }): Promise<SignedIn> {
    const [user] = await this.#db
      .select()
      .from(users)
      .where(eq(users.email, input.email.toLowerCase()));
    // Hash even for unknown emails so timing does not reveal which emails exist.
    const ok = await verifyPassword(input.password, user?.passwordHash ?? (await dummyHash()));
    if (!user || !ok) throw new WrennError("unauthenticated", "wrong email or password");
    const [team] = await this.teamsOf(user.id);
    if (!team) throw new WrennError("failed_precondition", "you belong to no team");
    const session = await this.#sessions.issue(user.id);
    return { session, user, team };
  }

  async user(userId: string): Promise<UserRow | undefined> {
    const [user] = await this.#db.select().from(users).where(eq(users.id, userId));
    return user;
  }

  async teamsOf(userId: string): Promise<TeamOfUser[]> {
    return this.#db
      .select({
        id: teams.id,
        name: teams.name,
        role: teamMembers.role,
        createdAt: teams.createdAt,
      })
      .from(teamMembers)
      .innerJoin(teams, eq(teams.id, teamMembers.teamId))
      .where(eq(teamMembers.userId, userId))
      .orderBy(asc(teamMembers.createdAt));
  }

  /** The teams the caller may act for: an API key's one team, or a user's teams. */
  async callerTeams(caller: Caller): Promise<TeamOfUser[]> {
    if (caller.via === "session" && caller.userId) return this.teamsOf(caller.userId);
    const [t] = await this.#db.select().from(teams).where(eq(teams.id, caller.teamId));
    return t ? [{ id: t.id, name: t.name, role: caller.role, createdAt: t.createdAt }] : [];
  }

  async createTeam(caller: Caller, name: string): Promise<TeamOfUser> {
    const userId = caller.userId;
    if (caller.via !== "session" || !userId) {
      throw new WrennError(
        "permission_denied",
        "teams are created by users: log in and use a session token",
      );
    }
    const team = await this.#db.transaction(async (tx) => {
      const [team] = await tx.insert(teams).values({ name }).returning();
      if (!team) throw new WrennError("internal", "team insert returned nothing");
      await tx.insert(teamMembers).values({ teamId: team.id, userId, role: "owner" });
      return team;
    });
    return { id: team.id, name: team.name, role: "owner", createdAt: team.createdAt };
  }

  async members(caller: Caller, teamId: string): Promise<MemberOfTeam[]> {
    currentTeam(caller, teamId);
    return this.#db
      .select({
        userId: users.id,
        email: users.email,
        role: teamMembers.role,
        createdAt: teamMembers.createdAt,
      })
      .from(teamMembers)
      .innerJoin(users, eq(users.id, teamMembers.userId))
      .where(eq(teamMembers.teamId, teamId))
      .orderBy(asc(teamMembers.createdAt));
  }

  async addMember(
    caller: Caller,
    teamId: string,
    input: { email: string; role: TeamRole },
  ): Promise<MemberOfTeam> {
    currentTeam(caller, teamId);
    requireTeamRole(caller, "add members");
    if (input.role === "owner" && caller.role !== "owner") {
      throw new WrennError("permission_denied", "only an owner may add another owner");
    }
    const [user] = await this.#db
      .select()
      .from(users)
      .where(eq(users.email, input.email.toLowerCase()));
    if (!user) {
      throw new WrennError(
        "not_found",
        `no user with email ${input.email}; they must sign up first`,
      );
    }
    const [m] = await this.#db
      .insert(teamMembers)
      .values({ teamId, userId: user.id, role: input.role })
      .onConflictDoNothing()
      .returning();
    if (!m) throw new WrennError("already_exists", `${input.email} is already a member`);
    return { userId: user.id, email: user.email, role: m.role, createdAt: m.createdAt };
  }

  /** Owners are removed only by owners, and a team keeps at least one. */
  async removeMember(caller: Caller, teamId: string, userId: string): Promise<void> {
    currentTeam(caller, teamId);
    requireTeamRole(caller, "remove members");
    await this.#db.transaction(async (tx) => {
      const target = await lockMembers(tx, teamId, userId);
      if (target.role === "owner") {
        if (caller.role !== "owner") {
          throw new WrennError("permission_denied", "only an owner may remove an owner");
        }
        if (target.owners === 1) {
          throw new WrennError("failed_precondition", "a team keeps at least one owner");
        }
      }
      await tx
        .delete(teamMembers)
        .where(and(eq(teamMembers.teamId, teamId), eq(teamMembers.userId, userId)));
    });
  }

  /** Owners and admins change roles; only owners make or unmake owners; a team keeps one. */
  async changeRole(
    caller: Caller,
    teamId: string,
    userId: string,
    role: TeamRole,
  ): Promise<MemberOfTeam> {
    currentTeam(caller, teamId);
    requireTeamRole(caller, "change roles");
    return this.#db.transaction(async (tx) => {
      const target = await lockMembers(tx, teamId, userId);
      if ((target.role === "owner" || role === "owner") && caller.role !== "owner") {
        throw new WrennError("permission_denied", "only an owner may make or unmake an owner");
      }
      if (target.role === "owner" && role !== "owner" && target.owners === 1) {
        throw new WrennError("failed_precondition", "a team keeps at least one owner");
      }
      const [m] = await tx
        .update(teamMembers)
        .set({ role })
        .where(and(eq(teamMembers.teamId, teamId), eq(teamMembers.userId, userId)))
        .returning();
      const [user] = await tx.select().from(users).where(eq(users.id, userId));
      if (!m || !user) throw new WrennError("not_found", `user ${userId} is not a member`);
      return { userId, email: user.email, role: m.role, createdAt: m.createdAt };
    });
  }
}

type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];

/**
 * The target's role and the team's owner count, with the team's rows locked
 * so two owners demoting each other at once cannot leave the team with none.
 */
async function lockMembers(
  tx: Tx,
  teamId: string,
  userId: string,
): Promise<{ role: TeamRole; owners: number }> {
  const rows = await tx
    .select({ userId: teamMembers.userId, role: teamMembers.role })
    .from(teamMembers)
    .where(eq(teamMembers.teamId, teamId))
    .for("update");
  const target = rows.find((r) => r.userId === userId);
  if (!target) throw new WrennError("not_found", `user ${userId} is not a member`);
  return { role: target.role, owners: rows.filter((r) => r.role === "owner").length };
}

/** Members are managed in the team the caller acts for, so every query stays in one team. */
function currentTeam(caller: Caller, teamId: string): void {
  if (teamId !== caller.teamId) throw new WrennError("not_found", `team ${teamId} not found`);
}

// A valid hash of a random password, so unknown emails cost the same as wrong
// passwords; made on first use rather than at import (an scrypt per process).
let dummy: Promise<string> | undefined;
function dummyHash(): Promise<string> {
  dummy ??= hashPassword(crypto.randomUUID());
  return dummy;
}
