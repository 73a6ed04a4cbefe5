import { z } from "@hono/zod-openapi";
import { isIP } from "node:net";
import { SandboxId, Text } from "../api/schemas.ts";

// E2B's REST schema (the `e2b` SDK's dist/index.d.ts, e2b-dev/infra's
// spec/openapi.yml), field by field: camelCase, `sandboxID`, `templateID`.
// Component names carry an `E2B` prefix so they never clash with /v1's.

/** 30 days, what a host agent allows; E2B's cloud stops at 24 h for its own billing reasons. */
export const MAX_TIMEOUT_SEC = 30 * 24 * 3600;

export const E2bError = z
  .object({
    code: z.number().int().openapi({ example: 404 }),
    message: z.string().openapi({ example: "sandbox 'abc' not found" }),
  })
  .openapi("E2BError");

const errorResponse = (description: string) => ({
  description,
  content: { "application/json": { schema: E2bError } },
});

export const e2bErrors = {
  400: errorResponse("Malformed or out-of-bounds input"),
  401: errorResponse("Missing or invalid credentials"),
  403: errorResponse("The caller may not do this"),
  404: errorResponse("No such resource in the caller's team"),
  409: errorResponse("The sandbox is not in a state that allows this"),
  502: errorResponse("The host agent could not be reached or failed"),
  503: errorResponse("No host has room"),
} as const;

export const IdParam = z.object({ id: SandboxId });

export const TemplateIdParam = z.object({
  template_id: Text(256)
    .min(1)
    .openapi({ param: { name: "template_id", in: "path" }, example: "my-snapshot" }),
});

export const AliasParam = z.object({
  alias: Text(256)
    .min(1)
    .openapi({ param: { name: "alias", in: "path" }, example: "base" }),
});

const Timeout = z.number().int().min(0).max(MAX_TIMEOUT_SEC);

/** An IPv4/IPv6 address or CIDR. */
function isCidr(v: string): boolean {
  const [addr, bits, ...rest] = v.split("/");
  if (rest.length > 0 || !addr) return false;
  const family = isIP(addr);
  if (family === 0) return false;
  if (bits === undefined) return true;
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

const HOST_NAME =
  /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

/** allowOut: a CIDR, an address, or a host name (`*.example.com` too). */
const AllowEntry = z
  .string()
  .max(253)
  .refine((v) => isCidr(v) || HOST_NAME.test(v), "must be a CIDR, an IP address or a host name");

/** denyOut: E2B takes addresses and CIDRs only. */
const DenyEntry = z
  .string()
  .max(64)
  .refine(isCidr, "must be a CIDR or an IP address (host names cannot be denied)");

const NetworkRules = {
  allowOut: z.array(AllowEntry).max(256).optional(),
  denyOut: z.array(DenyEntry).max(256).optional(),
  // Accepted only when empty: Wrenn has no egress proxy or request rewriting.
  egressProxy: z.null().optional(),
  rules: z.record(z.string(), z.array(z.unknown()).max(0)).optional(),
};

export const NetworkConfig = z
  .object({
    ...NetworkRules,
    allowPublicTraffic: z.boolean().optional().openapi({
      description: "When false, a sandbox's ports other than envd's need `trafficAccessToken`",
    }),
    maskRequestHost: z.string().max(0).optional(),
    httpsPorts: z.array(z.number()).max(0).optional(),
  })
  .openapi("E2BSandboxNetworkConfig");

export const NetworkUpdate = z
  .object({ ...NetworkRules, allow_internet_access: z.boolean().optional() })
  .openapi("E2BSandboxNetworkUpdateConfig");

const Metadata = z.record(Text(256), Text(4096));
const EnvVars = z.record(
  z
    .string()
    .regex(
      /^[A-Za-z_][A-Za-z0-9_]{0,255}$/,
      "environment variable names are [A-Za-z_][A-Za-z0-9_]*",
    ),
  Text(65536),
);

const NewSandboxFields = {
  templateID: Text(256)
    .min(1)
    .openapi({ description: "A template or snapshot name; `base` is the default base template" }),
  timeout: Timeout.optional().openapi({
    description: "Seconds until the sandbox is killed (or paused when `autoPause`)",
  }),
  autoPause: z.boolean().optional(),
  autoPauseMemory: z.literal(true).optional().openapi({ description: "Pauses always keep memory" }),
  autoResume: z.object({ enabled: z.boolean() }).optional(),
  metadata: Metadata.optional(),
  envVars: EnvVars.optional(),
  allow_internet_access: z.boolean().optional(),
  network: NetworkConfig.optional(),
  // Accepted only when empty: Wrenn has no volumes, MCP gateway or workload identity.
  volumeMounts: z.array(z.unknown()).max(0).optional(),
  mcp: z.null().optional(),
  iam: z.null().optional(),
};

export const NewSandbox = z
  .object({ ...NewSandboxFields, secure: z.boolean().optional() })
  .openapi("E2BNewSandbox");

export const NewSandboxV2 = z.object(NewSandboxFields).openapi("E2BNewSandboxV2");

export type NewSandboxBody = z.infer<typeof NewSandbox>;

export const Sandbox = z
  .object({
    sandboxID: z.string(),
    templateID: z.string(),
    alias: z.string().optional(),
    clientID: z.string(),
    envdVersion: z.string(),
    envdAccessToken: z.string(),
    trafficAccessToken: z.string().nullable(),
    domain: z.string().nullable(),
  })
  .openapi("E2BSandbox");

const State = z.enum(["running", "paused"]);

export const ListedSandbox = z
  .object({
    sandboxID: z.string(),
    templateID: z.string(),
    alias: z.string().optional(),
    clientID: z.string(),
    startedAt: z.string(),
    endAt: z.string(),
    cpuCount: z.number().int(),
    memoryMB: z.number().int(),
    diskSizeMB: z.number().int(),
    metadata: z.record(z.string(), z.string()),
    state: State,
    envdVersion: z.string(),
  })
  .openapi("E2BListedSandbox");

export const SandboxDetail = ListedSandbox.extend({
  envdAccessToken: z.string(),
  domain: z.string().nullable(),
  allowInternetAccess: z.boolean().nullable(),
  network: z.object({
    allowOut: z.array(z.string()).optional(),
    denyOut: z.array(z.string()).optional(),
    allowPublicTraffic: z.boolean(),
  }),
  lifecycle: z.object({ autoResume: z.boolean(), onTimeout: z.enum(["kill", "pause"]) }),
}).openapi("E2BSandboxDetail");

/** `a=1,b=2` or repeated: E2B's SDK sends `state=running,paused`. */
const CsvOrRepeated = z.union([Text(256), z.array(Text(256)).max(16)]);

export const ListV2Query = z.object({
  metadata: Text(4096)
    .optional()
    .openapi({ description: "`key=value&k2=v2`, each key and value URL-encoded" }),
  state: CsvOrRepeated.optional().openapi({
    description: "running, paused (comma-separated or repeated)",
  }),
  template: Text(256).optional(),
  startedAfter: z.iso.datetime({ offset: true }).optional(),
  order: z.enum(["asc", "desc"]).default("desc"),
  limit: z.coerce.number().int().min(1).max(100).default(100),
  nextToken: Text(256).optional().openapi({ description: "The previous page's `x-next-token`" }),
});

export const ListQuery = z.object({ metadata: ListV2Query.shape.metadata });

export const ConnectBody = z
  .object({ timeout: Timeout, memory: z.literal(true).optional() })
  .openapi("E2BConnectSandbox");

export const ConnectBodyV2 = z
  .object({ timeout: Timeout.default(300), memory: z.literal(true).optional() })
  .openapi("E2BConnectSandboxV2");

export const ResumeBody = z
  .object({
    timeout: Timeout.default(15),
    autoPause: z.boolean().optional(),
    memory: z.literal(true).optional(),
  })
  .openapi("E2BResumedSandbox");

export const TimeoutBody = z.object({ timeout: Timeout }).openapi("E2BSandboxTimeoutRequest");

export const RefreshBody = z
  .object({ duration: z.number().int().min(0).max(3600).optional() })
  .openapi("E2BSandboxRefreshRequest");

export const PauseBody = z
  .object({
    memory: z.literal(true).optional().openapi({ description: "Pauses always keep memory" }),
  })
  .openapi("E2BSandboxPauseRequest");

export const MetricsQuery = z.object({
  start: z.coerce
    .number()
    .int()
    .min(0)
    .max(1e11)
    .optional()
    .openapi({ description: "Unix seconds" }),
  end: z.coerce.number().int().min(0).max(1e11).optional().openapi({ description: "Unix seconds" }),
});

export const SandboxMetric = z
  .object({
    timestamp: z.string(),
    timestampUnix: z.number().int(),
    cpuCount: z.number().int(),
    cpuUsedPct: z.number(),
    memUsed: z.number().int(),
    memTotal: z.number().int(),
    memCache: z.number().int(),
    diskUsed: z.number().int(),
    diskTotal: z.number().int(),
  })
  .openapi("E2BSandboxMetric");

export const MetricsListQuery = z.object({
  sandbox_ids: Text(4096)
    .min(1)
    .openapi({ description: "Comma-separated sandbox ids", example: "abc,def" }),
});

export const SandboxesWithMetrics = z
  .object({ sandboxes: z.record(z.string(), SandboxMetric) })
  .openapi("E2BSandboxesWithMetrics");

export const SnapshotBody = z
  .object({
    name: z
      .string()
      .regex(/^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/, "must match ^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$")
      .optional(),
  })
  .openapi("E2BSandboxSnapshotRequest");

export const SnapshotInfo = z
  .object({ snapshotID: z.string(), names: z.array(z.string()) })
  .openapi("E2BSnapshotInfo");

export const ListSnapshotsQuery = z.object({
  sandboxID: z
    .string()
    .regex(/^[a-z0-9]{1,64}$/, "sandbox ids are lowercase letters and digits")
    .optional(),
  name: Text(256).optional(),
  limit: z.coerce.number().int().min(1).max(100).default(100),
  nextToken: Text(256).optional(),
});

export const ForkBody = z
  .object({
    count: z.number().int().min(1).max(16).default(1),
    timeout: Timeout.default(15),
  })
  .openapi("E2BSandboxForkRequest");

export const ForkResult = z
  .object({ sandbox: Sandbox.optional(), error: E2bError.optional() })
  .openapi("E2BSandboxForkResult");

export const Template = z
  .object({
    templateID: z.string(),
    buildID: z.string(),
    aliases: z.array(z.string()),
    names: z.array(z.string()),
    public: z.boolean(),
    cpuCount: z.number().int(),
    memoryMB: z.number().int(),
    diskSizeMB: z.number().int(),
    envdVersion: z.string(),
    buildStatus: z.literal("ready"),
    buildCount: z.number().int(),
    spawnCount: z.number().int(),
    createdAt: z.string(),
    updatedAt: z.string(),
    lastSpawnedAt: z.string().nullable(),
    createdBy: z.null(),
  })
  .openapi("E2BTemplate");

export const TemplateAlias = z
  .object({ templateID: z.string(), public: z.boolean() })
  .openapi("E2BTemplateAliasResponse");
