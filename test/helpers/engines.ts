/**
 * The store suites on both engines: SQLite (a file in a temporary folder, new for each test) and
 * PostgreSQL (a fresh database for the suite, emptied before each test, dropped afterwards). Each
 * test sees an open `Store` and a few engine-neutral ways to fill it and tamper with it, as someone
 * holding the file or the database would. Where PostgreSQL does not answer its cases are skipped,
 * and `pgAnswers` says so, naming the server.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe } from 'vitest';
import { GENESIS_HASH } from '../../src/audit/chain.js';
import { AuditStore, type AuditDraft, type ChainOptions } from '../../src/audit/store.js';
import { createLogger } from '../../src/log.js';
import { UsageStore, type UsageDelta } from '../../src/metering/store.js';
import { openDatabase, type Db } from '../../src/store/db.js';
import { openStore, type Store } from '../../src/store/store.js';
import { freshDatabase, pgAnswers, pgQuery, type FreshDatabase } from './pg.js';

export type EngineName = 'sqlite' | 'postgres';

export interface EngineCase {
  readonly engine: EngineName;
  /** PostgreSQL did not answer: its cases are skipped. */
  readonly skip: boolean;
}

/** The engines a suite runs on: SQLite always, PostgreSQL when it answers. Await it once per file. */
export async function engineCases(suite: string): Promise<EngineCase[]> {
  return [
    { engine: 'sqlite', skip: false },
    { engine: 'postgres', skip: !(await pgAnswers(suite)) },
  ];
}

/** A silent logger for recorders. */
export const silentLog = createLogger({ level: 'silent' });

/** The chain most tests write: plain SHA-256. */
export const PLAIN: ChainOptions = { hashChain: true, hmacKey: null };

export interface TestEngine {
  readonly engine: EngineName;
  /** The store under test (opened through `openStore`, as the gateway and the CLI open it). */
  readonly store: Store;
  /** What `openStore` was given: the SQLite file, or the database URL. */
  readonly database: string;
  /**
   * The better-sqlite3 connection beside the store's own (SQLite only): for what only SQLite has
   * (pragmas, BLOBs, the ballast). Throws on PostgreSQL.
   */
  readonly db: Db;
  /**
   * Runs SQL on the store from outside the gateway (to tamper with it or to look at it), with
   * `$1…$n` parameters on both engines; the rows of a SELECT (PostgreSQL bigints as strings: read
   * rows through `store.reader` when their numbers matter).
   */
  sql<T extends Record<string, unknown> = Record<string, unknown>>(text: string, values?: unknown[]): Promise<T[]>;
  /** Appends rows to the chain in one commit, with `chain` (default: plain SHA-256), as a gateway does. */
  append(drafts: readonly AuditDraft[], chain?: ChainOptions): Promise<void>;
  /** Records the chain mode (`checkChainMode`) and appends. */
  fill(drafts: readonly AuditDraft[], chain?: ChainOptions): Promise<void>;
  /**
   * Deletes the rows after `seq` and, on PostgreSQL, moves the chain head back to the row at `seq`
   * (what someone appending a forged tail must do there).
   */
  cutChain(seq: number): Promise<void>;
  /** Adds usage counters (committed before it resolves). */
  addUsage(deltas: readonly UsageDelta[]): Promise<void>;
  /** Closes the store and opens it again (the data stays). */
  reopen(): Promise<void>;
}

/** `$1…$n` as SQLite's named `@p1…@pn`, and the values as an object. */
function sqliteParams(text: string, values: readonly unknown[]): { text: string; params: Record<string, unknown> } {
  const params: Record<string, unknown> = {};
  values.forEach((v, i) => (params[`p${i + 1}`] = v));
  return { text: text.replace(/\$(\d+)/g, '@p$1'), params };
}

/**
 * `describe` once per engine, titled `title [engine]`; `body` registers its tests and reads the
 * engine's store through the `TestEngine` handed to it (valid inside tests and hooks).
 */
export function describeEngines(cases: readonly EngineCase[], title: string, body: (t: TestEngine) => void): void {
  for (const c of cases) {
    describe.skipIf(c.skip)(`${title} [${c.engine}]`, () => body(c.engine === 'sqlite' ? sqliteEngine() : postgresEngine(title)));
  }
}

function sqliteEngine(): TestEngine {
  let dir = '';
  let file = '';
  let store: Store | undefined;
  let db: Db | undefined;

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mcpgw-engine-'));
    file = path.join(dir, 'gateway.db');
    store = await openStore(file);
    db = openDatabase(file);
  });
  afterEach(async () => {
    db?.close();
    await store?.close();
    db = undefined;
    store = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  const t: TestEngine = {
    engine: 'sqlite',
    get store() {
      if (!store) throw new Error('the store is open only inside a test');
      return store;
    },
    get database() {
      return file;
    },
    get db() {
      if (!db) throw new Error('the database is open only inside a test');
      return db;
    },
    async sql<T>(text: string, values: unknown[] = []) {
      const q = sqliteParams(text, values);
      const stmt = t.db.prepare(q.text);
      if (stmt.reader) return stmt.all(q.params) as T[];
      stmt.run(q.params);
      return [];
    },
    async append(drafts, chain = PLAIN) {
      const audits = new AuditStore(t.db, chain);
      t.db.transaction(() => audits.appendInTransaction(drafts)).immediate();
    },
    async fill(drafts, chain = PLAIN) {
      await t.store.checkChainMode(chain);
      await t.append(drafts, chain);
    },
    async cutChain(seq) {
      await t.sql('DELETE FROM audit_log WHERE seq > $1', [seq]);
    },
    async addUsage(deltas) {
      const usage = new UsageStore(t.db);
      t.db.transaction(() => usage.addInTransaction(deltas)).immediate();
    },
    async reopen() {
      await store?.close();
      store = undefined;
      store = await openStore(file);
    },
  };
  return t;
}

/** Every table a test may fill, emptied between tests (the schema table stays). */
const TABLES = ['api_keys', 'audit_log', 'audit_meta', 'usage_hourly', 'server_catalog', 'server_protocol'];

function postgresEngine(title: string): TestEngine {
  let fresh: FreshDatabase | undefined;
  let store: Store | undefined;

  beforeAll(async () => {
    fresh = await freshDatabase(title);
    store = await openStore(fresh.url);
  });
  afterAll(async () => {
    await store?.close();
    await fresh?.drop();
  });
  beforeEach(async () => {
    await pgQuery(t.database, `TRUNCATE ${TABLES.join(', ')}; UPDATE audit_head SET seq = 0, hash = '${GENESIS_HASH}' WHERE id = 1`);
  });

  const t: TestEngine = {
    engine: 'postgres',
    get store() {
      if (!store) throw new Error('the store is open only inside a test');
      return store;
    },
    get database() {
      if (!fresh) throw new Error('the database exists only inside a test');
      return fresh.url;
    },
    get db(): Db {
      throw new Error('no SQLite connection on PostgreSQL');
    },
    sql: <T extends Record<string, unknown>>(text: string, values: unknown[] = []) => pgQuery<T>(t.database, text, values),
    async append(drafts, chain = PLAIN) {
      const recorder = t.store.recorder(chain, false, silentLog);
      await Promise.all(drafts.map((d) => recorder.audit(d)));
      await recorder.close();
    },
    async fill(drafts, chain = PLAIN) {
      await t.store.checkChainMode(chain);
      await t.append(drafts, chain);
    },
    async cutChain(seq) {
      await t.sql('DELETE FROM audit_log WHERE seq > $1', [seq]);
      await t.sql(
        `UPDATE audit_head SET seq = $1, hash = COALESCE((SELECT hash FROM audit_log WHERE seq = $1), '${GENESIS_HASH}') WHERE id = 1`,
        [seq],
      );
    },
    async addUsage(deltas) {
      const recorder = t.store.recorder(null, true, silentLog);
      for (const d of deltas) recorder.addUsage(d);
      await recorder.close();
    },
    async reopen() {
      await store?.close();
      store = undefined;
      store = await openStore(t.database);
    },
  };
  return t;
}
