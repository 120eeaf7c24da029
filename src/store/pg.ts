/**
 * The PostgreSQL store (`database: postgres://…`), for several gateway replicas sharing keys, one
 * audit chain and usage. The same tables as the SQLite file, plus `audit_head`: the one row that
 * every append locks (`SELECT … FOR UPDATE`) inside the transaction that inserts its rows, so
 * appends from all replicas serialise on it and form one gapless chain.
 *
 * The schema is versioned in `mcp_gateway_schema` and migrated at start inside a transaction that
 * holds an advisory lock: replicas starting together migrate once, the others wait and find it done.
 */
import pg from 'pg';
import { GENESIS_HASH } from '../audit/chain.js';
import { positional, type Params, type Reader } from './sql.js';
import { SHARED_SESSION_TABLES, SHARED_SPENT_TABLE, StoreError } from './db.js';

/** Whether `database` names a PostgreSQL server rather than a file. */
export function isPostgresUrl(database: string): boolean {
  return /^postgres(?:ql)?:\/\//i.test(database);
}

/** The URL without its password (for messages and logs). */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    // pg also takes the password as a query parameter.
    if (u.searchParams.has('password')) u.searchParams.set('password', '***');
    return u.toString().replace('password=%2A%2A%2A', 'password=***');
  } catch {
    return 'postgres://… (an unparseable URL)';
  }
}

/** The password in a database URL, as a secret to redact from every log line. */
export function urlPassword(database: string): { name: string; value: string }[] {
  if (!isPostgresUrl(database)) return [];
  try {
    const url = new URL(database);
    const passwords = [decodeURIComponent(url.password), url.searchParams.get('password') ?? ''].filter(Boolean);
    return passwords.map((value) => ({ name: 'database password', value }));
  } catch {
    return [];
  }
}

/** The advisory lock key of migrations and chain-mode checks ("mcpgw" in ASCII). */
const MIGRATION_LOCK = 0x6d63_7067_77;

const MIGRATIONS: readonly string[] = [
  // 1: keys, audit chain and its head, usage, catalog and protocol caches
  `
  CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    consumer_id     TEXT NOT NULL,
    roles           TEXT NOT NULL,
    hash            TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    expires_at      TEXT,
    revoked_at      TEXT,
    disabled        INTEGER NOT NULL DEFAULT 0,
    rate_per_minute DOUBLE PRECISION,
    rate_burst      DOUBLE PRECISION,
    rotated_from    TEXT
  );
  CREATE TABLE audit_log (
    seq          BIGINT PRIMARY KEY,
    ts           TEXT NOT NULL,
    consumer_id  TEXT,
    key_id       TEXT,
    auth_method  TEXT,
    roles        TEXT,
    server       TEXT,
    kind         TEXT NOT NULL,
    name         TEXT NOT NULL,
    arguments    TEXT,
    result       TEXT,
    status       TEXT NOT NULL,
    error        TEXT,
    latency_ms   BIGINT NOT NULL,
    decided_by   TEXT,
    method       TEXT,
    meta         TEXT,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
  );
  CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
  );
  INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '${GENESIS_HASH}');
  CREATE TABLE audit_meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
  );
  CREATE TABLE usage_hourly (
    hour            TEXT NOT NULL,
    consumer_id     TEXT NOT NULL,
    server          TEXT NOT NULL,
    tool            TEXT NOT NULL,
    calls           BIGINT NOT NULL DEFAULT 0,
    errors          BIGINT NOT NULL DEFAULT 0,
    denied          BIGINT NOT NULL DEFAULT 0,
    rate_limited    BIGINT NOT NULL DEFAULT 0,
    latency_sum_ms  DOUBLE PRECISION NOT NULL DEFAULT 0,
    latency_max_ms  DOUBLE PRECISION NOT NULL DEFAULT 0,
    cost            DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, consumer_id, server, tool)
  );
  CREATE TABLE server_catalog (
    server       TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,
    catalog      TEXT NOT NULL,
    updated_at   TEXT NOT NULL
  );
  CREATE TABLE server_protocol (
    server       TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,
    verdict      TEXT NOT NULL,
    updated_at   TEXT NOT NULL
  );
  `,
  // 2: the session-sealing secret and ended sessions (as SQLite's schema 4)
  SHARED_SESSION_TABLES,
  // 3: spent request-state nonces (as SQLite's schema 5)
  SHARED_SPENT_TABLE,
];

/** bigint and numeric as JavaScript numbers (seq, counts and sums stay far below 2^53). */
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === 20 || oid === 1700) return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format as 'text');
  }) as typeof pg.types.getTypeParser,
};

export interface PgOptions {
  /** Connections at most (the recorder holds one while it commits). */
  readonly max?: number;
  /** How long to wait for a connection, in ms. */
  readonly connectTimeoutMs?: number;
  /** Read only: no migration (the schema must be current). */
  readonly readonly?: boolean;
}

/** A pool of connections to one PostgreSQL database, its schema current. */
export class PgDatabase {
  readonly label: string;
  /** Told when an idle connection fails (the server went away); the pool replaces it. */
  onIdleError: ((err: Error) => void) | undefined;

  private constructor(
    readonly pool: pg.Pool,
    url: string,
  ) {
    this.label = describeUrl(url);
    // An idle connection that breaks emits 'error' on the pool: unhandled, it would end the process.
    pool.on('error', (err) => this.onIdleError?.(err));
  }

  static async open(url: string, options: PgOptions = {}): Promise<PgDatabase> {
    const pool = new pg.Pool({
      connectionString: url,
      max: options.max ?? 8,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
      idleTimeoutMillis: 30_000,
      application_name: 'mcp-gateway',
      types: TYPES,
    });
    const db = new PgDatabase(pool, url);
    try {
      await db.migrate(options.readonly ?? false);
    } catch (err) {
      await pool.end().catch(() => {});
      if (err instanceof StoreError) throw err;
      throw new StoreError(db.label, `cannot be used (PostgreSQL: ${(err as Error).message})`);
    }
    return db;
  }

  /**
   * Runs `fn` in a transaction on one connection; rolls back when it throws. `first`, a statement
   * without parameters, is sent with BEGIN in one round trip; `fn` gets its rows.
   */
  async transaction<T>(fn: (client: pg.PoolClient, firstRows: pg.QueryResultRow[]) => Promise<T>, first?: string): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      let rows: pg.QueryResultRow[] = [];
      if (first === undefined) await client.query('BEGIN');
      else rows = ((await client.query(`BEGIN; ${first}`)) as unknown as pg.QueryResult[])[1]!.rows;
      const result = await fn(client, rows);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      broken = err as Error;
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      // A connection that failed mid-transaction is not handed out again.
      client.release(broken !== undefined && isConnectionError(broken) ? broken : undefined);
    }
  }

  async query<T extends pg.QueryResultRow>(text: string, values: readonly unknown[] = []): Promise<pg.QueryResult<T>> {
    return this.pool.query<T>(text, values as unknown[]);
  }

  reader(): Reader {
    return pgReader(this.pool);
  }

  close(): Promise<void> {
    return this.pool.end();
  }

  private async migrate(readonly: boolean): Promise<void> {
    const current = await this.schemaVersion();
    if (current > MIGRATIONS.length) {
      throw new StoreError(this.label, `was written by a newer mcp-gateway (schema ${current}, this one knows ${MIGRATIONS.length})`);
    }
    if (current === MIGRATIONS.length) return;
    if (readonly) {
      throw new StoreError(
        this.label,
        current === 0
          ? 'holds no mcp-gateway schema yet (it is created when a gateway or `keys create` first runs)'
          : 'needs an upgrade: run the gateway or any write command once',
      );
    }
    await this.transaction(async (client) => {
      // Replicas starting at once: one migrates, the others wait here and then find nothing to do.
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await client.query('CREATE TABLE IF NOT EXISTS mcp_gateway_schema (version INTEGER NOT NULL)');
      const row = await client.query<{ version: number }>('SELECT version FROM mcp_gateway_schema');
      let version = row.rows[0]?.version ?? 0;
      if (row.rows.length === 0) await client.query('INSERT INTO mcp_gateway_schema (version) VALUES (0)');
      for (; version < MIGRATIONS.length; version++) {
        await client.query(MIGRATIONS[version]!);
        await client.query('UPDATE mcp_gateway_schema SET version = $1', [version + 1]);
      }
    });
  }

  private async schemaVersion(): Promise<number> {
    const exists = await this.pool.query<{ t: string | null }>("SELECT to_regclass('mcp_gateway_schema')::text AS t");
    if (exists.rows[0]?.t === null || exists.rows[0] === undefined) return 0;
    const row = await this.pool.query<{ version: number }>('SELECT version FROM mcp_gateway_schema');
    return row.rows[0]?.version ?? 0;
  }
}

/** The advisory lock key for work that must not run twice at once across replicas. */
export const CHAIN_MODE_LOCK = MIGRATION_LOCK + 1;

/** A Reader over a pool: `all`/`get` as one query, `iterate` through a cursor in batches. */
export function pgReader(pool: pg.Pool): Reader {
  return {
    engine: 'postgres',
    all: async <T>(sql: string, params: Params = {}) => {
      const { text, values } = positional(sql, params);
      return (await pool.query(text, values)).rows as T[];
    },
    get: async <T>(sql: string, params: Params = {}) => {
      const { text, values } = positional(sql, params);
      return (await pool.query(text, values)).rows[0] as T | undefined;
    },
    async *iterate<T>(sql: string, params: Params = {}): AsyncIterable<T> {
      const { text, values } = positional(sql, params);
      const client = await pool.connect();
      let failed: Error | undefined;
      try {
        // A cursor inside a read-only transaction: a batch in memory at a time, one snapshot.
        await client.query('BEGIN READ ONLY');
        await client.query(`DECLARE gw_rows NO SCROLL CURSOR FOR ${text}`, values);
        for (;;) {
          const batch = await client.query('FETCH 1000 FROM gw_rows');
          for (const row of batch.rows) yield row as T;
          if (batch.rows.length < 1000) break;
        }
      } catch (err) {
        failed = err as Error;
        throw err;
      } finally {
        await client.query('ROLLBACK').catch(() => {});
        client.release(failed !== undefined && isConnectionError(failed) ? failed : undefined);
      }
    },
  };
}

/** Whether an error means the connection itself is gone (not a statement that failed). */
export function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  if (typeof code === 'string' && (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03')) return true;
  return (
    code === 'ECONNREFUSED' ||
    code === 'ECONNRESET' ||
    code === 'EPIPE' ||
    code === 'ETIMEDOUT' ||
    /Connection terminated|connection timeout|Client has encountered a connection error|not queryable/i.test(
      String((err as Error)?.message),
    )
  );
}
