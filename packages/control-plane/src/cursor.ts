import { and, eq, gt, lt, or, type SQL } from "drizzle-orm";
import { WrennError } from "@wrenn/shared/errors.ts";
import { sandboxes } from "./db/schema.ts";

/**
 * Page tokens of sandbox lists (/v1's and E2B's): the last row's creation
 * time and id, so the next page starts after it whatever was created since.
 */
export function encodeCursor(row: { createdAt: Date; id: string }): string {
  return Buffer.from(`${row.createdAt.toISOString()}|${row.id}`).toString("base64url");
}

// What encodeCursor writes: an ISO time (PostgreSQL's range, 4-digit years) and a sandbox id.
const CURSOR = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)\|([a-z0-9]{1,64})$/;

/** The rows past a token's in list order; `param` names the token in the error. */
export function afterCursor(token: string, order: "asc" | "desc", param: string): SQL {
  const match = CURSOR.exec(Buffer.from(token, "base64url").toString());
  const createdAt = new Date(match?.[1] ?? "");
  const id = match?.[2];
  if (!id || Number.isNaN(createdAt.getTime())) {
    throw new WrennError("invalid_argument", `${param} is not one this API gave out`);
  }
  const past = order === "desc" ? lt : gt;
  return or(
    past(sandboxes.createdAt, createdAt),
    and(eq(sandboxes.createdAt, createdAt), past(sandboxes.id, id)),
  ) as SQL;
}
