import { z } from "@hono/zod-openapi";

/** Template and snapshot names (an agent's files are named after them). */
export const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/;

export const Name = z
  .string()
  .regex(NAME_PATTERN, "must match ^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$")
  .openapi({ example: "my-template" });

/**
 * Free text the API stores or hands on: PostgreSQL's text cannot hold NUL, and
 * neither can a path, argument or environment variable, so NUL is bad input (400)
 * rather than a failed query (500) or a failed spawn in the guest (502).
 */
export const Text = (max: number) =>
  z
    .string()
    .max(max)
    // eslint-disable-next-line no-control-regex -- NUL is the character this rejects
    .regex(/^[^\u0000]*$/, "must not contain NUL characters");

export const ErrorSchema = z
  .object({
    error: z.object({
      code: z.string().openapi({ example: "not_found" }),
      message: z.string().openapi({ example: "sandbox 'abc' not found" }),
    }),
  })
  .openapi("Error");

const errorResponse = (description: string) => ({
  description,
  content: { "application/json": { schema: ErrorSchema } },
});

/** `rate_limited` (with Retry-After) or `quota_exceeded` (a team limit; the message names it). */
export const limitError = {
  description:
    "Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), " +
    "or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers)",
  headers: {
    "Retry-After": {
      description: "Seconds until a rate-limited request may be tried again",
      schema: { type: "integer" as const },
    },
  },
  content: { "application/json": { schema: ErrorSchema } },
};

/** The error responses every authenticated route can give, for the document. */
export const commonErrors = {
  400: errorResponse("Malformed or out-of-bounds input"),
  401: errorResponse("Missing or invalid credentials"),
  429: limitError,
  403: errorResponse("The caller may not do this"),
  404: errorResponse("No such resource in the caller's team"),
} as const;

export const agentErrors = {
  409: errorResponse("The resource is not in a state that allows this"),
  502: errorResponse("The host agent could not be reached or failed"),
  503: errorResponse("No host has room"),
} as const;

export const jsonBody = <T extends z.ZodType>(schema: T, description?: string) => ({
  required: true,
  description,
  content: { "application/json": { schema } },
});

export const jsonResponse = <T extends z.ZodType>(schema: T, description: string) => ({
  description,
  content: { "application/json": { schema } },
});

export const noContent = { description: "Done" } as const;

export const SandboxId = z
  .string()
  .regex(/^[a-z0-9]{1,64}$/, "sandbox ids are lowercase letters and digits")
  .openapi({ param: { name: "id", in: "path" }, example: "k3j9x0q2m1n8b7v6" });

export const IdParams = z.object({ id: SandboxId });

export const Uuid = z.uuid();

// ---- accounts

export const SignupBody = z
  .object({
    email: z.email().max(254),
    password: z.string().min(8).max(256),
    name: Text(128).optional(),
    invite: z.string().max(256).optional().openapi({
      description: "An invite token (POST /v1/invites): needed once sign-up is closed",
    }),
  })
  .openapi("SignupRequest");

export const LoginBody = z
  .object({ email: z.email().max(254), password: z.string().min(1).max(256) })
  .openapi("LoginRequest");

export const TeamRoleSchema = z.enum(["owner", "admin", "member"]);

export const Team = z
  .object({ id: z.uuid(), name: z.string(), role: TeamRoleSchema, created_at: z.string() })
  .openapi("Team");

export const User = z
  .object({
    id: z.uuid(),
    email: z.string(),
    name: z.string(),
    is_admin: z.boolean(),
    created_at: z.string(),
  })
  .openapi("User");

export const Session = z
  .object({ token: z.string(), expires_at: z.string(), user: User, team: Team })
  .openapi("Session");

export const Me = z
  .object({
    // A union, not User.nullable(): that renders as allOf [User, object|null],
    // which no null satisfies (and the SDK typed as an empty object).
    user: z.union([User, z.null()]).openapi({ description: "null: the caller is an API key" }),
    team_id: z.uuid(),
    role: TeamRoleSchema,
    is_admin: z.boolean(),
    teams: z.array(Team),
  })
  .openapi("Me");

export const CreateTeamBody = z.object({ name: Text(128).min(1) }).openapi("CreateTeam");

export const TeamParams = z.object({
  id: z.uuid().openapi({ param: { name: "id", in: "path" } }),
});

export const Member = z
  .object({ user_id: z.uuid(), email: z.string(), role: TeamRoleSchema, created_at: z.string() })
  .openapi("Member");

export const AddMemberBody = z
  .object({ email: z.email().max(254), role: TeamRoleSchema.default("member") })
  .openapi("AddMember");

export const UpdateMemberBody = z.object({ role: TeamRoleSchema }).openapi("UpdateMember");

export const MemberParams = z.object({
  id: z.uuid().openapi({ param: { name: "id", in: "path" } }),
  user_id: z.uuid().openapi({ param: { name: "user_id", in: "path" } }),
});

export const CreateApiKeyBody = z.object({ name: Text(128).min(1) }).openapi("CreateApiKey");

export const ApiKey = z
  .object({
    id: z.uuid(),
    name: z.string(),
    prefix: z.string().openapi({ example: "wrn_3f9a01bc" }),
    created_at: z.string(),
    last_used_at: z.string().nullable(),
    revoked_at: z.string().nullable(),
  })
  .openapi("ApiKey");

export const CreatedApiKey = ApiKey.extend({
  key: z.string().openapi({
    description: "The key itself; shown only in this response",
    example: "wrn_3f9a01bc5d7e4a2b8c6d0e1f2a3b4c5d",
  }),
}).openapi("CreatedApiKey");

const limit = (max: number) => z.number().int().min(0).max(max);
const QUOTA_MAX = {
  sandboxes: 100_000,
  vcpus: 1_000_000,
  memory_mb: 2 ** 31 - 1,
  disk_mb: 2 ** 31 - 1,
};

const LimitUse = z.object({ limit: z.number().int(), used: z.number().int(), custom: z.boolean() });

export const TeamLimits = z
  .object({
    team_id: z.uuid(),
    sandboxes: LimitUse.openapi({ description: "Running sandboxes (pending, running, unknown)" }),
    vcpus: LimitUse,
    memory_mb: LimitUse,
    disk_mb: LimitUse.openapi({ description: "Disks of all kept sandboxes, paused ones too" }),
  })
  .openapi("TeamLimits");

export const SetTeamLimitsBody = z
  .object({
    sandboxes: limit(QUOTA_MAX.sandboxes).nullable().optional(),
    vcpus: limit(QUOTA_MAX.vcpus).nullable().optional(),
    memory_mb: limit(QUOTA_MAX.memory_mb).nullable().optional(),
    disk_mb: limit(QUOTA_MAX.disk_mb).nullable().optional(),
  })
  .openapi("SetTeamLimits", {
    description: "Each limit given is set; null puts it back to the control plane's default",
  });

export const CreateInviteBody = z
  .object({
    role: TeamRoleSchema.default("member"),
    email: z.email().max(254).optional().openapi({ description: "Only this address may use it" }),
    ttl_sec: z
      .number()
      .int()
      .min(60)
      .max(30 * 86400)
      .default(7 * 86400),
  })
  .openapi("CreateInvite");

export const Invite = z
  .object({
    id: z.uuid(),
    team_id: z.uuid(),
    role: TeamRoleSchema,
    email: z.string().nullable(),
    expires_at: z.string(),
    created_at: z.string(),
  })
  .openapi("Invite");

export const CreatedInvite = Invite.extend({
  token: z.string().openapi({ description: "Shown only here; pass it as `invite` to sign-up" }),
}).openapi("CreatedInvite");

export const KeyParams = z.object({
  id: z.uuid().openapi({ param: { name: "id", in: "path" } }),
});

// ---- sandboxes

export const SandboxStatusSchema = z
  .enum(["pending", "running", "paused", "unknown", "stopped", "error"])
  .openapi({
    description:
      "`unknown`: it was running on a host that stopped answering; calls on it fail with 502 until the host is back and reports it",
  });

export const CreateSandboxBody = z
  .object({
    template: Name.default("minimal"),
    vcpus: z.number().int().min(1).max(32).default(1),
    memory_mb: z.number().int().min(128).max(262144).default(512),
    timeout_sec: z.number().int().min(1).max(86400).default(300),
    disk_size_mb: z.number().int().min(512).max(1048576).default(20480),
    env_vars: z.record(Text(256), Text(8192)).optional(),
    metadata: z
      .record(Text(256), Text(4096))
      .refine((m) => Object.keys(m).length <= 64, "metadata holds at most 64 keys")
      .optional()
      .openapi({ description: "Your own labels (key → value), returned with the sandbox" }),
    client_request_id: Text(128)
      .min(1)
      .optional()
      .openapi({ description: "Creating twice with the same id creates one sandbox" }),
  })
  .openapi("CreateSandbox");

export const Sandbox = z
  .object({
    sandbox_id: z.string(),
    template: z.string(),
    status: SandboxStatusSchema,
    vcpus: z.number().int(),
    memory_mb: z.number().int(),
    disk_size_mb: z.number().int(),
    timeout_sec: z.number().int(),
    host_id: z.string().nullable(),
    client_request_id: z.string().nullable(),
    metadata: z.record(z.string(), z.string()),
    end_at: z.string().nullable().openapi({
      description:
        "When its lifetime ends (sandboxes created through E2B's API); null: it is paused once idle for `timeout_sec`",
    }),
    error: z.string(),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("Sandbox");

export const ListSandboxesQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  next_token: Text(200)
    .optional()
    .openapi({ description: "From the X-Next-Token header of the previous page" }),
});

export const ExecBody = z
  .object({
    cmd: Text(4096).min(1),
    args: z.array(Text(65536)).max(1024).default([]),
    timeout_sec: z.number().int().min(1).max(3600).default(60),
    envs: z.record(Text(256), Text(8192)).optional(),
    cwd: Text(4096).optional(),
    user: Text(64).optional(),
  })
  .openapi("Exec");

export const ExecResult = z
  .object({
    stdout: z.string(),
    stderr: z.string(),
    exit_code: z.number().int(),
    duration_ms: z.number().int(),
    encoding: z.enum(["utf-8", "base64"]),
    stdout_truncated: z.boolean().openapi({
      description:
        "The command wrote more than 16 MiB to stdout: `stdout` holds its first 16 MiB, the rest was dropped (stream the command to get all of it)",
    }),
    stderr_truncated: z.boolean().openapi({
      description: "As `stdout_truncated`, for stderr",
    }),
  })
  .openapi("ExecResult");

export const ResumeBody = z
  .object({ timeout_sec: z.number().int().min(1).max(86400).optional() })
  .openapi("Resume");

export const FilePath = Text(4096).min(1);

export const FileUser = Text(64);

export const ReadFileBody = z.object({ path: FilePath, user: FileUser.optional() });

export const WrittenFile = z.object({ path: z.string(), size: z.number().int() }).openapi("File");

// ---- snapshots / templates

export const TemplateTypeSchema = z.enum(["base", "snapshot"]);

export const Template = z
  .object({
    name: z.string(),
    type: TemplateTypeSchema,
    team_id: z.uuid(),
    host_id: z.string().nullable(),
    vcpus: z.number().int(),
    memory_mb: z.number().int(),
    size_bytes: z.number().int(),
    created_at: z.string(),
  })
  .openapi("Template");

export const CreateSnapshotBody = z
  .object({ sandbox_id: SandboxId, name: Name.optional() })
  .openapi("CreateSnapshot");

export const CreateSnapshotQuery = z.object({
  overwrite: z.enum(["true", "false"]).optional(),
});

export const ListSnapshotsQuery = z.object({ type: TemplateTypeSchema.optional() });

export const SnapshotParams = z.object({
  name: Name.openapi({ param: { name: "name", in: "path" } }),
});

// ---- hosts

export const CreateHostTokenBody = z
  .object({
    ttl_sec: z
      .number()
      .int()
      .min(60)
      .max(7 * 86400)
      .default(3600),
  })
  .openapi("CreateHostToken");

export const HostToken = z
  .object({ token: z.string(), expires_at: z.string() })
  .openapi("HostToken");

/** What fits an HTTP header unquoted; the agent checks the same (host-agent/src/service.ts). */
export const HostSecret = z
  .string()
  .regex(/^[\x21-\x7e]{16,256}$/, "must be 16-256 printable ASCII characters without spaces");

export const RegisterHostBody = z
  .object({
    token: Text(200).min(1),
    address: z
      .string()
      .min(1)
      .max(255)
      .regex(/^(https?:\/\/)?[a-zA-Z0-9.:[\]-]+(:\d{1,5})?\/?$/, "must be host:port or a URL")
      .openapi({ example: "10.0.0.5:50051" }),
    secret: HostSecret.optional().openapi({
      description:
        "The secret the agent was started with (`wrenn host-agent --secret`, `WRENN_HOST_SECRET`); the control plane sends it on every call to the agent. Without it one is made and returned: start the agent with that",
    }),
  })
  .openapi("RegisterHost");

export const RegisteredHost = z
  .object({
    host_id: z.uuid(),
    secret: z.string().openapi({
      description:
        "The host secret: the control plane sends it to the agent as `Authorization: Bearer`, the agent sends it on heartbeats",
    }),
  })
  .openapi("RegisteredHost");

export const HeartbeatBody = z
  .object({
    total_vcpus: z.number().int().min(0).max(100000),
    total_memory_mb: z
      .number()
      .int()
      .min(0)
      .max(1 << 30),
    free_disk_mb: z
      .number()
      .int()
      .min(0)
      .max(2 ** 31 - 1),
    vmm: Text(64).optional(),
    storage: Text(64).optional(),
    version: Text(64).optional(),
  })
  .openapi("Heartbeat");

export const HostParams = z.object({
  id: z.uuid().openapi({ param: { name: "id", in: "path" } }),
});

export const Host = z
  .object({
    id: z.uuid(),
    address: z.string(),
    status: z.enum(["ready", "unreachable"]),
    vmm: z.string(),
    storage: z.string(),
    version: z.string(),
    total_vcpus: z.number().int(),
    total_memory_mb: z.number().int(),
    free_disk_mb: z.number().int(),
    usage: z
      .object({
        cpu_busy_cores: z.number().openapi({ description: "Host CPU busy, in cores" }),
        memory_used_mb: z.number().int().openapi({
          description: "Memory in use, the VMMs' resident guest memory included",
        }),
        vmm_memory_mb: z.number().int().openapi({ description: "The VMMs' resident memory (PSS)" }),
        measured_at: z.string(),
      })
      .nullable()
      .openapi({
        description:
          "What the host measured itself using at its last heartbeat (admission counts it); null: its agent does not measure",
      }),
    warm_sandboxes: z.number().int().openapi({
      description:
        "Warm pool entries ready on the host: idle VMs a create of their template claims, counted in usage",
    }),
    last_seen_at: z.string().nullable(),
    created_at: z.string(),
  })
  .openapi("Host");
