import { mkdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { sql } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePg } from "drizzle-orm/node-postgres";
import { migrate as migratePg } from "drizzle-orm/node-postgres/migrator";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import pg from "pg";
import type { Logger } from "@wrenn/shared/log.ts";
import { timed } from "@wrenn/shared/log.ts";
import { PgliteStatements } from "./pglite-statements.ts";
import * as schema from "./schema.ts";

/** One query layer over either driver: the same schema and queries run on both. */
export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;

export interface Database {
  db: Db;
  /** "postgres" with DATABASE_URL, "pglite" for the embedded one. */
  kind: "postgres" | "pglite";
  close(): Promise<void>;
}

export interface OpenDatabaseOptions {
  /** A PostgreSQL connection string; without it an embedded PGlite is used. */
  url?: string;
  /** Where PGlite keeps its files; in memory when absent (tests). */
  dataDir?: string;
  /** An already open PGlite (tests clone one migrated instance per test). */
  pglite?: PGlite;
  log: Logger;
}

const migrationsFolder = fileURLToPath(new URL("../../migrations", import.meta.url));
// Any constant works; it only has to be the same for every control plane instance.
const MIGRATION_LOCK = 0x77_72_65_6e;

export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  const { log } = options;
  if (options.url) {
    const pool = new pg.Pool({ connectionString: options.url, max: 10 });
    // An idle client's socket error must not crash the process; the pool replaces it.
    pool.on("error", (err) => log.warn({ err }, "postgres client error"));
    const db = drizzlePg({ client: pool, schema });
    await timed(log, "db.migrate", async () => {
      // Several instances may start at once; only one may migrate at a time.
      const client = await pool.connect();
      try {
        await client.query("select pg_advisory_lock($1)", [MIGRATION_LOCK]);
        await migratePg(drizzlePg({ client, schema }), { migrationsFolder });
      } finally {
        await client.query("select pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => {});
        client.release();
      }
    });
    await seed(db);
    return { db, kind: "postgres", close: () => pool.end() };
  }
  if (options.dataDir) await mkdir(options.dataDir, { recursive: true });
  const client =
    options.pglite ??
    (await timed(log, "db.pglite.open", () =>
      PGlite.create(options.dataDir ? { dataDir: options.dataDir } : {}),
    ));
  // Migrations run once: their statements are not worth keeping prepared.
  await timed(log, "db.migrate", () =>
    migratePglite(drizzlePglite({ client, schema }), { migrationsFolder }),
  );
  // drizzle's PGlite driver calls only `query` and `transaction`, which this provides.
  const db = drizzlePglite({ client: new PgliteStatements(client) as unknown as PGlite, schema });
  await seed(db);
  return { db, kind: "pglite", close: () => client.close() };
}

async function seed(db: Db): Promise<void> {
  await db
    .insert(schema.teams)
    .values({ id: schema.PLATFORM_TEAM_ID, name: "platform" })
    .onConflictDoNothing();
}

/** True when the database answers; used by the health route. */
export async function pingDatabase(db: Db): Promise<boolean> {
  try {
    await db.execute(sql`select 1`);
    return true;
  } catch {
    return false;
  }
}
