import type { ControlPlaneOptions } from "@wrenn/control-plane/server.ts";

/** The flags `wrenn up` and `wrenn control-plane` share for who may sign up. */
export const TEAM_POLICY_OPTIONS = {
  "open-signup": { type: "boolean", default: false },
} as const;

export function teamPolicyOptions(values: {
  "open-signup"?: boolean | undefined;
}): Pick<ControlPlaneOptions, "openSignup"> {
  return { openSignup: values["open-signup"] ?? false };
}
