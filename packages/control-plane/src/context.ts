import { WrennError } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";
import type { LocalHop } from "@wrenn/shared/sandbox-proxy.ts";
import type { AgentPool } from "./agents.ts";
import type { Sessions } from "./auth/sessions.ts";
import type { Throttles } from "./auth/throttle.ts";
import type { Db } from "./db/open.ts";
import type { TeamRole } from "./db/schema.ts";
import type { Quotas } from "./quotas.ts";
import type { Placement } from "./scheduler.ts";

/** Who is calling: every query is scoped to `teamId`. */
export interface Caller {
  teamId: string;
  role: TeamRole;
  /** Null when the control plane acts itself (`system`). */
  userId: string | null;
  isAdmin: boolean;
  /** `system`: the control plane itself, for a team (expiry, the proxy's auto-resume). */
  via: "api_key" | "session" | "system";
}

export interface AppEnv {
  Variables: { caller: Caller };
}

/** What route handlers need; built once per control plane. */
export interface Deps {
  db: Db;
  agents: AgentPool;
  sessions: Sessions;
  /** Per-address (and per-account) limits on what anonymous callers can make us do. */
  throttles: Throttles;
  placement: Placement;
  /** Per-team limits, checked under the placement lock on create and resume. */
  quotas: Quotas;
  log: Logger;
  /** Anyone may sign up; otherwise only the first user and those with an invite. */
  openSignup?: boolean;
  /** Where sandbox traffic is routed (`<port>-<id>.<domain>`), returned by E2B's API; null when unset. */
  domain: string | null;
  /** Agents in this process, by registered address (ControlPlaneOptions.localHops). */
  localHops?: ReadonlyMap<string, LocalHop> | undefined;
}

export function requireAdmin(caller: Caller): void {
  if (!caller.isAdmin) throw new WrennError("permission_denied", "this route is for admins only");
}

export function requireTeamRole(caller: Caller, action: string): void {
  if (caller.role === "member") {
    throw new WrennError("permission_denied", `only a team owner or admin may ${action}`);
  }
}
