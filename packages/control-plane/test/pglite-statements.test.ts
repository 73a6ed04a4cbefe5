/**
 * The PGlite client that prepares each statement once (PgliteStatements):
 * the same answers as PGlite's own `query`, one prepared statement per text
 * (at most `max`), errors that leave it usable, PGlite's transaction
 * semantics, and statements a schema change made stale prepared again.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { PGlite, types, type Transaction } from "@electric-sql/pglite";
import { PgliteStatements } from "../src/db/pglite-statements.ts";

let pg: PGlite;
before(async () => {
  pg = await PGlite.create();
  await pg.exec(`
    create table t (id int primary key, name text, big bigint, ok boolean, doc jsonb,
                    at timestamptz, tags text[]);
    insert into t values (1, 'one', 9007199254740993, true, '{"a":[1,2]}',
                          '2026-12-05T10:00:00Z', '{x,y}');`);
});
after(() => pg.close());

/** Our prepared statements (by text), as PostgreSQL lists them. */
async function preparedTexts(): Promise<string[]> {
  const { rows } = await pg.query<{ statement: string }>(
    "select statement from pg_prepared_statements where name like 'wrenn_%' order by name",
  );
  return rows.map((r) => r.statement);
}

test("answers as PGlite's own query does, in object and array row modes", async () => {
  const client = new PgliteStatements(pg);
  const text = "select * from t where id = $1 and name = $2 and ok = $3 and doc = $4";
  const params = [1, "one", true, { a: [1, 2] }];
  for (const rowMode of ["object", "array"] as const) {
    const mine = await client.query(text, params, { rowMode });
    const theirs = await pg.query(text, params, { rowMode });
    assert.deepEqual(mine.rows, theirs.rows);
    assert.deepEqual(mine.fields, theirs.fields);
    assert.equal(mine.rows.length, 1);
  }
  // A query's own parsers override PGlite's for their types only (drizzle keeps timestamps as text).
  const asText = { parsers: { [types.TIMESTAMPTZ]: (v: string) => `at ${v}` } };
  const own = await client.query("select at, big, doc from t where id = $1", [1], asText);
  assert.deepEqual(
    own.rows,
    (await pg.query("select at, big, doc from t where id = $1", [1], asText)).rows,
  );
  const [row] = own.rows as Array<{ at: unknown; doc: unknown }>;
  assert.match(String(row?.at), /^at 2026-12-05 10:00:00/);
  assert.deepEqual(row?.doc, { a: [1, 2] }, "jsonb still parsed");
  const nulls = await client.query("select $1::text as a, $2::int as b", [null, undefined]);
  assert.deepEqual(nulls.rows, [{ a: null, b: null }]);
  const when = new Date("2026-12-05T10:00:00Z");
  const dated = await client.query<{ id: number }>("select id from t where at = $1", [when]);
  assert.deepEqual(dated.rows, [{ id: 1 }]);
  const written = await client.query("update t set name = $1 where id = $2", ["uno", 1]);
  assert.equal(written.affectedRows, 1);
  await client.query("update t set name = $1 where id = $2", ["one", 1]);
});

test("a statement is prepared once, however often it runs", async () => {
  const client = new PgliteStatements(pg);
  const before = (await preparedTexts()).length;
  for (let i = 0; i < 5; i++) {
    const { rows } = await client.query<{ n: number }>("select $1::int + 1 as n", [i]);
    assert.deepEqual(rows, [{ n: i + 1 }]);
  }
  assert.equal(client.size, 1);
  const texts = await preparedTexts();
  assert.equal(texts.length, before + 1);
  assert.equal(texts.filter((s) => s === "select $1::int + 1 as n").length, 1);
});

test("keeps at most `max` statements, closing the least recently used", async () => {
  const fresh = await PGlite.create();
  try {
    const client = new PgliteStatements(fresh, { max: 2 });
    for (const n of [1, 2, 1, 3]) await client.query(`select ${n} as n`);
    assert.equal(client.size, 2);
    const { rows } = await fresh.query<{ statement: string }>(
      "select statement from pg_prepared_statements order by statement",
    );
    assert.deepEqual(
      rows.map((r) => r.statement),
      ["select 1 as n", "select 3 as n"],
    );
    // An evicted one is prepared again when it comes back.
    assert.deepEqual((await client.query("select 2 as n")).rows, [{ n: 2 }]);
  } finally {
    await fresh.close();
  }
});

test("a failed statement throws PostgreSQL's error and leaves the client usable", async () => {
  const client = new PgliteStatements(pg);
  const dup = await client.query("insert into t (id) values ($1)", [1]).catch((e: unknown) => e);
  assert.equal((dup as { code?: string }).code, "23505", String(dup));
  const syntax = await client.query("selec 1").catch((e: unknown) => e);
  assert.equal((syntax as { code?: string }).code, "42601", String(syntax));
  assert.equal(client.size, 1, "the statement that did not parse is not kept");
  assert.deepEqual((await client.query("select 2 as n")).rows, [{ n: 2 }]);
});

test("transactions: their queries see their writes, a rollback undoes them, others wait", async () => {
  const client = new PgliteStatements(pg);
  const count = async (q: Pick<Transaction, "query"> = client) =>
    (await q.query<{ n: number }>("select count(*)::int as n from t where id >= $1", [100])).rows[0]
      ?.n;
  await assert.rejects(
    client.transaction(async (tx) => {
      await tx.query("insert into t (id, name) values ($1, $2)", [100, "gone"]);
      assert.equal(await count(tx), 1, "the transaction sees its own insert");
      throw new Error("undo");
    }),
    /undo/,
  );
  assert.equal(await count(), 0, "rolled back");

  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let inserted!: () => void;
  const didInsert = new Promise<void>((r) => (inserted = r));
  let leaked: Transaction | undefined;
  const tx = client.transaction(async (t) => {
    leaked = t;
    await t.query("insert into t (id, name) values ($1, $2)", [101, "kept"]);
    inserted();
    await held;
  });
  await didInsert;
  let outside: number | undefined;
  const waiting = count().then((n) => (outside = n));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(outside, undefined, "a query outside waits for the transaction under way");
  release();
  await tx;
  await waiting;
  assert.equal(outside, 1, "and then sees what it committed");
  assert.throws(() => leaked?.query("select 1"), /Transaction is closed/);
  await client.query("delete from t where id >= $1", [100]);
});

test("a statement a schema change made stale fails once, then is prepared afresh", async () => {
  const fresh = await PGlite.create();
  try {
    await fresh.exec("create table s (a int); insert into s values (1);");
    const client = new PgliteStatements(fresh);
    assert.deepEqual((await client.query("select * from s")).rows, [{ a: 1 }]);
    await fresh.exec("alter table s add column b text default 'x';");
    const stale = await client.query("select * from s").catch((e: unknown) => e);
    assert.equal((stale as { code?: string }).code, "0A000", String(stale));
    assert.deepEqual((await client.query("select * from s")).rows, [{ a: 1, b: "x" }]);
    const { rows } = await fresh.query("select name from pg_prepared_statements");
    assert.equal(rows.length, 1, "the stale statement was closed");
  } finally {
    await fresh.close();
  }
});
