/**
 * The gateway's store on either engine (design §1, issue 14): `database:` is a file path (SQLite,
 * the default, one machine) or a `postgres://` URL (PostgreSQL, shared by replicas). Everything
 * above this file (the gateway, every CLI command) works through `Store` and never asks which.
 */
import { randomBytes } from 'node:crypto';
import { AuditStore, checkChainModePg, type ChainOptions } from '../audit/store.js';
import {
  chainHeadOf,
  verifyChainAsync,
  verifyChain,
  verifyChainStreamed,
  type ChainHead,
  type VerifyOptions,
  type VerifyResult,
} from '../audit/verify.js';
import type { Logger } from '../log.js';
import { UsageStore } from '../metering/store.js';
import { CatalogStore, PgCatalogStore, type CatalogCache } from './catalog.js';
import { openDatabase, type Db } from './db.js';
import { PgKeyStore, SqliteKeyStore, type KeyStore } from './keys.js';
import { isPostgresUrl, PgDatabase } from './pg.js';
import { PgRecorder } from './pg-recorder.js';
import { SqliteRecorder, type Recorder } from './recorder.js';
import { sqliteReader, type Reader } from './sql.js';

export interface Store {
  readonly engine: 'sqlite' | 'postgres';
  /** The file, or the URL without its password: for messages. */
  readonly label: string;
  readonly keys: KeyStore;
  readonly reader: Reader;
  /** The remembered catalogs and protocol verdicts (loaded at open on PostgreSQL). */
  catalog(log?: Logger): Promise<CatalogCache>;
  /** Checks (and in a new store records) how the chain is hashed: AuditChainError on a mismatch. */
  checkChainMode(chain: ChainOptions): Promise<void>;
  /** This process's recorder; `chain` null when audit is off. Throws when it cannot reserve space. */
  recorder(chain: ChainOptions | null, meterUsage: boolean, log: Logger): Recorder;
  /** Verifies the whole chain; `live`: inside a running gateway (yields between slices). */
  verify(options: VerifyOptions, live?: boolean): Promise<VerifyResult>;
  /** The chain's last row (`audit head`). */
  head(): Promise<ChainHead>;
  /** A secret every process on this store shares (32 random bytes, made on first use). */
  sharedSecret(name: string): Promise<Buffer>;
  /** Whether the session with this id hash was ended by its agent (on any replica). */
  sessionEnded(idHash: string): Promise<boolean>;
  /** Records that an agent ended a session; forgets endings from before `forgetBefore`. */
  endSession(idHash: string, at: string, forgetBefore: string): Promise<void>;
  /** Spends a nonce for every process on this store: false when it was spent already. */
  spendOnce(nonce: string, expiresAt: number): Promise<boolean>;
  close(): Promise<void>;
}

export interface OpenStoreOptions {
  /** Reading only (audit, usage): never creates or migrates. */
  readonly readonly?: boolean;
  /** Largest size of a SQLite file (limits.maxDatabaseBytes). */
  readonly maxBytes?: number | undefined;
  /** Connections at most (PostgreSQL). */
  readonly connections?: number;
}

export async function openStore(database: string, options: OpenStoreOptions = {}): Promise<Store> {
  if (isPostgresUrl(database)) {
    const db = await PgDatabase.open(database, { readonly: options.readonly, max: options.connections });
    return postgresStore(db);
  }
  return sqliteStore(openDatabase(database, { readonly: options.readonly, maxBytes: options.maxBytes }));
}

function sqliteStore(db: Db): Store {
  const reader = sqliteReader(db);
  return {
    engine: 'sqlite',
    label: db.name,
    keys: new SqliteKeyStore(db),
    reader,
    catalog: async () => new CatalogStore(db),
    checkChainMode: async (chain) => new AuditStore(db, chain).checkMode(),
    recorder: (chain, meterUsage, log) => {
      const recorder = new SqliteRecorder(db, chain ? new AuditStore(db, chain) : null, meterUsage ? new UsageStore(db) : null, log);
      recorder.prepare();
      return recorder;
    },
    verify: (options, live) => (live ? verifyChainAsync(db, options) : Promise.resolve(verifyChain(db, options))),
    head: () => chainHeadOf(reader),
    sharedSecret: async (name) => {
      db.prepare('INSERT OR IGNORE INTO gateway_secrets (name, value) VALUES (?, ?)').run(name, randomBytes(32).toString('base64'));
      const row = db.prepare<[string], { value: string }>('SELECT value FROM gateway_secrets WHERE name = ?').get(name)!;
      return Buffer.from(row.value, 'base64');
    },
    sessionEnded: async (idHash) => db.prepare('SELECT 1 FROM ended_sessions WHERE id_hash = ?').get(idHash) !== undefined,
    endSession: async (idHash, at, forgetBefore) => {
      db.transaction(() => {
        db.prepare('INSERT OR IGNORE INTO ended_sessions (id_hash, ended_at) VALUES (?, ?)').run(idHash, at);
        db.prepare('DELETE FROM ended_sessions WHERE ended_at < ?').run(forgetBefore);
      })();
    },
    spendOnce: async (nonce, expiresAt) =>
      db.transaction(() => {
        db.prepare('DELETE FROM spent_states WHERE expires_at < ?').run(Date.now());
        return db.prepare('INSERT OR IGNORE INTO spent_states (nonce, expires_at) VALUES (?, ?)').run(nonce, expiresAt).changes === 1;
      })(),
    close: async () => {
      db.close();
    },
  };
}

function postgresStore(db: PgDatabase): Store {
  const reader = db.reader();
  return {
    engine: 'postgres',
    label: db.label,
    keys: new PgKeyStore(db),
    reader,
    catalog: (log) => PgCatalogStore.load(db, log),
    checkChainMode: (chain) => checkChainModePg(db, chain),
    recorder: (chain, meterUsage, log) => {
      db.onIdleError = (err) => log.warn(`a database connection failed while idle (${err.message}); it is replaced on next use`);
      return new PgRecorder(db, { chain, meterUsage }, log);
    },
    verify: (options) => verifyChainStreamed(reader, options),
    head: () => chainHeadOf(reader),
    sharedSecret: async (name) => {
      await db.query('INSERT INTO gateway_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [
        name,
        randomBytes(32).toString('base64'),
      ]);
      const row = (await db.query<{ value: string }>('SELECT value FROM gateway_secrets WHERE name = $1', [name])).rows[0]!;
      return Buffer.from(row.value, 'base64');
    },
    sessionEnded: async (idHash) => (await db.query('SELECT 1 FROM ended_sessions WHERE id_hash = $1', [idHash])).rows.length > 0,
    endSession: async (idHash, at, forgetBefore) => {
      await db.query('INSERT INTO ended_sessions (id_hash, ended_at) VALUES ($1, $2) ON CONFLICT (id_hash) DO NOTHING', [idHash, at]);
      await db.query('DELETE FROM ended_sessions WHERE ended_at < $1', [forgetBefore]);
    },
    spendOnce: async (nonce, expiresAt) => {
      await db.query('DELETE FROM spent_states WHERE expires_at < $1', [Date.now()]);
      return (
        (await db.query('INSERT INTO spent_states (nonce, expires_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING', [nonce, expiresAt]))
          .rowCount === 1
      );
    },
    close: () => db.close(),
  };
}
