/**
 * Reading the store with one set of queries on either engine: the audit log, stats, export and the
 * usage report are written once, with named parameters (`@name`), and run on SQLite (better-sqlite3,
 * synchronous, wrapped) or PostgreSQL (pg, `$n` parameters, rows streamed through a cursor).
 *
 * The queries stay in the SQL both engines share: `TRUE`, `count(*)`, `sum`, `min`/`max` as
 * aggregates, `ORDER BY … LIMIT`. Integer results come back as JavaScript numbers on both (pg's
 * bigint and numeric are parsed, see pg.ts).
 */
import type { Db } from './db.js';

export type Params = Readonly<Record<string, string | number | null>>;

export interface Reader {
  readonly engine: 'sqlite' | 'postgres';
  all<T>(sql: string, params?: Params): Promise<T[]>;
  get<T>(sql: string, params?: Params): Promise<T | undefined>;
  /**
   * The rows one at a time, in memory a batch at a time; leaving the loop early closes the
   * cursor.
   */
  iterate<T>(sql: string, params?: Params): AsyncIterable<T>;
}

/** A Reader over a better-sqlite3 connection. */
export function sqliteReader(db: Db): Reader {
  return {
    engine: 'sqlite',
    all: async <T>(sql: string, params: Params = {}) => db.prepare(sql).all(params) as T[],
    get: async <T>(sql: string, params: Params = {}) => db.prepare(sql).get(params) as T | undefined,
    async *iterate<T>(sql: string, params: Params = {}): AsyncIterable<T> {
      yield* db.prepare(sql).iterate(params) as IterableIterator<T>;
    },
  };
}

/**
 * `@name` parameters as PostgreSQL's `$1…$n`, and the values in that order. A name used twice is
 * one parameter. Names inside quoted text are left alone.
 */
export function positional(sql: string, params: Params): { text: string; values: (string | number | null)[] } {
  const order = new Map<string, number>();
  const values: (string | number | null)[] = [];
  const text = sql.replace(/'(?:[^']|'')*'|@([A-Za-z_][A-Za-z0-9_]*)/g, (match, name: string | undefined) => {
    if (name === undefined) return match;
    if (!(name in params)) throw new Error(`no value for the query parameter @${name}`);
    let n = order.get(name);
    if (n === undefined) {
      values.push(params[name]!);
      n = values.length;
      order.set(name, n);
    }
    return `$${n}`;
  });
  return { text, values };
}
