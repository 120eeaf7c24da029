/**
 * The one SQLite file (design §1): keys, the audit chain, usage and the catalog cache. WAL mode, so
 * the CLI reads while gateways write and several gateway processes can share it; a busy timeout so
 * writers queue instead of failing. The schema is versioned with `PRAGMA user_version`.
 */
import Database from 'better-sqlite3';
import { closeSync, existsSync, openSync, statSync } from 'node:fs';
import path from 'node:path';

export type Db = Database.Database;

export class StoreError extends Error {
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`${file}: ${reason}`);
    this.name = 'StoreError';
  }
}

/** Schema shared by both engines: the tables HTTP sessions need on every replica. */
export const SHARED_SESSION_TABLES = `
  CREATE TABLE gateway_secrets (
    name    TEXT PRIMARY KEY,
    value   TEXT NOT NULL                   -- base64
  );
  CREATE TABLE ended_sessions (
    id_hash   TEXT PRIMARY KEY,             -- SHA-256 of the session id
    ended_at  TEXT NOT NULL
  );
`;

/** Schema shared by both engines: request-state nonces spent by any replica. */
export const SHARED_SPENT_TABLE = `
  CREATE TABLE spent_states (
    nonce       TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL             -- epoch ms: forgotten after
  );
`;

const MIGRATIONS: readonly string[] = [
  // 1: keys, audit chain, usage, catalog cache
  `
  CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    consumer_id     TEXT NOT NULL,
    roles           TEXT NOT NULL,          -- JSON array of role names
    hash            TEXT NOT NULL,          -- bcrypt hash of the whole key
    created_at      TEXT NOT NULL,
    expires_at      TEXT,
    revoked_at      TEXT,
    disabled        INTEGER NOT NULL DEFAULT 0,
    rate_per_minute REAL,
    rate_burst      REAL,
    rotated_from    TEXT
  );
  CREATE TABLE audit_log (
    seq          INTEGER PRIMARY KEY,
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
    latency_ms   INTEGER NOT NULL,
    decided_by   TEXT,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
  );
  -- No secondary indexes: every index is pages written on every call. Queries walk seq (the rowid).
  CREATE TABLE usage_hourly (
    hour            TEXT NOT NULL,          -- start of the hour, ISO 8601 UTC
    consumer_id     TEXT NOT NULL,
    server          TEXT NOT NULL,
    tool            TEXT NOT NULL,
    calls           INTEGER NOT NULL DEFAULT 0,
    errors          INTEGER NOT NULL DEFAULT 0,
    denied          INTEGER NOT NULL DEFAULT 0,
    rate_limited    INTEGER NOT NULL DEFAULT 0,
    latency_sum_ms  REAL NOT NULL DEFAULT 0,
    latency_max_ms  REAL NOT NULL DEFAULT 0,
    cost            REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, consumer_id, server, tool)
  ) WITHOUT ROWID;
  -- Preallocated space: released when the disk (or max_page_count) is full, so the records of
  -- requests already forwarded can still be written while new ones are refused.
  CREATE TABLE audit_ballast (
    id   INTEGER PRIMARY KEY,
    pad  BLOB NOT NULL
  );
  CREATE TABLE audit_meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
  );
  CREATE TABLE server_catalog (
    server       TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,             -- what the catalog was read from (command, args, cwd, env names)
    catalog      TEXT NOT NULL,             -- JSON
    updated_at   TEXT NOT NULL
  );
  `,
  // 2: the JSON-RPC method of each audited request, and its _meta (redacted)
  `
  ALTER TABLE audit_log ADD COLUMN method TEXT;
  ALTER TABLE audit_log ADD COLUMN meta TEXT;
  `,
  // 3: each server's protocol era, as probed once for \`protocol: auto\` (so later starts do not probe)
  `
  CREATE TABLE server_protocol (
    server       TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,             -- how the server is started (as server_catalog)
    verdict      TEXT NOT NULL,             -- JSON: {"kind":"legacy"} or {"kind":"modern","discover":{…}}
    updated_at   TEXT NOT NULL
  );
  `,
  // 4: secrets the gateway processes on this store share (the key that seals HTTP session ids), and
  // the sessions ended by their agents (so no process serves them again)
  SHARED_SESSION_TABLES,
  // 5: the nonces of input-required request states spent by any process on this store
  SHARED_SPENT_TABLE,
];

export interface OpenOptions {
  /** Open for reading only (audit verify/export, usage): never creates or migrates. */
  readonly readonly?: boolean;
  /** Largest size of the database file (SQLite max_page_count on this connection). */
  readonly maxBytes?: number | undefined;
}

/** Opens (creating and migrating if needed) the database; errors name the file and what to do. */
export function openDatabase(file: string, options: OpenOptions = {}): Db {
  if (file !== ':memory:') {
    if (options.readonly && !existsSync(file)) {
      throw new StoreError(file, 'no such database (it is created when the gateway or `keys create` first runs)');
    }
    if (existsSync(file) && statSync(file).isDirectory()) throw new StoreError(file, 'is a directory, not a database file');
    const dir = path.dirname(file);
    if (!existsSync(dir)) throw new StoreError(file, `folder ${dir} does not exist`);
  }
  let db: Db;
  try {
    // Keys, audited arguments and usage: readable and writable by the gateway's user only, from
    // the first byte (created here with 0600, not by SQLite with 0644 and changed afterwards: a
    // descriptor opened in between would keep reading). SQLite gives the -wal and -shm files the
    // database file's mode. An empty file is a valid new database.
    if (file !== ':memory:' && !options.readonly) createPrivate(file);
    db = new Database(file, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false, timeout: 10_000 });
  } catch (err) {
    throw new StoreError(file, `cannot be opened (${(err as Error).message})`);
  }
  // Processes starting together on a new file (a gateway and `keys create`, two CLI commands)
  // race to turn on WAL and migrate; SQLite answers some of those races SQLITE_BUSY at once,
  // without waiting out the busy timeout, so the whole sequence is tried again for a while.
  const deadline = Date.now() + 10_000;
  for (let attempt = 0; ; attempt++) {
    try {
      prepareDatabase(db, file, options);
      return db;
    } catch (err) {
      if (isBusy(err) && Date.now() < deadline) {
        sleepSync(Math.min(5 * 2 ** attempt, 100) * (0.5 + Math.random()));
        continue;
      }
      db.close();
      if (err instanceof StoreError) throw err;
      const message = (err as Error).message;
      if (/not a database|file is encrypted|malformed/i.test(message)) {
        throw new StoreError(file, `is not an mcp-gateway database (SQLite: ${message})`);
      }
      if (/readonly|read-only|permission/i.test(message)) {
        throw new StoreError(file, `cannot be written (SQLite: ${message}); check the file's permissions`);
      }
      throw new StoreError(file, `cannot be used (SQLite: ${message})`);
    }
  }
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' || /database is locked/i.test((err as Error).message ?? '');
}

/** Blocks the thread for `ms` (only while opening the database, before anything else runs). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** WAL, pragmas and migrations on a just-opened database. */
function prepareDatabase(db: Db, file: string, options: OpenOptions): void {
  if (!options.readonly) {
    db.pragma('journal_mode = WAL');
    // NORMAL in WAL: a commit survives a crash of the process (not of the OS); see docs/audit.md.
    db.pragma('synchronous = NORMAL');
  }
  db.pragma('foreign_keys = ON');
  if (options.maxBytes !== undefined) {
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    db.pragma(`max_page_count = ${Math.max(1, Math.floor(options.maxBytes / pageSize))}`);
  }
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length) {
    throw new StoreError(file, `was written by a newer mcp-gateway (schema ${version}, this one knows ${MIGRATIONS.length})`);
  }
  if (version < MIGRATIONS.length) {
    if (options.readonly) throw new StoreError(file, 'needs an upgrade: run the gateway or any write command once');
    migrate(db, version);
  }
}

function migrate(db: Db, from: number): void {
  // IMMEDIATE: two processes starting on a new file must not both migrate.
  db.transaction(() => {
    const current = db.pragma('user_version', { simple: true }) as number;
    for (let v = Math.max(from, current); v < MIGRATIONS.length; v++) {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    }
  }).immediate();
}

/** Creates `file` with mode 0600 unless it exists (O_EXCL: never through a planted symlink). */
export function createPrivate(file: string): void {
  try {
    closeSync(openSync(file, 'wx', 0o600));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}
