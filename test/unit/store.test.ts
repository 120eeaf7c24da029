/**
 * The store. The SQLite file: created owner-only, refused clearly when it is not one, migrated
 * once; the recorder's reserve laid down once and left alone while whole. On both engines
 * (`openStore`): reopening keeps the data, the chain mode is kept, the store's recorder commits
 * audit rows and usage. On PostgreSQL: replicas opening a new database at once migrate it once, a
 * read-only open of an empty database says there is no schema, and two replicas appending at once
 * form one gapless chain.
 */
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { GENESIS_HASH } from '../../src/audit/chain.js';
import { AuditChainError, AuditStore, type AuditDraft } from '../../src/audit/store.js';
import { openDatabase, StoreError } from '../../src/store/db.js';
import { SqliteRecorder } from '../../src/store/recorder.js';
import { openStore, type Store } from '../../src/store/store.js';
import { RequestStates } from '../../src/pipeline/request-state.js';
import { describeEngines, engineCases, PLAIN, silentLog } from '../helpers/engines.js';
import { freshDatabase, pgQuery, type FreshDatabase } from '../helpers/pg.js';

const engines = await engineCases('store');
const pgUp = !engines.find((e) => e.engine === 'postgres')!.skip;

const dir = () => mkdtempSync(path.join(tmpdir(), 'mcpgw-store-'));

describe('openDatabase', () => {
  test('a new database is readable and writable by its owner only (keys, audited arguments)', () => {
    const file = path.join(dir(), 'gw.db');
    const db = openDatabase(file);
    db.prepare('SELECT 1').get();
    expect(statSync(file).mode & 0o777).toBe(0o600);
    db.close();
  });

  test('a file that is not SQLite is refused with a StoreError naming it', () => {
    const file = path.join(dir(), 'gw.db');
    writeFileSync(file, 'this is not a database, just text that is long enough to have a header '.repeat(20));
    expect(() => openDatabase(file)).toThrow(StoreError);
    expect(() => openDatabase(file)).toThrow(file);
  });

  test('read-only opening of a missing file does not create it', () => {
    const file = path.join(dir(), 'missing.db');
    expect(() => openDatabase(file, { readonly: true })).toThrow(StoreError);
    expect(() => statSync(file)).toThrow();
  });

  test('the schema is created once and reopening keeps the data', () => {
    const file = path.join(dir(), 'gw.db');
    const a = openDatabase(file);
    a.prepare("INSERT INTO audit_meta (key, value) VALUES ('x', 'y')").run();
    a.close();
    const b = openDatabase(file);
    expect(b.prepare("SELECT value FROM audit_meta WHERE key = 'x'").get()).toEqual({ value: 'y' });
    expect(b.pragma('journal_mode', { simple: true })).toBe('wal');
    b.close();
  });

  test('maxBytes caps the file: writes beyond it fail with SQLITE_FULL', () => {
    const db = openDatabase(path.join(dir(), 'gw.db'), { maxBytes: 1_048_576 });
    const insert = db.prepare('INSERT INTO audit_ballast (pad) VALUES (zeroblob(65536))');
    expect(() => {
      for (let i = 0; i < 100; i++) insert.run();
    }).toThrow(/full/i);
    db.close();
  });
});

describe('Recorder reserve at startup', () => {
  const silent = { debug() {}, info() {}, warn() {}, error() {}, scoped: () => silent } as never;
  const open = (file: string) => {
    const db = openDatabase(file);
    const recorder = new SqliteRecorder(db, new AuditStore(db, { hashChain: true, hmacKey: null }), null, silent);
    recorder.prepare();
    return { db, recorder };
  };
  const ballastIds = (db: ReturnType<typeof openDatabase>) =>
    (db.prepare('SELECT id FROM audit_ballast ORDER BY id').all() as { id: number }[]).map((r) => r.id);

  test('the first start lays down the reserve file and 16 ballast rows; a restart finds them whole and writes neither', () => {
    const file = path.join(dir(), 'gw.db');
    const first = open(file);
    const reserve = `${file}-reserve`;
    expect(statSync(reserve).size).toBe(4 * 1024 * 1024);
    const ids = ballastIds(first.db);
    expect(ids).toHaveLength(16);
    first.recorder.close();
    first.db.close();

    const before = statSync(reserve).mtimeMs;
    const second = open(file);
    expect(statSync(reserve).mtimeMs).toBe(before);
    expect(ballastIds(second.db)).toEqual(ids);
    // Not a row written by this start (the ballast is not re-laid, the chain mode is already recorded).
    expect(second.db.prepare('SELECT total_changes() AS n').get()).toEqual({ n: 0 });
    second.recorder.close();
    second.db.close();
  });

  test('a reserve file that is short, or a ballast missing rows, is restored at start', () => {
    const file = path.join(dir(), 'gw.db');
    const first = open(file);
    first.db.prepare('DELETE FROM audit_ballast WHERE id IN (SELECT id FROM audit_ballast LIMIT 5)').run();
    first.recorder.close();
    first.db.close();
    writeFileSync(`${file}-reserve`, 'short');

    const second = open(file);
    expect(statSync(`${file}-reserve`).size).toBe(4 * 1024 * 1024);
    expect(ballastIds(second.db)).toHaveLength(16);
    second.recorder.close();
    second.db.close();
  });
});

const BASE = Date.parse('2026-03-01T10:00:00.000Z');

function draft(i: number, consumer = 'alice'): AuditDraft {
  return {
    ts: new Date(BASE + i * 1000).toISOString(),
    consumer_id: consumer,
    key_id: 'k1',
    auth_method: 'api-key',
    roles: '["reader"]',
    server: 'github',
    kind: 'tool',
    name: 'search',
    arguments: JSON.stringify({ i }),
    result: null,
    status: 'ok',
    error: null,
    latency_ms: i,
    decided_by: 'p#0',
  };
}

describeEngines(engines, 'openStore', (t) => {
  /** The schema version the store is at (PRAGMA user_version, or mcp_gateway_schema). */
  const schemaVersion = async () =>
    t.engine === 'sqlite'
      ? (t.db.pragma('user_version', { simple: true }) as number)
      : (await t.store.reader.get<{ version: number }>('SELECT version FROM mcp_gateway_schema'))!.version;

  test('names its engine and the database (a URL without its password)', () => {
    expect(t.store.engine).toBe(t.engine);
    if (t.engine === 'sqlite') expect(t.store.label).toBe(t.database);
    else expect(t.store.label).toBe(new URL(t.database).toString());
  });

  test('reopening keeps the data and does not migrate again', async () => {
    const before = await schemaVersion();
    await t.sql("INSERT INTO audit_meta (key, value) VALUES ('x', 'y')");
    await t.reopen();
    expect(await t.store.reader.get("SELECT value FROM audit_meta WHERE key = 'x'")).toEqual({ value: 'y' });
    expect(await schemaVersion()).toBe(before);
    if (t.engine === 'postgres') expect(await t.store.reader.all('SELECT version FROM mcp_gateway_schema')).toHaveLength(1);
  });

  test('a read-only store reads what was written', async () => {
    await t.fill([draft(1), draft(2)]);
    const readonly = await openStore(t.database, { readonly: true });
    try {
      expect(await readonly.head()).toEqual(await t.store.head());
      expect(await readonly.verify({ hmacKey: null })).toMatchObject({ ok: true, rows: 2 });
    } finally {
      await readonly.close();
    }
  });

  test('a database written by a newer mcp-gateway is refused, naming its schema', async () => {
    const set = (v: number) =>
      t.engine === 'sqlite' ? t.sql(`PRAGMA user_version = ${v}`) : t.sql('UPDATE mcp_gateway_schema SET version = $1', [v]);
    const current = await schemaVersion();
    expect(current).toBeGreaterThanOrEqual(1);
    await set(99);
    try {
      const opened = openStore(t.database);
      await expect(opened).rejects.toThrow(StoreError);
      await expect(opened).rejects.toThrow(/newer mcp-gateway \(schema 99/);
      await expect(openStore(t.database, { readonly: true })).rejects.toThrow(/newer mcp-gateway \(schema 99/);
    } finally {
      await set(current);
    }
  });

  test('the chain mode is recorded once; another mode is refused once rows exist, accepted while the log is empty', async () => {
    const hmac = { hashChain: true, hmacKey: Buffer.from('a-long-enough-audit-key-0123456789') };
    await t.store.checkChainMode(PLAIN);
    await t.store.checkChainMode(PLAIN);
    await t.store.checkChainMode(hmac); // empty log: the mode may change
    expect(await t.store.reader.get("SELECT value FROM audit_meta WHERE key = 'chain'")).toEqual({
      value: expect.stringMatching(/^hmac-sha256:/),
    });
    await t.append([draft(1)], hmac);
    await expect(t.store.checkChainMode(PLAIN)).rejects.toThrow(AuditChainError);
    await expect(t.store.checkChainMode({ hashChain: false, hmacKey: null })).rejects.toThrow(/without a hash chain/);
    await t.store.checkChainMode(hmac);
  });

  test("the store's recorder commits audit rows before they resolve, and usage on flush", async () => {
    await t.store.checkChainMode(PLAIN);
    const recorder = t.store.recorder(PLAIN, true, silentLog);
    expect(recorder.canAccept()).toBe(true);
    expect(recorder.refusal).toBeNull();
    await Promise.all([1, 2, 3].map((i) => recorder.audit(draft(i))));
    expect((await t.store.head()).seq).toBe(3);
    recorder.addUsage({
      hour: '2026-03-01T10:00:00Z',
      consumer_id: 'alice',
      server: 'github',
      tool: 'search',
      calls: 2,
      errors: 1,
      denied: 0,
      rate_limited: 0,
      latency_ms: 7,
      cost: 0.5,
    });
    recorder.addUsage({
      hour: '2026-03-01T10:00:00Z',
      consumer_id: 'alice',
      server: 'github',
      tool: 'search',
      calls: 1,
      errors: 0,
      denied: 1,
      rate_limited: 0,
      latency_ms: 3,
      cost: 0.25,
    });
    await recorder.flush(true);
    expect(await t.store.reader.all('SELECT calls, errors, denied, latency_sum_ms, latency_max_ms, cost FROM usage_hourly')).toEqual([
      { calls: 3, errors: 1, denied: 1, latency_sum_ms: 10, latency_max_ms: 7, cost: 0.75 },
    ]);
    await recorder.close();
    expect(await t.store.verify({ hmacKey: null })).toMatchObject({ ok: true, rows: 3, head: await t.store.head() });
  });

  test('a recorder without audit or usage writes neither', async () => {
    const recorder = t.store.recorder(null, false, silentLog);
    recorder.addUsage({
      hour: '2026-03-01T10:00:00Z',
      consumer_id: 'a',
      server: 's',
      tool: 't',
      calls: 1,
      errors: 0,
      denied: 0,
      rate_limited: 0,
      latency_ms: 1,
      cost: 0,
    });
    await recorder.close();
    expect(await t.store.reader.all('SELECT * FROM usage_hourly')).toEqual([]);
    expect(await t.store.head()).toEqual({ seq: 0, hash: GENESIS_HASH });
  });

  test('the catalog cache keeps what it is given, keyed by fingerprint, across opens', async () => {
    const catalog = await t.store.catalog(silentLog);
    catalog.save('github', 'fp1', { tools: [{ name: 'search' }] });
    catalog.saveVerdict('github', 'fp1', { kind: 'legacy' });
    expect(catalog.load('github', 'fp1')).toEqual({ tools: [{ name: 'search' }] });
    // PostgreSQL writes in the background: wait for the rows.
    for (let i = 0; i < 100; i++) {
      const rows = await t.store.reader.all('SELECT server FROM server_catalog UNION ALL SELECT server FROM server_protocol');
      if (rows.length === 2) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await t.reopen();
    const again = await t.store.catalog(silentLog);
    expect(again.load('github', 'fp1')).toEqual({ tools: [{ name: 'search' }] });
    expect(again.loadVerdict('github', 'fp1')).toEqual({ kind: 'legacy' });
    expect(again.load('github', 'fp2')).toBeUndefined();
    expect(again.load('stripe', 'fp1')).toBeUndefined();
  });
});

describe.skipIf(!pgUp)('PostgreSQL store', () => {
  const databases: FreshDatabase[] = [];
  const fresh = async () => {
    const db = await freshDatabase('store');
    databases.push(db);
    return db;
  };
  afterAll(async () => {
    for (const db of databases) await db.drop();
  });

  test('several replicas opening a new database at once migrate it once, without an error', async () => {
    const { url } = await fresh();
    const stores = await Promise.all(Array.from({ length: 6 }, () => openStore(url, { connections: 2 })));
    try {
      expect(stores.every((s) => s.engine === 'postgres')).toBe(true);
      // One row, at the version every one of them knows (none migrated over another).
      const versions = await pgQuery<{ version: number }>(url, 'SELECT version FROM mcp_gateway_schema');
      expect(versions).toHaveLength(1);
      expect(versions[0]!.version).toBeGreaterThanOrEqual(1);
      const again = await openStore(url, { readonly: true });
      await again.close();
      expect(await stores[0]!.reader.all('SELECT id, seq, hash FROM audit_head')).toEqual([{ id: 1, seq: 0, hash: GENESIS_HASH }]);
      // And each of them records the chain mode at once: one row.
      await Promise.all(stores.map((s) => s.checkChainMode(PLAIN)));
      expect(await stores[0]!.reader.all('SELECT key, value FROM audit_meta')).toEqual([{ key: 'chain', value: 'sha256' }]);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  test('a read-only open of an empty database fails with a StoreError saying there is no schema, and creates nothing', async () => {
    const { url, name } = await fresh();
    const opened = openStore(url, { readonly: true });
    await expect(opened).rejects.toThrow(StoreError);
    await expect(opened).rejects.toThrow(/holds no mcp-gateway schema/);
    await expect(opened).rejects.toThrow(name);
    expect(await pgQuery(url, "SELECT to_regclass('mcp_gateway_schema')::text AS t")).toEqual([{ t: null }]);
    // Once a writable open has created it, a read-only one works.
    await (await openStore(url)).close();
    await (await openStore(url, { readonly: true })).close();
  });

  test('a URL with a password is shown without it', async () => {
    const { url } = await fresh();
    const withPassword = new URL(url);
    withPassword.password = 's3cret-pw';
    // trust authentication: the password is not needed, and must not show.
    const store = await openStore(withPassword.toString());
    try {
      expect(store.label).not.toContain('s3cret-pw');
      expect(store.label).toContain('***');
    } finally {
      await store.close();
    }
  });

  // Known bug (src/store/pg-recorder.ts, usageInsert): a usage row's consumer, server and tool go
  // to PostgreSQL as they are, and PostgreSQL text cannot hold U+0000 (the audit rows are made
  // storable, the usage rows are not). The tool name is the one the agent sent, so one request
  // naming "x\u0000y" makes every later commit that carries the usage counters fail, rejecting the
  // audit rows committed with it; the counters are kept and retried, so it never ends. Marked
  // failing so that it is seen, and so that this test says so once it is fixed.
  test('a NUL in a usage name (a tool name as the agent sent it) does not fail the audit rows committed with it', async () => {
    const { url } = await fresh();
    const store = await openStore(url);
    try {
      await store.checkChainMode(PLAIN);
      const recorder = store.recorder(PLAIN, true, silentLog);
      recorder.addUsage({
        hour: '2026-03-01T10:00:00Z',
        consumer_id: 'ana',
        server: 'github',
        tool: 'x\u0000y',
        calls: 1,
        errors: 0,
        denied: 0,
        rate_limited: 0,
        latency_ms: 1,
        cost: 0,
      });
      const audited = recorder.audit(draft(1));
      await recorder.flush(true);
      await expect(audited).resolves.toBeUndefined();
      await recorder.close();
      expect(await store.reader.all('SELECT calls FROM usage_hourly')).toEqual([{ calls: 1 }]);
    } finally {
      await store.close();
    }
  });

  test('two replicas appending 500 audits each, at once, form one gapless chain that verifies', async () => {
    const { url } = await fresh();
    const replicas: Store[] = [await openStore(url), await openStore(url)];
    try {
      await Promise.all(replicas.map((r) => r.checkChainMode(PLAIN)));
      const recorders = replicas.map((r) => r.recorder(PLAIN, true, silentLog));
      const usage = (consumer: string) => ({
        hour: '2026-03-01T10:00:00Z',
        consumer_id: 'shared',
        server: 'github',
        tool: 'search',
        calls: 1,
        errors: consumer === 'b' ? 1 : 0,
        denied: 0,
        rate_limited: 0,
        latency_ms: 2,
        cost: 0.001,
      });
      // Each replica: 50 rounds of 10 requests ending together (one group commit each round).
      await Promise.all(
        recorders.map(async (recorder, r) => {
          const consumer = r === 0 ? 'a' : 'b';
          for (let round = 0; round < 50; round++) {
            await Promise.all(
              Array.from({ length: 10 }, (_, k) => {
                recorder.addUsage(usage(consumer));
                return recorder.audit(draft(round * 10 + k + 1, consumer));
              }),
            );
          }
        }),
      );
      await Promise.all(recorders.map((r) => r.close()));

      const rows = await replicas[0]!.reader.all<{ seq: number; consumer_id: string; hash: string }>(
        'SELECT seq, consumer_id, hash FROM audit_log ORDER BY seq',
      );
      expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 1000 }, (_, k) => k + 1));
      expect(rows.filter((r) => r.consumer_id === 'a')).toHaveLength(500);
      // Each replica's rows keep their order, and the two were interleaved.
      for (const c of ['a', 'b']) {
        const latencies = (
          await replicas[1]!.reader.all<{ latency_ms: number }>('SELECT latency_ms FROM audit_log WHERE consumer_id = @c ORDER BY seq', {
            c,
          })
        ).map((r) => r.latency_ms);
        expect(latencies).toEqual(Array.from({ length: 500 }, (_, k) => k + 1));
      }
      const runs = rows.filter((r, k) => k === 0 || r.consumer_id !== rows[k - 1]!.consumer_id).length;
      expect(runs).toBeGreaterThan(2);
      const last = rows[rows.length - 1]!;
      expect(await pgQuery(url, 'SELECT seq::int AS seq, hash FROM audit_head')).toEqual([{ seq: 1000, hash: last.hash }]);
      for (const r of replicas) {
        expect(await r.verify({ hmacKey: null })).toEqual({ ok: true, rows: 1000, head: { seq: 1000, hash: last.hash }, mode: 'sha256' });
        expect(await r.head()).toEqual({ seq: 1000, hash: last.hash });
      }
      // Both replicas' usage counters landed on one row.
      expect(await replicas[0]!.reader.all('SELECT calls, errors FROM usage_hourly')).toEqual([{ calls: 1000, errors: 500 }]);
    } finally {
      await Promise.all(replicas.map((r) => r.close()));
    }
  });
});

describeEngines(engines, 'request states spent once for every replica on the store', (t) => {
  test('a state opened by one process is refused as used by another on the same store; a store that fails refuses (SERVER_UNAVAILABLE)', async () => {
    const key = await t.store.sharedSecret('request-state');
    const second = await openStore(t.database);
    try {
      const replicaA = new RequestStates(undefined, key);
      const replicaB = new RequestStates(undefined, await second.sharedSecret('request-state'));
      replicaA.spendShared = (nonce, exp) => t.store.spendOnce(nonce, exp);
      replicaB.spendShared = (nonce, exp) => second.spendOnce(nonce, exp);
      const expected = { consumer: 'ana', keyId: 'k1', call: 'tools/call echo echo x' };
      const state = replicaA.seal({ ...expected, childState: 'child-state' });
      expect((await replicaB.openOnce(state, expected)).childState).toBe('child-state');
      // Replayed to the first replica (which never saw it): used.
      await expect(replicaA.openOnce(state, expected)).rejects.toThrow(/already used/);
      // A fresh state still opens there.
      const next = replicaB.seal({ ...expected, childState: 'next' });
      expect((await replicaA.openOnce(next, expected)).childState).toBe('next');
      // The store cannot answer: not known to be unspent, so refused.
      replicaA.spendShared = () => Promise.reject(new Error('connection refused'));
      await expect(replicaA.openOnce(replicaA.seal({ ...expected }), expected)).rejects.toMatchObject({ code: 'SERVER_UNAVAILABLE' });
    } finally {
      await second.close();
    }
  });
});
