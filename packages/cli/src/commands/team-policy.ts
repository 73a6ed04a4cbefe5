import type { ControlPlaneOptions } from "@wrenn/control-plane/server.ts";
import { WrennError } from "@wrenn/shared/errors.ts";

/** The flags `wrenn up` and `wrenn control-plane` share for who may sign up and what a team may hold. */
export const TEAM_POLICY_OPTIONS = {
  "open-signup": { type: "boolean", default: false },
  "team-quota": { type: "string", default: process.env.WRENN_TEAM_QUOTA },
} as const;

type TeamQuota = Required<NonNullable<ControlPlaneOptions["teamQuota"]>>;

const QUOTA_KEYS: Record<string, keyof TeamQuota> = {
  sandboxes: "sandboxes",
  vcpus: "vcpus",
  memory_mb: "memoryMb",
  disk_mb: "diskMb",
};

/** `sandboxes=20,vcpus=40,memory_mb=81920,disk_mb=1048576`: any of them, the rest default. */
export function parseTeamQuota(text: string): Partial<TeamQuota> {
  const quota: Partial<TeamQuota> = {};
  for (const part of text.split(",").filter(Boolean)) {
    const [name = "", value = ""] = part.split("=");
    const key = QUOTA_KEYS[name.trim()];
    const n = Number(value);
    if (!key || !/^\d+$/.test(value.trim()) || n > 2 ** 31 - 1) {
      throw new WrennError(
        "invalid_argument",
        `--team-quota takes NAME=N,... with NAME one of ${Object.keys(QUOTA_KEYS).join(", ")} and N a whole number, got '${part}'`,
      );
    }
    quota[key] = n;
  }
  return quota;
}

export function teamPolicyOptions(values: {
  "open-signup"?: boolean | undefined;
  "team-quota"?: string | undefined;
}): Pick<ControlPlaneOptions, "openSignup" | "teamQuota"> {
  return {
    openSignup: values["open-signup"] ?? false,
    ...(values["team-quota"] ? { teamQuota: parseTeamQuota(values["team-quota"]) } : {}),
  };
}
