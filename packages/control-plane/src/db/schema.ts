import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  real,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from "drizzle-orm/pg-core";

const createdAt = () =>
  timestamp("created_at", { withTimezone: true, precision: 3 }).notNull().defaultNow();

/** The platform team owns templates every team can see (the base images). */
export const PLATFORM_TEAM_ID = "00000000-0000-0000-0000-000000000000";

export const teams = pgTable("teams", {
  id: uuid("id").primaryKey().defaultRandom(),
  name: text("name").notNull(),
  // A platform admin's limits for this team; null: the control plane's default.
  maxSandboxes: integer("max_sandboxes"),
  maxVcpus: integer("max_vcpus"),
  maxMemoryMb: integer("max_memory_mb"),
  maxDiskMb: integer("max_disk_mb"),
  createdAt: createdAt(),
});

export const users = pgTable("users", {
  id: uuid("id").primaryKey().defaultRandom(),
  email: text("email").notNull().unique(),
  name: text("name").notNull().default(""),
  passwordHash: text("password_hash").notNull(),
  isAdmin: boolean("is_admin").notNull().default(false),
  createdAt: createdAt(),
});

export type TeamRole = "owner" | "admin" | "member";

export const teamMembers = pgTable(
  "team_members",
  {
    teamId: uuid("team_id")
      .notNull()
      .references(() => teams.id, { onDelete: "cascade" }),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    role: text("role").$type<TeamRole>().notNull(),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.teamId, t.userId] }), index("team_members_user").on(t.userId)],
);

export const apiKeys = pgTable(
  "api_keys",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    teamId: uuid("team_id")
      .notNull()
      .references(() => teams.id, { onDelete: "cascade" }),
    createdBy: uuid("created_by").references(() => users.id, { onDelete: "set null" }),
    name: text("name").notNull(),
    // Shown in listings so a user can tell keys apart; never enough to use.
    prefix: text("prefix").notNull(),
    keyHash: text("key_hash").notNull().unique(),
    createdAt: createdAt(),
    lastUsedAt: timestamp("last_used_at", { withTimezone: true, precision: 3 }),
    revokedAt: timestamp("revoked_at", { withTimezone: true, precision: 3 }),
  },
  (t) => [index("api_keys_team").on(t.teamId)],
);

/** A one-time token with which someone signs up into a team while sign-up is closed. */
export const invites = pgTable(
  "invites",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    teamId: uuid("team_id")
      .notNull()
      .references(() => teams.id, { onDelete: "cascade" }),
    tokenHash: text("token_hash").notNull().unique(),
    role: text("role").$type<TeamRole>().notNull(),
    // When set, only this address may use the invite.
    email: text("email"),
    createdBy: uuid("created_by").references(() => users.id, { onDelete: "set null" }),
    expiresAt: timestamp("expires_at", { withTimezone: true, precision: 3 }).notNull(),
    usedAt: timestamp("used_at", { withTimezone: true, precision: 3 }),
    usedBy: uuid("used_by").references(() => users.id, { onDelete: "set null" }),
    createdAt: createdAt(),
  },
  (t) => [index("invites_team").on(t.teamId)],
);

export type HostStatus = "ready" | "unreachable";

export const hosts = pgTable("hosts", {
  id: uuid("id").primaryKey().defaultRandom(),
  address: text("address").notNull().unique(),
  // Authenticates what the agent pushes (heartbeats).
  secretHash: text("secret_hash").notNull(),
  // The same secret in clear, which the control plane must present on its calls to
  // the agent (`Authorization: Bearer`); "" when the agent was started without one.
  secret: text("secret").notNull().default(""),
  status: text("status").$type<HostStatus>().notNull().default("ready"),
  vmm: text("vmm").notNull().default(""),
  storage: text("storage").notNull().default(""),
  version: text("version").notNull().default(""),
  totalVcpus: integer("total_vcpus").notNull().default(0),
  totalMemoryMb: integer("total_memory_mb").notNull().default(0),
  freeDiskMb: integer("free_disk_mb").notNull().default(0),
  // What the host really used when last measured (null: its agent does not
  // measure); placement admits by these plus what was not yet measured.
  cpuBusyCores: real("cpu_busy_cores"),
  memoryUsedMb: integer("memory_used_mb"),
  vmmMemoryMb: integer("vmm_memory_mb"),
  // When that measurement was asked for: sandboxes that started running later are not in it.
  measuredAt: timestamp("measured_at", { withTimezone: true, precision: 3 }),
  // Warm pool entries ready on the host when last asked (idle VMs, for the admin's view).
  warmSandboxes: integer("warm_sandboxes").notNull().default(0),
  lastSeenAt: timestamp("last_seen_at", { withTimezone: true, precision: 3 }),
  createdAt: createdAt(),
});

export const hostTokens = pgTable("host_tokens", {
  id: uuid("id").primaryKey().defaultRandom(),
  tokenHash: text("token_hash").notNull().unique(),
  createdBy: uuid("created_by").references(() => users.id, { onDelete: "set null" }),
  expiresAt: timestamp("expires_at", { withTimezone: true, precision: 3 }).notNull(),
  usedAt: timestamp("used_at", { withTimezone: true, precision: 3 }),
  hostId: uuid("host_id").references(() => hosts.id, { onDelete: "set null" }),
  createdAt: createdAt(),
});

export type TemplateType = "base" | "snapshot";

export const templates = pgTable(
  "templates",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    teamId: uuid("team_id")
      .notNull()
      .references(() => teams.id, { onDelete: "cascade" }),
    // Names are global: an agent keeps snapshots in one flat namespace.
    name: text("name").notNull().unique(),
    type: text("type").$type<TemplateType>().notNull(),
    // Where a snapshot's files live; null for base images, which every host has.
    hostId: uuid("host_id").references(() => hosts.id, { onDelete: "set null" }),
    sourceSandboxId: text("source_sandbox_id"),
    vcpus: integer("vcpus").notNull().default(0),
    memoryMb: integer("memory_mb").notNull().default(0),
    sizeBytes: bigint("size_bytes", { mode: "number" }).notNull().default(0),
    createdAt: createdAt(),
  },
  (t) => [index("templates_team").on(t.teamId)],
);

/** Egress rules of a sandbox (E2B's `network` and `allow_internet_access`). */
export interface SandboxNetwork {
  /** CIDRs, addresses or host names always reachable (wins over `denyOut`). */
  allowOut?: string[];
  /** CIDRs, addresses or host names never reachable; `0.0.0.0/0` denies all but `allowOut`. */
  denyOut?: string[];
}

/** `unknown`: it was running on a host that stopped answering; the host settles it when it is back. */
export type SandboxStatus = "pending" | "running" | "paused" | "unknown" | "stopped" | "error";

export const sandboxes = pgTable(
  "sandboxes",
  {
    id: text("id").primaryKey(),
    teamId: uuid("team_id")
      .notNull()
      .references(() => teams.id, { onDelete: "cascade" }),
    hostId: uuid("host_id").references(() => hosts.id, { onDelete: "set null" }),
    template: text("template").notNull(),
    status: text("status").$type<SandboxStatus>().notNull(),
    vcpus: integer("vcpus").notNull(),
    memoryMb: integer("memory_mb").notNull(),
    diskSizeMb: integer("disk_size_mb").notNull(),
    timeoutSec: integer("timeout_sec").notNull(),
    clientRequestId: text("client_request_id"),
    envdAddress: text("envd_address").notNull().default(""),
    error: text("error").notNull().default(""),
    // Every sandbox's envd answers only calls carrying this token (sent in /init
    // at create and after every resume); returned to its team only.
    envdAccessToken: text("envd_access_token").notNull().default(""),
    // Guards the proxied ports other than envd's of a `secure` sandbox, unless
    // `allowPublicTraffic`.
    trafficAccessToken: text("traffic_access_token").notNull().default(""),
    secure: boolean("secure").notNull().default(false),
    allowPublicTraffic: boolean("allow_public_traffic").notNull().default(true),
    // E2B's lifetime: at `endAt` the sandbox is paused when `autoPause`, else
    // killed. Null for /v1 sandboxes, which the agent pauses when idle past
    // `timeoutSec`.
    endAt: timestamp("end_at", { withTimezone: true, precision: 3 }),
    autoPause: boolean("auto_pause").notNull().default(false),
    // A paused sandbox resumes on its first proxied request.
    autoResume: boolean("auto_resume").notNull().default(false),
    metadata: jsonb("metadata").$type<Record<string, string>>().notNull().default({}),
    network: jsonb("network").$type<SandboxNetwork>().notNull().default({}),
    createdAt: createdAt(),
    updatedAt: timestamp("updated_at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex("sandboxes_client_request")
      .on(t.teamId, t.clientRequestId)
      .where(sql`${t.clientRequestId} is not null`),
    // Listing reads live sandboxes newest first: this index yields them in order, so a page is a short scan.
    index("sandboxes_team_live_created")
      .on(t.teamId, t.createdAt.desc().nullsFirst(), t.id.desc().nullsFirst())
      .where(sql`${t.status} in ('pending', 'running', 'paused', 'unknown')`),
    index("sandboxes_host_status").on(t.hostId, t.status),
    // The expiry pass reads running sandboxes past their end.
    index("sandboxes_running_end_at")
      .on(t.endAt)
      .where(sql`${t.status} = 'running' and ${t.endAt} is not null`),
  ],
);

/** Secrets the control plane generates once and shares between its instances. */
export const settings = pgTable("settings", {
  key: text("key").primaryKey(),
  value: text("value").notNull(),
});
