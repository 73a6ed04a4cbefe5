import type { SandboxMetric as AgentMetric } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { PLATFORM_TEAM_ID, type SandboxNetwork } from "../db/schema.ts";
import type { SandboxRow, TemplateRow } from "../sandboxes.ts";
import type { NewSandboxBody } from "./schemas.ts";

/**
 * The envd version Wrenn's guest daemon reports (packages/envd/src/state.ts;
 * test/e2b-sandboxes.test.ts keeps the two equal). The SDK gates features on
 * it: 0.4.0 default user, 0.5.2 CloseStdin, 0.5.7 octet-stream uploads, 0.6.2
 * file metadata, 0.6.3 watch entries, 0.6.4 watching network mounts.
 */
export const ENVD_VERSION = "0.6.4";

/** E2B's default template name; Wrenn's default base template answers to it. */
export const DEFAULT_TEMPLATE = "minimal";

export const ALL_TRAFFIC = "0.0.0.0/0";

/** E2B knows two states; a sandbox being created or resumed, or on a silent host, counts as running. */
export function stateOf(row: SandboxRow): "running" | "paused" {
  return row.status === "paused" ? "paused" : "running";
}

/** `/v1` sandboxes have no E2B end: their idle timeout from the last change stands in for it. */
function endOf(row: SandboxRow): Date {
  return row.endAt ?? new Date(row.updatedAt.getTime() + row.timeoutSec * 1000);
}

export function sandboxJson(row: SandboxRow, domain: string | null) {
  return {
    sandboxID: row.id,
    templateID: row.template,
    alias: row.template,
    // E2B's deprecated client id names the machine; here the host.
    clientID: row.hostId ?? "",
    envdVersion: ENVD_VERSION,
    envdAccessToken: row.envdAccessToken,
    // Only a sandbox that guards its ports needs the token to reach them.
    trafficAccessToken: row.allowPublicTraffic ? null : row.trafficAccessToken,
    domain,
  };
}

export function listedJson(row: SandboxRow) {
  return {
    sandboxID: row.id,
    templateID: row.template,
    alias: row.template,
    clientID: row.hostId ?? "",
    startedAt: row.createdAt.toISOString(),
    endAt: endOf(row).toISOString(),
    cpuCount: row.vcpus,
    memoryMB: row.memoryMb,
    diskSizeMB: row.diskSizeMb,
    metadata: row.metadata,
    state: stateOf(row),
    envdVersion: ENVD_VERSION,
  };
}

export function detailJson(row: SandboxRow, domain: string | null) {
  const denyAll = row.network.denyOut?.includes(ALL_TRAFFIC) ?? false;
  return {
    ...listedJson(row),
    envdAccessToken: row.envdAccessToken,
    domain,
    // Not stored as such: a deny-all rule is what `allow_internet_access: false` made.
    allowInternetAccess: denyAll ? false : null,
    network: {
      ...(row.network.allowOut ? { allowOut: row.network.allowOut } : {}),
      ...(row.network.denyOut ? { denyOut: row.network.denyOut } : {}),
      allowPublicTraffic: row.allowPublicTraffic,
    },
    lifecycle: {
      autoResume: row.autoResume,
      onTimeout: row.autoPause ? ("pause" as const) : ("kill" as const),
    },
  };
}

/** Egress rules from E2B's `network` and `allow_internet_access` (false = deny all but allowOut). */
export function networkOf(
  network: { allowOut?: string[] | undefined; denyOut?: string[] | undefined } | undefined,
  allowInternetAccess: boolean | undefined,
): SandboxNetwork {
  const allowOut = network?.allowOut ?? [];
  const denyOut = [...(network?.denyOut ?? [])];
  if (allowInternetAccess === false && !denyOut.includes(ALL_TRAFFIC)) denyOut.push(ALL_TRAFFIC);
  return {
    ...(allowOut.length ? { allowOut } : {}),
    ...(denyOut.length ? { denyOut } : {}),
  };
}

/** The parts of an E2B create that become row columns. */
export function e2bOptionsOf(body: NewSandboxBody, secureByDefault: boolean, timeoutSec: number) {
  return {
    endAt: new Date(Date.now() + timeoutSec * 1000),
    autoPause: body.autoPause ?? false,
    autoResume: body.autoResume?.enabled ?? false,
    secure: body.secure ?? secureByDefault,
    allowPublicTraffic: body.network?.allowPublicTraffic ?? true,
    metadata: body.metadata ?? {},
    network: networkOf(body.network, body.allow_internet_access),
  };
}

export function templateJson(row: TemplateRow) {
  return {
    templateID: row.name,
    buildID: row.id,
    aliases: [row.name],
    names: [row.name],
    public: row.teamId === PLATFORM_TEAM_ID,
    cpuCount: row.vcpus,
    memoryMB: row.memoryMb,
    diskSizeMB: Math.ceil(row.sizeBytes / (1 << 20)),
    envdVersion: ENVD_VERSION,
    buildStatus: "ready" as const,
    buildCount: 1,
    spawnCount: 0,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.createdAt.toISOString(),
    lastSpawnedAt: null,
    createdBy: null,
  };
}

export function metricJson(m: AgentMetric) {
  const ms = Number(m.timestampMs);
  return {
    timestamp: new Date(ms).toISOString(),
    timestampUnix: Math.floor(ms / 1000),
    cpuCount: m.cpuCount,
    cpuUsedPct: m.cpuUsedPct,
    memUsed: Number(m.memUsedBytes),
    memTotal: Number(m.memTotalBytes),
    // The agent's samples do not tell the page cache apart.
    memCache: 0,
    diskUsed: Number(m.diskUsedBytes),
    diskTotal: Number(m.diskTotalBytes),
  };
}
