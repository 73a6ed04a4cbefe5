/**
 * What the agent's RPCs accept: every field from the control plane checked
 * (ids name files and sockets, sizes bound host resources) before anything
 * runs; a bad one is an invalid_argument naming the field.
 */
import { cpus } from "node:os";
import { z } from "zod";
import { WrennError } from "@wrenn/shared/errors.ts";
import { MAX_EGRESS_ENTRIES, egressEntryProblem } from "../network/egress.ts";

/** Ids come from the control plane; they name files, sockets and hostnames. */
export const sandboxId = z
  .string()
  .regex(/^[a-z0-9]{1,40}$/, "sandbox_id must be 1-40 lowercase letters or digits");
export const templateName = z
  .string()
  .regex(
    /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/,
    "template must start with a letter or digit and use only letters, digits, '.', '_' or '-' (at most 64)",
  );
export const guestPath = z.string().min(1, "path must not be empty").max(4096, "path is too long");
export const user = z
  .string()
  .regex(/^([a-z_][a-z0-9_-]{0,31})?$/, "user must be a Linux user name")
  .optional();

const limits = {
  vcpus: { default: 1, min: 1, max: Math.max(1, cpus().length * 4) },
  memoryMb: { default: 512, min: 128, max: 262_144 },
  diskSizeMb: { default: 20_480, min: 512, max: 4_194_304 },
};

/** Idle seconds before the reaper pauses a sandbox; 0: never (its control plane owns its lifetime). */
export const idleTimeoutSec = z
  .number()
  .int()
  .max(30 * 24 * 3600, "timeout_sec must be at most 30 days");

/** proto3 sends 0 for "not set": such fields take their default, others must be in range. */
function bounded(name: string, l: { default: number; min?: number; max: number }) {
  return z
    .number()
    .int()
    .transform((v) => (v === 0 ? l.default : v))
    .refine((v) => v >= (l.min ?? 0) && v <= l.max, {
      message: `${name} must be between ${l.min ?? 0} and ${l.max}`,
    });
}

const egressEntry = z.string().superRefine((entry, ctx) => {
  const problem = egressEntryProblem(entry);
  if (problem !== null) ctx.addIssue({ code: "custom", message: problem });
});
const egressList = z
  .array(egressEntry)
  .max(MAX_EGRESS_ENTRIES, `at most ${MAX_EGRESS_ENTRIES} entries`);
/** Absent: no rules. Names are resolved when the rules are applied, not here. */
export const networkSchema = z
  .object({ allowOut: egressList, denyOut: egressList })
  .optional()
  .transform((n) => ({ allowOut: n?.allowOut ?? [], denyOut: n?.denyOut ?? [] }));

export const createSchema = z.object({
  sandboxId,
  template: z
    .string()
    .transform((t) => t || "minimal")
    .pipe(templateName),
  vcpus: bounded("vcpus", limits.vcpus),
  memoryMb: bounded("memory_mb", limits.memoryMb),
  diskSizeMb: bounded("disk_size_mb", limits.diskSizeMb),
  timeoutSec: idleTimeoutSec,
  envVars: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "bad env var name"), z.string()),
  envdAccessToken: z.string().max(256),
  network: networkSchema,
});

/** A terminal: pid 0 starts a shell; sizes default to 80×24. */
export const ptySchema = z.object({
  sandboxId,
  pid: z.number().int().min(0),
  cols: z
    .number()
    .int()
    .max(1000)
    .transform((v) => v || 80),
  rows: z
    .number()
    .int()
    .max(1000)
    .transform((v) => v || 24),
  user,
});

export const execSchema = z.object({
  sandboxId,
  cmd: z.string().min(1, "cmd must not be empty"),
  args: z.array(z.string()),
  timeoutSec: bounded("timeout_sec", { default: 60, max: 24 * 3600 }),
  envs: z.record(z.string(), z.string()),
  cwd: z.string().optional(),
  user,
});

export function parse<T extends z.ZodType>(schema: T, input: unknown): z.output<T> {
  const result = schema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue?.path.length ? `${issue.path.join(".")}: ` : "";
    throw new WrennError("invalid_argument", `${where}${issue?.message ?? "invalid request"}`);
  }
  return result.data;
}
