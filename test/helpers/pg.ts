/**
 * The machine's PostgreSQL for tests (postgres://postgres@127.0.0.1:5432, or PG_URL naming the
 * server; its `postgres` database is used to create and drop others): whether it answers, a fresh
 * database per run (`freshDatabase`), dropped afterwards. Suites that need PostgreSQL skip, with a
 * message naming it, where none answers.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The server, without a database name. */
export const PG_SERVER = process.env['PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432';

function urlOf(database: string): string {
  const url = new URL(PG_SERVER);
  url.pathname = `/${database}`;
  return url.toString();
}

let answers: Promise<boolean> | undefined;

/** Whether PostgreSQL answers (within 2 s); warns naming it when not. Asked once per process. */
export function pgAnswers(suite: string): Promise<boolean> {
  answers ??= (async () => {
    const client = new pg.Client({ connectionString: urlOf('postgres'), connectionTimeoutMillis: 2_000 });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return true;
    } catch {
      return false;
    } finally {
      await client.end().catch(() => {});
    }
  })();
  return answers.then((up) => {
    if (!up) console.warn(`[${suite}] PostgreSQL cases skipped: no PostgreSQL answers at ${PG_SERVER} (set PG_URL, or start PostgreSQL)`);
    return up;
  });
}

export interface FreshDatabase {
  /** The `database:` value for a config. */
  readonly url: string;
  readonly name: string;
  /** Drops the database (ending its connections first). */
  drop(): Promise<void>;
}

/** A new, empty database of this run's own. */
export async function freshDatabase(kind: string): Promise<FreshDatabase> {
  const name = `gw_${kind.replace(/\W/g, '_').slice(0, 20)}_${process.pid}_${randomBytes(4).toString('hex')}`.toLowerCase();
  await admin(`CREATE DATABASE ${name}`);
  return {
    url: urlOf(name),
    name,
    drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}

/** One statement on the server's `postgres` database. */
async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: urlOf('postgres') });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Runs SQL against a test database (to look at, or tamper with, what the gateway wrote). */
export async function pgQuery<T extends pg.QueryResultRow = pg.QueryResultRow>(
  url: string,
  sql: string,
  values: unknown[] = [],
): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, values)).rows;
  } finally {
    await client.end();
  }
}
