/**
 * PGlite's `query` plans every statement afresh and runs it as six calls
 * into its wasm backend (parse, describe, bind, describe, execute, sync),
 * each awaited: ≈ 0.3–0.9 ms per statement here, most of a REST create's
 * database time. The control plane sends the same few dozen statements
 * over and over, so this client prepares each one once, under a name, and
 * then runs it as one call (bind, describe, execute, sync), on the plan
 * PostgreSQL keeps for it: 0.05–0.16 ms. PostgreSQL's own driver is left
 * as it is (node-postgres).
 *
 * It is what drizzle's PGlite driver calls (`query`, `transaction`), with
 * PGlite's own locking: a query outside a transaction waits for the one
 * under way, and one protocol exchange runs at a time.
 */
import {
  parse,
  protocol,
  type PGlite,
  type QueryOptions,
  type Results,
  type Transaction,
} from "@electric-sql/pglite";

const { serialize } = protocol;

/** Distinct statements kept prepared; the least recently used one is closed beyond it. */
const DEFAULT_MAX = 500;

/**
 * Errors after which a prepared statement is not worth keeping: it no longer
 * exists (26000), or a schema change altered what it returns (0A000,
 * "cached plan must not change result type").
 */
const STALE = new Set(["26000", "0A000"]);

interface Prepared {
  name: string;
  /** The parameters' type OIDs, as PostgreSQL inferred them: how each value is serialised. */
  paramTypes: number[];
}

type Query = <T>(text: string, params?: unknown[], options?: QueryOptions) => Promise<Results<T>>;

/** The part of PGlite that drizzle's PGlite driver uses. */
export interface PgliteClient {
  query: Query;
  transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T>;
}

/** Names are unique in the process: two clients may share one PGlite (tests do). */
let nextName = 0;

export class PgliteStatements implements PgliteClient {
  readonly #pg: PGlite;
  readonly #max: number;
  /** By statement text, least recently used first. */
  readonly #prepared = new Map<string, Prepared>();
  /** Names to close with the next exchange (evicted or stale). */
  #toClose: string[] = [];

  constructor(pg: PGlite, opts: { max?: number } = {}) {
    this.#pg = pg;
    this.#max = opts.max ?? DEFAULT_MAX;
  }

  /** How many statements are kept prepared now. */
  get size(): number {
    return this.#prepared.size;
  }

  query<T>(text: string, params?: unknown[], options?: QueryOptions): Promise<Results<T>> {
    if (options?.blob) return this.#pg.query<T>(text, params, options);
    return this.#pg._runExclusiveTransaction(() =>
      this.#run<T>(text, params ?? [], options, false),
    );
  }

  transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
    return this.#pg.transaction((tx) => {
      const query: Query = (text, params, options) => {
        if (tx.closed) throw new Error("Transaction is closed");
        if (options?.blob) return tx.query(text, params, options);
        return this.#run(text, params ?? [], options, true);
      };
      return fn({
        query,
        sql: tx.sql,
        exec: tx.exec,
        rollback: tx.rollback,
        listen: tx.listen,
        get closed() {
          return tx.closed;
        },
      });
    });
  }

  #run<T>(
    text: string,
    params: unknown[],
    options: QueryOptions | undefined,
    inTransaction: boolean,
  ): Promise<Results<T>> {
    const pg = this.#pg;
    return pg._runExclusiveQuery(async () => {
      const stmt = this.#prepared.get(text) ?? (await this.#prepare(text, options));
      // Most recently used last.
      this.#prepared.delete(text);
      this.#prepared.set(text, stmt);
      const values = params.map((param, i) => {
        if (param === null || param === undefined) return null;
        const oid = stmt.paramTypes[i] ?? 0;
        const serializer = options?.serializers?.[oid] ?? pg.serializers[oid];
        return serializer ? serializer(param) : String(param);
      });
      try {
        const { messages } = await pg.execProtocol(
          Buffer.concat([
            serialize.bind({ statement: stmt.name, values }),
            serialize.describe({ type: "P" }),
            serialize.execute({}),
            serialize.sync(),
          ]),
          {
            syncToFs: !inTransaction,
            ...(options?.onNotice ? { onNotice: options.onNotice } : {}),
          },
        );
        // PGlite would copy its ≈ 300 parsers into a new object to add the
        // query's own (drizzle passes some with every query): ≈ 0.1 ms a
        // query. Layered on them instead, its own shadow them just the same.
        const { parsers, ...rest } = options ?? {};
        const layered: PGlite["parsers"] = parsers
          ? Object.assign(Object.create(pg.parsers) as PGlite["parsers"], parsers)
          : pg.parsers;
        return parse.parseResults(messages, layered, rest)[0] as Results<T>;
      } catch (err) {
        if (STALE.has((err as { code?: string }).code ?? "")) {
          this.#prepared.delete(text);
          this.#toClose.push(stmt.name);
        }
        throw err;
      }
    });
  }

  async #prepare(text: string, options: QueryOptions | undefined): Promise<Prepared> {
    const name = `wrenn_${nextName++}`;
    while (this.#prepared.size >= this.#max) {
      const [oldest] = this.#prepared;
      if (!oldest) break;
      this.#prepared.delete(oldest[0]);
      this.#toClose.push(oldest[1].name);
    }
    const closes = this.#toClose.map((n) => serialize.close({ type: "S", name: n }));
    this.#toClose = [];
    const { messages } = await this.#pg.execProtocol(
      Buffer.concat([
        ...closes,
        serialize.parse({ name, text, types: options?.paramTypes ?? [] }),
        serialize.describe({ type: "S", name }),
        serialize.sync(),
      ]),
      { syncToFs: false },
    );
    return { name, paramTypes: parse.parseDescribeStatementResults(messages) };
  }
}
