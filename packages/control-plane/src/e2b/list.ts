import { and, asc, desc, eq, gt, inArray, sql, type SQL } from "drizzle-orm";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { Caller } from "../context.ts";
import type { Db } from "../db/open.ts";
import { sandboxes, type SandboxStatus } from "../db/schema.ts";
import type { SandboxRow } from "../sandboxes.ts";
import { afterCursor, encodeCursor } from "../cursor.ts";

export interface ListFilter {
  metadata?: Record<string, string> | undefined;
  states: Array<"running" | "paused">;
  template?: string | undefined;
  startedAfter?: Date | undefined;
}

const STATUSES: Record<"running" | "paused", SandboxStatus[]> = {
  // As stateOf() reports them: being created or resumed, or on a silent host, is running.
  running: ["pending", "running", "unknown"],
  paused: ["paused"],
};

/**
 * E2B's `metadata` filter: `key=value&k2=v2` where the SDK URL-encodes each
 * key and value before joining them, so they are decoded once more here.
 */
export function parseMetadataFilter(raw: string | undefined): Record<string, string> | undefined {
  if (!raw) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(raw)) {
    const key = decode(k);
    if (!key) throw new WrennError("invalid_argument", `metadata filter '${raw}' has an empty key`);
    out[key] = decode(v);
  }
  return out;
}

function decode(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    throw new WrennError("invalid_argument", `metadata filter part '${v}' is not URL-encoded`);
  }
}

/** `running,paused` or repeated `state=`; unknown states are a 400, not an empty list. */
export function parseStates(raw: string | string[] | undefined): Array<"running" | "paused"> {
  const parts = (Array.isArray(raw) ? raw : raw ? [raw] : [])
    .flatMap((s) => s.split(","))
    .map((s) => s.trim())
    .filter(Boolean);
  if (parts.length === 0) return ["running", "paused"];
  for (const p of parts) {
    if (p !== "running" && p !== "paused") {
      throw new WrennError("invalid_argument", `state '${p}' is not one of running, paused`);
    }
  }
  return [...new Set(parts)] as Array<"running" | "paused">;
}

function where(caller: Caller, f: ListFilter): SQL[] {
  const w: SQL[] = [
    eq(sandboxes.teamId, caller.teamId),
    inArray(
      sandboxes.status,
      f.states.flatMap((s) => STATUSES[s]),
    ),
  ];
  if (f.metadata && Object.keys(f.metadata).length > 0) {
    w.push(sql`${sandboxes.metadata} @> ${JSON.stringify(f.metadata)}::jsonb`);
  }
  if (f.template) w.push(eq(sandboxes.template, f.template));
  if (f.startedAfter) w.push(gt(sandboxes.createdAt, f.startedAfter));
  return w;
}

/** One page by start time (then id), in `order`; the token is where the previous page stopped. */
export async function listPage(
  db: Db,
  caller: Caller,
  f: ListFilter,
  page: { limit: number; order: "asc" | "desc"; nextToken?: string | undefined },
): Promise<{ rows: SandboxRow[]; nextToken: string | null }> {
  const w = where(caller, f);
  if (page.nextToken) {
    w.push(afterCursor(page.nextToken, page.order, "nextToken"));
  }
  const dir = page.order === "desc" ? desc : asc;
  const rows = await db
    .select()
    .from(sandboxes)
    .where(and(...w))
    .orderBy(dir(sandboxes.createdAt), dir(sandboxes.id))
    .limit(page.limit + 1);
  const more = rows.length > page.limit;
  if (more) rows.pop();
  const last = rows.at(-1);
  return { rows, nextToken: more && last ? encodeCursor(last) : null };
}

/** Everything matching, newest first (the legacy list has no paging); capped to keep answers bounded. */
export async function listAll(db: Db, caller: Caller, f: ListFilter): Promise<SandboxRow[]> {
  return db
    .select()
    .from(sandboxes)
    .where(and(...where(caller, f)))
    .orderBy(desc(sandboxes.createdAt), desc(sandboxes.id))
    .limit(10_000);
}
