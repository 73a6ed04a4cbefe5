import { randomBytes } from "node:crypto";
import pg from "pg";

/**
 * Runs `fn` with the URL of a database made for it on the server `url`
 * names (DATABASE_URL), dropped after.
 */
export async function withScratchDatabase<T>(
  url: string,
  fn: (url: string) => Promise<T>,
): Promise<T> {
  const name = `wrenn_bench_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
    const u = new URL(url);
    u.pathname = `/${name}`;
    return await fn(u.toString());
  } finally {
    await admin.query(`drop database if exists ${name} with (force)`);
    await admin.end();
  }
}
