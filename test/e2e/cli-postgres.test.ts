/**
 * The CLI on a PostgreSQL store (`database: postgres://…`), as a user runs it: real processes, the
 * same commands and the same answers as on a SQLite file (audit-cli.test.ts). Keys made, listed,
 * revoked and rotated; a real gateway serving calls with database keys, then audit
 * log/stats/verify/head/export and usage on what it wrote; rows tampered with in PostgreSQL;
 * `check`; and the errors of a server that refuses, an engine that is not supported, and a
 * database that holds no schema. Each describe has a fresh database of its own, dropped after.
 * Skipped, with a message naming the server, where PostgreSQL does not answer.
 */
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  call,
  errorCode,
  fixture,
  startGateway,
  tempDir,
  textOf,
  waitFor,
  waitListed,
  writeConfig,
  type Obj,
  type RunningGateway,
} from '../helpers/gateway.js';
import { freshDatabase, pgAnswers, pgQuery, type FreshDatabase } from '../helpers/pg.js';
import { cli, Gateways, type CliRun } from '../helpers/security.js';

const up = await pgAnswers('cli-postgres e2e');

const AUDIT_KEY = 'e2e-pg-audit-hmac-key-0123456789abcdef';
const withKey = { env: { AUDIT_KEY } };

const ADMIN = { id: 'admin', roles: ['admin'], rules: [{ action: 'allow' }, { server: 'gateway', action: 'allow' }] };
/** Readers may call echo's `echo` only. */
const READER = { id: 'reader', roles: ['reader'], rules: [{ server: 'echo', tool: 'echo', action: 'allow' }] };

/** A gateway.yaml on `database` (a postgres:// URL): the echo fixture, admin and reader, an HMAC chain. */
function pgConfig(database: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    database,
    servers: [{ id: 'echo', ...fixture('echo.js') }],
    policies: [ADMIN, READER],
    rateLimit: { enabled: false },
    audit: { hmacKeyEnv: 'AUDIT_KEY' },
    ...overrides,
  };
}

interface CreatedKey {
  key: string;
  id: string;
  name: string;
  consumerId: string;
  roles: string[];
  state: string;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  ratePerMinute: number | null;
}

interface KeyRow {
  id: string;
  name: string;
  consumer_id: string;
  roles: string;
  hash: string;
  expires_at: string | null;
  revoked_at: string | null;
  rate_per_minute: number | null;
  rotated_from: string | null;
}

/** An audit_log row as pg returns it (BIGINT columns come back as text). */
interface PgAuditRow {
  seq: string;
  latency_ms: string;
  consumer_id: string | null;
  key_id: string | null;
  name: string;
  status: string;
  prev_hash: string;
  hash: string;
  [column: string]: unknown;
}

/** The columns of audit_log in the order `audit export` writes them (as on SQLite, whatever PostgreSQL's table order). */
const EXPORT_COLUMNS =
  'seq,ts,consumer_id,key_id,auth_method,roles,server,kind,name,arguments,result,status,error,latency_ms,decided_by,prev_hash,hash,method,meta';

/** A key as printed by `keys create` / `keys rotate` (text form): gw_<id>_<43-char secret>. */
const KEY_LINE = /^ {2}MCP_GATEWAY_API_KEY=(gw_([A-Za-z0-9]+)_[A-Za-z0-9_-]{43})$/gm;

const json = <T = Obj>(run: CliRun): T => JSON.parse(run.stdout) as T;
/** The non-empty lines of a stream. */
const lines = (text: string) => text.split('\n').filter((l) => l.trim() !== '');

async function createKey(configFile: string, name: string, consumer: string, roles: string, ...extra: string[]): Promise<CreatedKey> {
  const run = await cli(['keys', 'create', name, consumer, roles, '--json', '--config', configFile, ...extra]);
  expect(run.code, run.stderr).toBe(0);
  return json<CreatedKey>(run);
}

async function keyRow(url: string, id: string): Promise<KeyRow | undefined> {
  return (await pgQuery<KeyRow>(url, 'SELECT * FROM api_keys WHERE id = $1', [id]))[0];
}

async function auditRows(url: string): Promise<PgAuditRow[]> {
  return pgQuery<PgAuditRow>(url, 'SELECT * FROM audit_log ORDER BY seq');
}

const gateways = new Gateways();

// ---------------------------------------------------------------------------------------------

describe.skipIf(!up)('keys on PostgreSQL', () => {
  let db: FreshDatabase;
  let dir: string;
  let configFile: string;

  beforeAll(async () => {
    db = await freshDatabase('cli_keys');
    dir = tempDir('mcpgw-pgcli-keys-');
    configFile = writeConfig(dir, pgConfig(db.url));
  });
  afterAll(async () => {
    await gateways.closeAll();
    await db?.drop();
  });

  test('keys create (text): exit 0, the key printed once; PostgreSQL holds its bcrypt hash, never the key', async () => {
    const run = await cli(['keys', 'create', 'Ana laptop', 'ana', 'admin,reader', '--config', configFile]);
    expect(run.code, run.stderr).toBe(0);
    const printed = [...run.stdout.matchAll(KEY_LINE)];
    expect(printed).toHaveLength(1);
    const [, key, id] = printed[0]!;
    // Only once in all the output (the Claude Desktop entry carries a placeholder).
    expect(run.stdout.split(key!)).toHaveLength(2);
    expect(run.stderr).toBe('');

    const row = await keyRow(db.url, id!);
    expect(row).toMatchObject({ id, name: 'Ana laptop', consumer_id: 'ana', roles: '["admin","reader"]', revoked_at: null });
    expect(row!.hash).toMatch(/^\$2[aby]\$/);
    expect(JSON.stringify(await pgQuery(db.url, 'SELECT * FROM api_keys'))).not.toContain(key!.slice(-43));
  });

  test('keys create --json: the key and its record; the row in PostgreSQL has its rate and expiry', async () => {
    const created = await createKey(configFile, 'Bob CI', 'bob', 'reader', '--rate', '120', '--expires', '30d');
    expect(created).toMatchObject({
      name: 'Bob CI',
      consumerId: 'bob',
      roles: ['reader'],
      state: 'active',
      revokedAt: null,
      ratePerMinute: 120,
    });
    expect(created.key).toMatch(new RegExp(`^gw_${created.id}_[A-Za-z0-9_-]{43}$`));
    const days = (Date.parse(created.expiresAt!) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThanOrEqual(30);
    expect(await keyRow(db.url, created.id)).toMatchObject({
      consumer_id: 'bob',
      roles: '["reader"]',
      expires_at: created.expiresAt,
      revoked_at: null,
      rate_per_minute: 120,
    });
  });

  test('keys list --json: active, revoked and expired keys from PostgreSQL, never a secret or a hash', async () => {
    const [active, revoked, expiring] = await Promise.all([
      createKey(configFile, 'Active', 'ka', 'reader'),
      createKey(configFile, 'Revoked', 'kb', 'reader'),
      createKey(configFile, 'Expiring', 'kc', 'reader', '--expires', '1s'),
    ]);
    expect((await cli(['keys', 'revoke', revoked.id, '--config', configFile])).code).toBe(0);
    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(expiring.expiresAt!) - Date.now() + 150)));

    const listed = await cli(['keys', 'list', '--json', '--config', configFile]);
    expect(listed.code, listed.stderr).toBe(0);
    const { keys } = json<{ keys: Obj[] }>(listed);
    const byId = (id: string) => keys.find((k) => k['id'] === id);
    expect(byId(active.id)).toMatchObject({ name: 'Active', consumerId: 'ka', roles: ['reader'], state: 'active', source: 'database' });
    expect(byId(revoked.id)).toMatchObject({ state: 'revoked', revokedAt: expect.any(String), source: 'database' });
    expect(byId(expiring.id)).toMatchObject({ state: 'expired', expiresAt: expiring.expiresAt, revokedAt: null });
    // Every key in the database is listed, once.
    const ids = (await pgQuery<{ id: string }>(db.url, 'SELECT id FROM api_keys')).map((r) => r.id).sort();
    expect(keys.map((k) => k['id']).sort()).toEqual(ids);
    for (const k of keys) expect(Object.keys(k).filter((f) => ['key', 'hash', 'secret'].includes(f))).toEqual([]);
    for (const key of [active.key, revoked.key, expiring.key]) expect(listed.stdout).not.toContain(key.slice(-43));
    expect(listed.stdout).not.toMatch(/\$2[aby]\$/);

    const table = await cli(['keys', 'list', '--config', configFile]);
    expect(table.code).toBe(0);
    for (const id of [active.id, revoked.id, expiring.id]) expect(table.stdout).toContain(id);
    expect(table.stdout).not.toMatch(/gw_[A-Za-z0-9]+_[A-Za-z0-9_-]{43}/);
  });

  test('keys revoke: exit 0 and revoked_at set; again: exit 0, "already revoked", revoked_at unchanged', async () => {
    const created = await createKey(configFile, 'Temp', 'tmp', 'reader');
    const first = await cli(['keys', 'revoke', created.id, '--config', configFile]);
    expect(first.code, first.stderr).toBe(0);
    const revokedAt = (await keyRow(db.url, created.id))!.revoked_at;
    expect(revokedAt).not.toBeNull();
    expect(Date.now() - Date.parse(revokedAt!)).toBeLessThan(60_000);

    const again = await cli(['keys', 'revoke', created.id, '--config', configFile]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('already revoked');
    expect((await keyRow(db.url, created.id))!.revoked_at).toBe(revokedAt);
  });

  test('keys rotate: the old key is revoked (its live session refused), the new one serves a gateway', async () => {
    const old = await createKey(configFile, 'Rotating', 'rita', 'reader', '--rate', '500');
    const before = await gateways.start({ config: pgConfig(db.url), dir, key: old.key, env: { AUDIT_KEY } });
    await waitListed(before.client, 'echo__echo');
    expect(textOf(await call(before.client, 'echo__echo', { message: 'before' }))).toBe('before');

    const rotated = await cli(['keys', 'rotate', old.id, '--json', '--config', configFile]);
    expect(rotated.code, rotated.stderr).toBe(0);
    const fresh = json<CreatedKey>(rotated);
    expect(fresh.id).not.toBe(old.id);
    expect(fresh.key).toMatch(new RegExp(`^gw_${fresh.id}_[A-Za-z0-9_-]{43}$`));
    expect(fresh).toMatchObject({ consumerId: 'rita', roles: ['reader'], ratePerMinute: 500, state: 'active' });
    expect(await keyRow(db.url, fresh.id)).toMatchObject({ consumer_id: 'rita', rotated_from: old.id, revoked_at: null });
    expect((await keyRow(db.url, old.id))!.revoked_at).not.toBeNull();

    // The gateway that was running on the old key refuses its next call.
    expect(errorCode(await call(before.client, 'echo__echo', { message: 'after' }))).toBe('UNAUTHENTICATED');
    // A new gateway with the new key works; with the old one it does not start.
    const after = await gateways.start({ config: pgConfig(db.url), dir, key: fresh.key, env: { AUDIT_KEY } });
    await waitListed(after.client, 'echo__echo');
    expect(textOf(await call(after.client, 'echo__echo', { message: 'new key' }))).toBe('new key');
    // (The old key's gateway answers initialize while the key is checked, then exits: it never serves a call.)
    const refused = await startGateway({ config: pgConfig(db.url), dir, key: old.key, env: { AUDIT_KEY } }).then(
      async (gw) => {
        const outcome = await call(gw.client, 'echo__echo', { message: 'old key' }).then(
          (r) => errorCode(r) ?? 'served',
          () => 'closed',
        );
        await gw.close();
        return outcome;
      },
      () => 'did not start',
    );
    expect(['did not start', 'closed', 'UNAUTHENTICATED']).toContain(refused);

    // Its calls are audited under the new key id.
    const rows = await pgQuery<{ key_id: string }>(
      db.url,
      "SELECT key_id FROM audit_log WHERE consumer_id = 'rita' AND status = 'ok' ORDER BY seq",
    );
    expect(rows.map((r) => r.key_id)).toEqual([old.id, fresh.id]);

    // A revoked key is not rotated again.
    expect((await cli(['keys', 'rotate', old.id, '--config', configFile])).code).toBe(1);
    const list = json<{ keys: Obj[] }>(await cli(['keys', 'list', '--json', '--config', configFile]));
    expect(list.keys.find((k) => k['id'] === old.id)?.['state']).toBe('revoked');
    expect(list.keys.find((k) => k['id'] === fresh.id)?.['state']).toBe('active');
  });

  test('keys rotate (text): prints the new key once; the old one is revoked', async () => {
    const old = await createKey(configFile, 'Text', 'tess', 'reader');
    const run = await cli(['keys', 'rotate', old.id, '--config', configFile]);
    expect(run.code, run.stderr).toBe(0);
    const printed = [...run.stdout.matchAll(KEY_LINE)];
    expect(printed).toHaveLength(1);
    expect(printed[0]![2]).not.toBe(old.id);
    expect(await keyRow(db.url, printed[0]![2]!)).toMatchObject({ consumer_id: 'tess', rotated_from: old.id });
    expect((await keyRow(db.url, old.id))!.revoked_at).not.toBeNull();
  });

  test('an unknown key id: revoke and rotate exit 1 with one line naming it; nothing is written', async () => {
    const count = async () => (await pgQuery(db.url, 'SELECT id FROM api_keys')).length;
    const n = await count();
    for (const command of ['revoke', 'rotate']) {
      const run = await cli(['keys', command, 'nosuchkey1', '--config', configFile]);
      expect({ command, code: run.code }).toEqual({ command, code: 1 });
      expect(run.stdout).toBe('');
      expect(lines(run.stderr)).toHaveLength(1);
      expect(run.stderr).toContain('nosuchkey1');
    }
    expect(await count()).toBe(n);
  });

  test('keys hash with the PostgreSQL config: a bcrypt hash of the key on stdin', async () => {
    const run = await cli(['keys', 'hash', '--config', configFile], {
      stdin: 'gw_statickey_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG\n',
    });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}\n$/);
  });
});

// ---------------------------------------------------------------------------------------------

describe.skipIf(!up)('a gateway on PostgreSQL, then audit and usage', () => {
  let db: FreshDatabase;
  let dir: string;
  let configFile: string;
  let ana: CreatedKey;
  let bob: CreatedKey;
  let anaGw: RunningGateway;
  let bobGw: RunningGateway;
  /** The answers to the calls made in beforeAll, in order. */
  const answers: Obj[] = [];

  beforeAll(async () => {
    db = await freshDatabase('cli_audit');
    dir = tempDir('mcpgw-pgcli-audit-');
    configFile = writeConfig(dir, pgConfig(db.url));
    ana = await createKey(configFile, 'Ana laptop', 'ana', 'admin');
    bob = await createKey(configFile, 'Bob laptop', 'bob', 'reader');
    [anaGw, bobGw] = await Promise.all([
      gateways.start({ config: pgConfig(db.url), dir, key: ana.key, env: { AUDIT_KEY } }),
      gateways.start({ config: pgConfig(db.url), dir, key: bob.key, env: { AUDIT_KEY } }),
    ]);
    await Promise.all([waitListed(anaGw.client, ['echo__echo', 'echo__add']), waitListed(bobGw.client, 'echo__echo')]);
    // One after another: seq 1..8.
    for (const [gw, tool, args] of [
      [anaGw, 'echo__echo', { message: 'a0' }],
      [bobGw, 'echo__echo', { message: 'b0' }],
      [anaGw, 'echo__add', { a: 2, b: 3 }],
      [bobGw, 'echo__add', { a: 1, b: 1 }],
      [anaGw, 'echo__echo', { message: 'a1' }],
      [anaGw, 'echo__fail', { message: 'boom' }],
      [bobGw, 'echo__echo', { message: 'b1' }],
      [anaGw, 'echo__echo', { message: 'a2' }],
    ] as const) {
      answers.push(await call(gw.client, tool, args));
    }
  });
  afterAll(async () => {
    await gateways.closeAll();
    await db?.drop();
  });

  test('two gateways serve calls with keys from `keys create`; each call is one row in PostgreSQL', async () => {
    expect(textOf(answers[0])).toBe('a0');
    expect(textOf(answers[1])).toBe('b0');
    expect(answers[2]!['structuredContent']).toEqual({ sum: 5 });
    // A tool a reader may never call is refused as one that does not exist, and audited as denied.
    expect(errorCode(answers[3])).toBe('UNKNOWN_TOOL');
    expect(textOf(answers[4])).toBe('a1');
    expect(answers[5]!['isError']).toBe(true);
    expect(textOf(answers[6])).toBe('b1');
    expect(textOf(answers[7])).toBe('a2');

    const rows = await auditRows(db.url);
    expect(rows.map((r) => [Number(r.seq), r.consumer_id, r.key_id, r.name, r.status])).toEqual([
      [1, 'ana', ana.id, 'echo', 'ok'],
      [2, 'bob', bob.id, 'echo', 'ok'],
      [3, 'ana', ana.id, 'add', 'ok'],
      [4, 'bob', bob.id, 'add', 'denied'],
      [5, 'ana', ana.id, 'echo', 'ok'],
      [6, 'ana', ana.id, 'fail', 'error'],
      [7, 'bob', bob.id, 'echo', 'ok'],
      [8, 'ana', ana.id, 'echo', 'ok'],
    ]);
  });

  test('audit log --json: newest first; --consumer, --status, --limit filter', async () => {
    const all = await cli(['audit', 'log', '--json', '--config', configFile]);
    expect(all.code, all.stderr).toBe(0);
    const entries = json<{ entries: Obj[] }>(all).entries;
    expect(entries.map((e) => e['seq'])).toEqual([8, 7, 6, 5, 4, 3, 2, 1]);
    expect(entries[0]).toMatchObject({
      consumer_id: 'ana',
      key_id: ana.id,
      auth_method: 'api-key',
      roles: ['admin'],
      server: 'echo',
      kind: 'tool',
      name: 'echo',
      arguments: { message: 'a2' },
      result: { content: [{ type: 'text', text: 'a2' }] },
      status: 'ok',
      error: null,
      method: 'tools/call',
    });
    expect(typeof entries[0]!['latency_ms']).toBe('number');

    const seqs = async (...args: string[]) => {
      const run = await cli(['audit', 'log', '--json', '--config', configFile, ...args]);
      expect(run.code, run.stderr).toBe(0);
      return json<{ entries: Obj[] }>(run).entries.map((e) => e['seq']);
    };
    expect(await seqs('--consumer', 'bob')).toEqual([7, 4, 2]);
    expect(await seqs('--status', 'denied')).toEqual([4]);
    expect(await seqs('--status', 'error')).toEqual([6]);
    expect(await seqs('--limit', '3')).toEqual([8, 7, 6]);
    expect(await seqs('--consumer', 'ana', '--status', 'ok', '--limit', '2')).toEqual([8, 5]);
    expect(await seqs('--tool', 'add')).toEqual([4, 3]);
    expect(await seqs('--consumer', 'nobody')).toEqual([]);
    expect(await seqs('--since', '1h')).toEqual([8, 7, 6, 5, 4, 3, 2, 1]);

    const table = await cli(['audit', 'log', '--limit', '2', '--config', configFile]);
    expect(table.code).toBe(0);
    expect(lines(table.stdout)).toHaveLength(3);
  });

  test('audit stats --json: totals by status, server and consumer; latency from the rows', async () => {
    const run = await cli(['audit', 'stats', '--json', '--config', configFile]);
    expect(run.code, run.stderr).toBe(0);
    const latencies = (await auditRows(db.url)).map((r) => Number(r.latency_ms));
    expect(json(run)).toMatchObject({
      since: null,
      until: null,
      total: 8,
      byStatus: [
        { status: 'ok', count: 6 },
        { status: 'denied', count: 1 },
        { status: 'error', count: 1 },
      ],
      byServer: [{ server: 'echo', count: 8 }],
      byConsumer: [
        { consumer: 'ana', count: 5 },
        { consumer: 'bob', count: 3 },
      ],
      latencyMs: { max: Math.max(...latencies) },
    });
    expect((await cli(['audit', 'stats', '--config', configFile])).code).toBe(0);
  });

  test('audit verify: exit 0, "ok: 8 rows verified"; --json; without the HMAC key exit 2, with another exit 1', async () => {
    const text = await cli(['audit', 'verify', '--config', configFile], withKey);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^ok: 8 rows verified/);

    const last = (await auditRows(db.url)).at(-1)!;
    const run = await cli(['audit', 'verify', '--json', '--config', configFile], withKey);
    expect(run.code).toBe(0);
    expect(json(run)).toEqual({ ok: true, rows: 8, head: { seq: 8, hash: last.hash }, mode: 'hmac-sha256' });

    expect((await cli(['audit', 'verify', '--config', configFile])).code).toBe(2);
    const wrong = await cli(['audit', 'verify', '--json', '--config', configFile], {
      env: { AUDIT_KEY: 'some-other-key-of-enough-length' },
    });
    expect(wrong.code).toBe(1);
    expect(json(wrong)).toMatchObject({ ok: false, seq: 1, reason: 'wrong-key' });
  });

  test('audit head: seq:hash of the last row in PostgreSQL (and of audit_head); --json', async () => {
    const last = (await auditRows(db.url)).at(-1)!;
    const [head] = await pgQuery<{ seq: string; hash: string }>(db.url, 'SELECT seq, hash FROM audit_head WHERE id = 1');
    expect(`${head!.seq}:${head!.hash}`).toBe(`${last.seq}:${last.hash}`);

    const text = await cli(['audit', 'head', '--config', configFile]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toBe(`8:${last.hash}\n`);
    const run = await cli(['audit', 'head', '--json', '--config', configFile]);
    expect(run.code).toBe(0);
    expect(json(run)).toEqual({ seq: 8, hash: last.hash });
    // It anchors a verification.
    expect((await cli(['audit', 'verify', '--anchor', text.stdout.trim(), '--config', configFile], withKey)).code).toBe(0);
  });

  test('audit export --format jsonl: every row, every column as stored, in the export column order', async () => {
    const run = await cli(['audit', 'export', '--format', 'jsonl', '--config', configFile]);
    expect(run.code, run.stderr).toBe(0);
    const exported = lines(run.stdout).map((l) => JSON.parse(l) as Obj);
    const rows = await auditRows(db.url);
    expect(exported).toHaveLength(8);
    for (const line of exported) expect(Object.keys(line).join(',')).toBe(EXPORT_COLUMNS);
    expect(exported).toEqual(rows.map((r) => ({ ...r, seq: Number(r.seq), latency_ms: Number(r.latency_ms) })));
  });

  test('audit export --format csv --out F: every row; the file is 0600 (an existing file too)', async () => {
    const out = path.join(dir, 'audit.csv');
    writeFileSync(out, 'old content\n');
    chmodSync(out, 0o644);
    const run = await cli(['audit', 'export', '--format', 'csv', '--out', out, '--config', configFile]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe('');
    expect(statSync(out).mode & 0o777).toBe(0o600);
    const text = readFileSync(out, 'utf8');
    expect(text.startsWith(`${EXPORT_COLUMNS}\r\n`)).toBe(true);
    expect(text).not.toContain('old content');
    // Each record holds prev_hash and hash side by side: the chain, in seq order.
    const pairs = [...text.matchAll(/,([0-9a-f]{64}),([0-9a-f]{64}),/g)].map((m) => [m[1], m[2]]);
    expect(pairs).toEqual((await auditRows(db.url)).map((r) => [r.prev_hash, r.hash]));
    // JSON columns are quoted CSV fields with doubled quotes.
    expect(text).toContain('"{""message"":""a0""}"');

    // A fresh file is created 0600 as well.
    const fresh = path.join(dir, 'fresh.csv');
    expect((await cli(['audit', 'export', '--format', 'csv', '--out', fresh, '--config', configFile])).code).toBe(0);
    expect(statSync(fresh).mode & 0o777).toBe(0o600);
  });

  test('usage --json --by tool: the counts match the calls (written within about a second)', async () => {
    const usage = () => cli(['usage', '--json', '--by', 'tool', '--config', configFile]);
    const report = await waitFor(
      async () => {
        const run = await usage();
        const r = run.code === 0 ? json<{ total: { calls: number } }>(run) : undefined;
        return r && r.total.calls === 8 ? (r as Obj) : undefined;
      },
      15_000,
      'usage to count 8 calls',
    );
    expect(report).toMatchObject({
      bucket: 'hour',
      since: null,
      until: null,
      consumerId: null,
      by: 'tool',
      rows: [
        { server: 'echo', tool: 'add', calls: 2, errors: 0, denied: 1, rate_limited: 0 },
        { server: 'echo', tool: 'echo', calls: 5, errors: 0, denied: 0, rate_limited: 0 },
        { server: 'echo', tool: 'fail', calls: 1, errors: 1, denied: 0, rate_limited: 0 },
      ],
      total: { calls: 8, errors: 1, denied: 1, rate_limited: 0, cost: 0 },
    });
    // The hour counted is this one.
    const hourStart = Date.now() - (Date.now() % 3_600_000);
    expect([hourStart, hourStart - 3_600_000]).toContain(Date.parse(report['from'] as string));

    const bobOnly = await cli(['usage', 'bob', '--json', '--config', configFile]);
    expect(bobOnly.code).toBe(0);
    expect(json(bobOnly)['rows']).toEqual([expect.objectContaining({ consumer: 'bob', calls: 3, errors: 0, denied: 1 })]);
    const byConsumer = await cli(['usage', '--by', 'consumer', '--config', configFile]);
    expect(byConsumer.code).toBe(0);
    expect(byConsumer.stdout).toMatch(/^TOTAL\s+8\s/m);
  });
});

// ---------------------------------------------------------------------------------------------

describe.skipIf(!up)('audit verify against rows tampered with in PostgreSQL', () => {
  let db: FreshDatabase;
  let configFile: string;
  /** `audit head` before any tampering: 10:<hash>. */
  let anchor: string;

  const verify = (...args: string[]) => cli(['audit', 'verify', '--config', configFile, ...args], withKey);
  const verdict = async (...args: string[]) => {
    const run = await verify('--json', ...args);
    return { code: run.code, ...json(run) };
  };

  beforeAll(async () => {
    db = await freshDatabase('cli_tamper');
    const dir = tempDir('mcpgw-pgcli-tamper-');
    configFile = writeConfig(dir, pgConfig(db.url));
    const key = await createKey(configFile, 'Writer', 'wes', 'admin');
    const gw = await startGateway({ config: pgConfig(db.url), dir, key: key.key, env: { AUDIT_KEY } });
    try {
      await waitListed(gw.client, 'echo__echo');
      for (let i = 1; i <= 10; i++) await call(gw.client, 'echo__echo', { message: `m${i}` });
    } finally {
      await gw.close();
    }
  });
  afterAll(async () => {
    await db?.drop();
  });

  test('the untouched chain verifies; its head is the anchor kept for later', async () => {
    expect(await verdict()).toMatchObject({ code: 0, ok: true, rows: 10 });
    const head = await cli(['audit', 'head', '--config', configFile]);
    expect(head.code).toBe(0);
    anchor = head.stdout.trim();
    expect(anchor).toMatch(/^10:[0-9a-f]{64}$/);
  });

  test('a changed column: exit 1 naming its seq and "modified"; put back, it verifies again', async () => {
    const changes: [string, string][] = [
      ['arguments', `'{"message":"forged"}'`],
      ['status', `'denied'`],
      ['latency_ms', 'latency_ms + 1'],
      ['consumer_id', `'mallory'`],
      ['ts', `'2020-01-01T00:00:00.000Z'`],
    ];
    for (const [column, value] of changes) {
      const [saved] = await pgQuery(db.url, `SELECT ${column} AS v FROM audit_log WHERE seq = 4`);
      await pgQuery(db.url, `UPDATE audit_log SET ${column} = ${value} WHERE seq = 4`);
      expect({ column, ...(await verdict()) }).toMatchObject({ column, code: 1, ok: false, seq: 4, reason: 'modified' });
      const text = await verify();
      expect(text.code).toBe(1);
      expect(lines(text.stderr)).toHaveLength(1);
      expect(text.stderr).toMatch(/\bseq 4\b.*modified/);
      await pgQuery(db.url, `UPDATE audit_log SET ${column} = $1 WHERE seq = 4`, [saved!['v']]);
      expect({ column, ...(await verdict()) }).toMatchObject({ column, code: 0, ok: true, rows: 10 });
    }
  });

  test('a deleted middle row: exit 1, "missing" at the row after it; put back, it verifies again', async () => {
    await pgQuery(db.url, 'CREATE TABLE tamper_saved AS SELECT * FROM audit_log WHERE seq = 5; DELETE FROM audit_log WHERE seq = 5');
    expect(await verdict()).toMatchObject({ code: 1, ok: false, seq: 6, reason: 'missing' });
    const text = await verify();
    expect(text.code).toBe(1);
    expect(text.stderr).toMatch(/\bseq 6\b.*missing/);
    await pgQuery(db.url, 'INSERT INTO audit_log SELECT * FROM tamper_saved; DROP TABLE tamper_saved');
    expect(await verdict()).toMatchObject({ code: 0, ok: true, rows: 10 });
  });

  test('the last rows deleted: "truncated" (audit_head remembers the head), and against the earlier anchor', async () => {
    const rows = await auditRows(db.url);
    await pgQuery(db.url, 'DELETE FROM audit_log WHERE seq > 8');
    // audit head shows the log as it is now.
    expect((await cli(['audit', 'head', '--config', configFile])).stdout).toBe(`8:${rows[7]!.hash}\n`);

    expect(await verdict()).toMatchObject({ code: 1, ok: false, seq: 10, reason: 'truncated' });
    const text = await verify();
    expect(text.code).toBe(1);
    expect(text.stderr).toMatch(/\bseq 10\b.*truncated/);
    expect(await verdict('--anchor', anchor)).toMatchObject({ code: 1, ok: false, seq: 10, reason: 'truncated' });

    // Whoever deleted them also moves audit_head back: only the anchor kept elsewhere shows it.
    await pgQuery(db.url, 'UPDATE audit_head SET seq = 8, hash = $1 WHERE id = 1', [rows[7]!.hash]);
    expect(await verdict()).toMatchObject({ code: 0, ok: true, rows: 8 });
    expect(await verdict('--anchor', anchor)).toMatchObject({ code: 1, ok: false, seq: 10, reason: 'truncated' });
    expect((await verify('--anchor', anchor)).code).toBe(1);
    // An anchor inside what is left still holds (16 hex digits are enough).
    expect(await verdict('--anchor', `7:${rows[6]!.hash.slice(0, 16)}`)).toMatchObject({ code: 0, ok: true });
  });
});

// ---------------------------------------------------------------------------------------------

describe.skipIf(!up)('check on a PostgreSQL config', () => {
  let db: FreshDatabase;
  let configFile: string;

  beforeAll(async () => {
    db = await freshDatabase('cli_check');
    configFile = writeConfig(tempDir('mcpgw-pgcli-check-'), pgConfig(db.url));
  });
  afterAll(async () => {
    await db?.drop();
  });

  test('exit 0 with its report: the server started, keys read from PostgreSQL', async () => {
    const run = await cli(['check', '--config', configFile], withKey);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(configFile);
    expect(run.stdout).toMatch(/^\s+ok\s+echo: \d+ tools/m);

    // A database key whose role no policy names is reported, so check read the keys from PostgreSQL.
    const ghost = await createKey(configFile, 'Ghost', 'gus', 'ghost');
    const report = await cli(['check', '--json', '--config', configFile], withKey);
    expect(report.code, report.stderr).toBe(0);
    expect(json(report)).toMatchObject({
      config: configFile,
      servers: [{ id: 'echo', ok: true }],
      rolesInNoPolicy: [{ key: ghost.id, roles: ['ghost'] }],
    });
    // The audit mode check recorded the chain's mode: a gateway and verify agree on it.
    expect((await cli(['audit', 'verify', '--json', '--config', configFile], withKey)).code).toBe(0);
  });

  test('without the HMAC key variable the config is not usable: exit 2', async () => {
    expect((await cli(['check', '--config', configFile])).code).toBe(2);
  });
});

// ---------------------------------------------------------------------------------------------

describe.skipIf(!up)('errors on PostgreSQL configs', () => {
  let db: FreshDatabase;
  let dir: string;

  beforeAll(async () => {
    db = await freshDatabase('cli_errors');
    dir = tempDir('mcpgw-pgcli-errors-');
  });
  afterAll(async () => {
    await db?.drop();
  });

  /** Every command that opens the store, with the exit code it gives when the store cannot be used. */
  const STORE_COMMANDS: [string[], number][] = [
    [['keys', 'create', 'Laptop', 'ana', 'admin'], 2],
    [['keys', 'list'], 2],
    [['keys', 'list', '--json'], 2],
    [['keys', 'revoke', 'abc123'], 2],
    [['keys', 'rotate', 'abc123'], 2],
    [['audit', 'log'], 2],
    [['audit', 'log', '--json'], 2],
    [['audit', 'stats'], 2],
    [['audit', 'verify'], 2],
    [['audit', 'head'], 2],
    [['audit', 'export'], 2],
    [['audit', 'export', '--format', 'csv', '--out', 'out.csv'], 2],
    [['usage'], 2],
    [['usage', '--json', '--by', 'tool'], 2],
    // A failed check.
    [['check'], 1],
  ];

  test('a server that refuses: every command exits non-zero with one line naming the URL, never its password', async () => {
    const url = 'postgres://u:s3cret@127.0.0.1:1/x';
    const configFile = writeConfig(dir, pgConfig(url));
    const runs = await Promise.all(
      STORE_COMMANDS.map(([args]) => cli([...args, '--config', configFile], { cwd: dir, env: { AUDIT_KEY } })),
    );
    for (const [i, run] of runs.entries()) {
      const [args, code] = STORE_COMMANDS[i]!;
      expect({ args, code: run.code }).toEqual({ args, code });
      expect({ args, stdout: run.stdout }).toEqual({ args, stdout: '' });
      expect(lines(run.stderr), `${args.join(' ')}: ${run.stderr}`).toHaveLength(1);
      expect(run.stderr).toContain('postgres://u:***@127.0.0.1:1/x');
      expect(run.stdout + run.stderr).not.toContain('s3cret');
    }
    // keys hash needs no database: it works whatever the config says.
    const hash = await cli(['keys', 'hash', '--config', configFile], { stdin: 'gw_a_b' });
    expect(hash.code).toBe(0);
  });

  // Fails today (src/store/pg.ts describeUrl and urlPassword): pg takes ?password= as the password,
  // but only the URL's userinfo password is masked.
  test('a password given as ?password= in the URL is not printed either', async () => {
    const configFile = writeConfig(dir, pgConfig('postgres://u@127.0.0.1:1/x?password=s3cret'));
    for (const args of [['keys', 'list'], ['audit', 'log'], ['usage'], ['check']]) {
      const run = await cli([...args, '--config', configFile], { cwd: dir, env: { AUDIT_KEY } });
      expect({ args, code: run.code }).toEqual({ args, code: args[0] === 'check' ? 1 : 2 });
      expect(run.stdout + run.stderr, `${args.join(' ')} printed the password`).not.toContain('s3cret');
    }
  });

  test('a database that does not exist on a live server: exit 2 naming it', async () => {
    const url = db.url.replace(/\/[^/]+$/, `/${db.name}_absent`);
    const configFile = writeConfig(dir, pgConfig(url));
    for (const args of [['keys', 'list'], ['audit', 'log'], ['usage']]) {
      const run = await cli([...args, '--config', configFile], { cwd: dir, env: { AUDIT_KEY } });
      expect({ args, code: run.code }).toEqual({ args, code: 2 });
      expect(lines(run.stderr)).toHaveLength(1);
      expect(run.stderr).toContain(`${db.name}_absent`);
    }
  });

  test('database: mysql://x is a config error (exit 2) for every command, before any connection', async () => {
    const configFile = writeConfig(dir, pgConfig('mysql://x'));
    const runs = await Promise.all(
      STORE_COMMANDS.map(([args]) => cli([...args, '--config', configFile], { cwd: dir, env: { AUDIT_KEY } })),
    );
    for (const [i, run] of runs.entries()) {
      const [args] = STORE_COMMANDS[i]!;
      expect({ args, code: run.code }).toEqual({ args, code: 2 });
      expect(lines(run.stderr)).toHaveLength(1);
      expect(run.stderr).toContain(configFile);
      expect(run.stderr).toContain('database');
    }
  });

  test('a read command on a fresh empty database: "no mcp-gateway schema", non-zero, and nothing created', async () => {
    const configFile = writeConfig(dir, pgConfig(db.url));
    const reads = [
      ['audit', 'log'],
      ['audit', 'log', '--json'],
      ['audit', 'stats'],
      ['audit', 'verify'],
      ['audit', 'head'],
      ['audit', 'export'],
      ['usage'],
    ];
    for (const args of reads) {
      const run = await cli([...args, '--config', configFile], { cwd: dir, env: { AUDIT_KEY } });
      expect({ args, code: run.code }).toEqual({ args, code: 2 });
      expect(run.stdout).toBe('');
      expect(lines(run.stderr)).toHaveLength(1);
      expect(run.stderr).toContain('no mcp-gateway schema');
      expect(run.stderr).toContain(db.name);
    }
    // Read-only: the database is as empty as before.
    const tables = await pgQuery(db.url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'");
    expect(tables).toEqual([]);
  });
});
