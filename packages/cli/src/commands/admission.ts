import type { ControlPlaneOptions } from "@wrenn/control-plane/server.ts";
import { WrennError } from "@wrenn/shared/errors.ts";

/** The flags `wrenn up` and `wrenn control-plane` share for how far hosts are filled and whom to believe about client addresses. */
export const ADMISSION_OPTIONS = {
  "overcommit-cpu": { type: "string", default: process.env.WRENN_OVERCOMMIT_CPU },
  "overcommit-memory": { type: "string", default: process.env.WRENN_OVERCOMMIT_MEMORY },
  "reserve-memory": { type: "string", default: process.env.WRENN_RESERVE_MEMORY_MB },
  "trust-proxy": { type: "string", multiple: true, default: [] as string[] },
} as const;

export const ADMISSION_HELP = {
  overcommitCpu:
    "vCPUs a core may carry, counting the host's measured busy cores plus the vCPUs of sandboxes still starting (default 16; 1 refuses new sandboxes on a saturated host; $WRENN_OVERCOMMIT_CPU)",
  overcommitMemory:
    "what sandboxes declare may total this × a host's memory; their measured use must still fit its real memory (default 3; $WRENN_OVERCOMMIT_MEMORY)",
  reserveMemory:
    "MiB of each host's memory never given to sandboxes: measured use plus starting sandboxes stay below memory minus this (default 1024; $WRENN_RESERVE_MEMORY_MB)",
  trustProxy:
    "reverse proxies (addresses or CIDRs, comma-separated, repeatable; $WRENN_TRUST_PROXY) whose X-Forwarded-For names the client that rate limits count; by default the peer's address counts",
};

function positive(flag: string, value: string, max: number, integer: boolean): number {
  const n = Number(value.trim());
  if (
    !value.trim() ||
    !Number.isFinite(n) ||
    n <= 0 ||
    n > max ||
    (integer && !Number.isInteger(n))
  ) {
    throw new WrennError(
      "invalid_argument",
      `${flag} must be a ${integer ? "whole " : ""}number above 0 and at most ${max}, got '${value}'`,
    );
  }
  return n;
}

export function admissionOptions(values: {
  "overcommit-cpu"?: string | undefined;
  "overcommit-memory"?: string | undefined;
  "reserve-memory"?: string | undefined;
  "trust-proxy"?: string[] | undefined;
}): Pick<ControlPlaneOptions, "overcommit" | "trustProxy"> {
  const overcommit: NonNullable<ControlPlaneOptions["overcommit"]> = {};
  const cpu = values["overcommit-cpu"];
  const memory = values["overcommit-memory"];
  const reserve = values["reserve-memory"];
  if (cpu) overcommit.cpu = positive("--overcommit-cpu", cpu, 1000, false);
  if (memory) overcommit.memory = positive("--overcommit-memory", memory, 100, false);
  if (reserve)
    overcommit.reserveMemoryMb = positive("--reserve-memory", reserve, 2 ** 31 - 1, true);
  const given = values["trust-proxy"] ?? [];
  const trust = (given.length > 0 ? given : [process.env.WRENN_TRUST_PROXY ?? ""])
    .flatMap((v) => v.split(","))
    .map((v) => v.trim())
    .filter(Boolean);
  return { overcommit, ...(trust.length > 0 ? { trustProxy: trust } : {}) };
}
