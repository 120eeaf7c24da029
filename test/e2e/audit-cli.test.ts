/**
 * The audit and usage commands as a user runs them (design §6, §7, §11), against a database filled
 * with the library, and the audit/usage gateway tools (design §9) through a real `serve` process.
 * Assertions use exit codes and `--json` fields, never message text.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { AuditStore, type AuditDraft } from '../../src/audit/store.js';
import { chainHead } from '../../src/audit/verify.js';
import { UsageStore } from '../../src/metering/store.js';
import { openDatabase } from '../../src/store/db.js';
import { BIN, ROOT, errorCode, fixture, startGateway, tempDir, testConfig, writeConfig, type RunningGateway } from '../helpers/gateway.js';

const AUDIT_KEY = 'e2e-audit-hmac-key-0123456789abcdef';
const BASE = Date.parse('2026-03-01T10:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Newest mtime of the TypeScript sources. */
function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(p) : statSync(p).mtimeMs);
  }
  return newest;
}

beforeAll(() => {
  // The CLI runs from dist: build it when the sources are newer (as `npm test` does first).
  const built = path.join(ROOT, 'dist/mcp-gateway.js');
  if (!existsSync(built) || statSync(built).mtimeMs < newestSource(path.join(ROOT, 'src'))) {
    try {
      execFileSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], {
        cwd: ROOT,
        stdio: 'pipe',
      });
    } catch {
      // Type errors elsewhere still emit JavaScript; the tests below fail if the CLI is unusable.
    }
    execFileSync(process.execPath, [path.join(ROOT, 'scripts/bundle.mjs')], { cwd: ROOT, stdio: 'pipe' });
  }
}, 120_000);

function cli(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? ROOT,
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? ROOT, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000);
    proc.on('error', reject);
    proc.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const json = (run: Run) => JSON.parse(run.stdout) as Record<string, unknown>;

function draft(i: number): AuditDraft {
  return {
    ts: iso(BASE + i * 60_000),
    consumer_id: i % 2 ? 'alice' : 'bob',
    key_id: i % 2 ? 'ka' : 'kb',
    auth_method: 'api-key',
    roles: '["reader"]',
    server: i % 3 === 0 ? 'stripe' : 'github',
    kind: 'tool',
    name: i % 3 === 0 ? 'create_charge' : 'search',
    arguments: JSON.stringify({ q: `issue ${i}`, note: 'commas, "quotes"\nand a newline' }),
    result: JSON.stringify({ content: [{ type: 'text', text: `result ${i}` }] }),
    status: i % 5 === 0 ? 'denied' : 'ok',
    error: i % 5 === 0 ? 'policy "reader" does not allow it' : null,
    latency_ms: 10 * i,
    decided_by: 'reader#0',
  };
}

/** A folder with gateway.yaml (HMAC chain from $AUDIT_KEY) and a database of `rows` rows and usage. */
function gatewayDir(rows = 20): { dir: string; config: string; db: string } {
  const dir = tempDir('mcpgw-audit-');
  const config = writeConfig(dir, { database: './gateway.db', audit: { hmacKeyEnv: 'AUDIT_KEY' } });
  const file = path.join(dir, 'gateway.db');
  const db = openDatabase(file);
  const audits = new AuditStore(db, { hashChain: true, hmacKey: Buffer.from(AUDIT_KEY) });
  audits.checkMode();
  const usage = new UsageStore(db);
  const delta = (consumer_id: string, server: string, tool: string, calls: number, cost: number) => ({
    hour: '2026-03-01T10:00:00Z',
    consumer_id,
    server,
    tool,
    calls,
    errors: 1,
    denied: 0,
    rate_limited: 1,
    latency_ms: 100 * calls,
    cost,
  });
  db.transaction(() => {
    audits.appendInTransaction(Array.from({ length: rows }, (_, k) => draft(k + 1)));
    usage.addInTransaction([
      delta('alice', 'github', 'search', 3, 0.03),
      delta('bob', 'github', 'search', 2, 0.02),
      delta('bob', 'stripe', 'create_charge', 1, 0.5),
    ]);
  }).immediate();
  db.close();
  return { dir, config, db: file };
}

/** Runs a raw SQL statement on a database (tampering, as someone with the file would). */
function sql(file: string, statement: string): void {
  const db = openDatabase(file);
  db.prepare(statement).run();
  db.close();
}

const withKey = { env: { AUDIT_KEY } };

describe('audit verify and head', () => {
  test('a valid chain: exit 0 with rows and head; head prints seq:hash; the anchor holds', async () => {
    const g = gatewayDir(20);
    const verify = await cli(['audit', 'verify', '--config', g.config, '--json'], withKey);
    expect(verify.code).toBe(0);
    const head = await cli(['audit', 'head', '--config', g.config]);
    expect(head.code).toBe(0);
    const [seq, hash] = head.stdout.trim().split(':');
    expect(Number(seq)).toBe(20);
    expect(json(verify)).toMatchObject({ ok: true, rows: 20, head: { seq: 20, hash }, mode: 'hmac-sha256' });
    expect((await cli(['audit', 'verify', '--config', g.config, '--anchor', head.stdout.trim()], withKey)).code).toBe(0);
    expect((await cli(['audit', 'verify', '--config', g.config], withKey)).code).toBe(0);
  });

  test('a modified row: exit 1 naming its seq and "modified"', async () => {
    const g = gatewayDir(20);
    sql(g.db, "UPDATE audit_log SET status = 'ok', error = NULL WHERE seq = 10");
    const run = await cli(['audit', 'verify', '--config', g.config, '--json'], withKey);
    expect(run.code).toBe(1);
    expect(json(run)).toMatchObject({ ok: false, seq: 10, reason: 'modified' });
    expect((await cli(['audit', 'verify', '--config', g.config], withKey)).code).toBe(1);
  });

  test('a deleted row is "missing"; rows deleted from the end fail only against an anchor', async () => {
    const g = gatewayDir(20);
    const anchor = (await cli(['audit', 'head', '--config', g.config])).stdout.trim();
    sql(g.db, 'DELETE FROM audit_log WHERE seq = 7');
    expect(json(await cli(['audit', 'verify', '--config', g.config, '--json'], withKey))).toMatchObject({
      ok: false,
      seq: 8,
      reason: 'missing',
    });

    const t = gatewayDir(20);
    const tAnchor = (await cli(['audit', 'head', '--config', t.config, '--json'])).stdout;
    const { seq, hash } = JSON.parse(tAnchor) as { seq: number; hash: string };
    const db = openDatabase(t.db, { readonly: true });
    expect(`${seq}:${hash}`).toBe(`20:${chainHead(db).hash}`);
    db.close();
    sql(t.db, 'DELETE FROM audit_log WHERE seq > 15');
    expect((await cli(['audit', 'verify', '--config', t.config], withKey)).code).toBe(0);
    const run = await cli(['audit', 'verify', '--config', t.config, '--json', '--anchor', `${seq}:${hash}`], withKey);
    expect(run.code).toBe(1);
    expect(json(run)).toMatchObject({ ok: false, seq: 20, reason: 'truncated' });
    expect(anchor).toMatch(/^20:[0-9a-f]{64}$/);
  });

  test('the wrong HMAC key is "wrong-key"; no key at all is a config problem (exit 2)', async () => {
    const g = gatewayDir(5);
    const wrong = await cli(['audit', 'verify', '--config', g.config, '--json'], { env: { AUDIT_KEY: 'some-other-key-of-enough-length' } });
    expect(wrong.code).toBe(1);
    expect(json(wrong)).toMatchObject({ ok: false, seq: 1, reason: 'wrong-key' });
    expect((await cli(['audit', 'verify', '--config', g.config])).code).toBe(2);
  });

  test('a bad --anchor is exit 2', async () => {
    const g = gatewayDir(2);
    expect((await cli(['audit', 'verify', '--config', g.config, '--anchor', 'nonsense'], withKey)).code).toBe(2);
    expect((await cli(['audit', 'verify', '--config', g.config, '--anchor', '2:abc'], withKey)).code).toBe(2);
  });
});

describe('audit log, stats, export', () => {
  let g: ReturnType<typeof gatewayDir>;
  beforeAll(() => {
    g = gatewayDir(30);
  });

  test('audit log --json: newest first, filters, limit', async () => {
    const all = await cli(['audit', 'log', '--config', g.config, '--json', '--limit', '100']);
    expect(all.code).toBe(0);
    const entries = json(all)['entries'] as { seq: number; consumer_id: string; status: string; arguments: unknown }[];
    expect(entries.map((e) => e.seq)).toEqual(Array.from({ length: 30 }, (_, k) => 30 - k));
    expect(entries[0]!.arguments).toEqual({ q: 'issue 30', note: 'commas, "quotes"\nand a newline' });

    const bob = json(await cli(['audit', 'log', '--config', g.config, '--json', '--consumer', 'bob', '--limit', '3']))['entries'] as {
      seq: number;
    }[];
    expect(bob.map((e) => e.seq)).toEqual([30, 28, 26]);

    const denied = json(await cli(['audit', 'log', '--config', g.config, '--json', '--status', 'denied', '--server', 'github']))[
      'entries'
    ] as {
      seq: number;
    }[];
    expect(denied.map((e) => e.seq)).toEqual([25, 20, 10, 5]);

    const ranged = json(
      await cli([
        'audit',
        'log',
        '--config',
        g.config,
        '--json',
        '--tool',
        'create_charge',
        '--since',
        iso(BASE + 10 * 60_000),
        '--until',
        iso(BASE + 20 * 60_000),
      ]),
    )['entries'] as { seq: number }[];
    expect(ranged.map((e) => e.seq)).toEqual([18, 15, 12]);

    const table = await cli(['audit', 'log', '--config', g.config, '--limit', '2']);
    expect(table.code).toBe(0);
    expect(table.stdout.trim().split('\n')).toHaveLength(3);
  });

  test('bad arguments are exit 2', async () => {
    for (const args of [
      ['audit', 'log', '--since', 'yesterday'],
      ['audit', 'log', '--until', '2026-13-45'],
      ['audit', 'log', '--limit', '0'],
      ['audit', 'log', '--limit', 'ten'],
      ['audit', 'log', '--status', 'great'],
      ['audit', 'log', '--since', '2026-03-02', '--until', '2026-03-01'],
      ['audit', 'stats', '--since', 'soon'],
      ['audit', 'export', '--format', 'xml'],
      ['audit', 'export', '--out', '/no/such/folder/out.csv'],
      ['usage', '--by', 'color'],
      ['usage', '--since', 'nonsense'],
    ]) {
      const run = await cli([...args, '--config', g.config]);
      expect({ args, code: run.code }).toEqual({ args, code: 2 });
      expect(run.stderr.trim()).not.toBe('');
    }
  });

  test('audit stats --json', async () => {
    const run = await cli(['audit', 'stats', '--config', g.config, '--json']);
    expect(run.code).toBe(0);
    expect(json(run)).toMatchObject({
      total: 30,
      byStatus: [
        { status: 'ok', count: 24 },
        { status: 'denied', count: 6 },
      ],
      byServer: [
        { server: 'github', count: 20 },
        { server: 'stripe', count: 10 },
      ],
      latencyMs: { p50: 150, p95: 290, max: 300 },
    });
    expect((await cli(['audit', 'stats', '--config', g.config])).code).toBe(0);
  });

  test('audit export --format csv --out F', async () => {
    const out = path.join(g.dir, 'audit.csv');
    const run = await cli(['audit', 'export', '--config', g.config, '--format', 'csv', '--out', out]);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('');
    const text = readFileSync(out, 'utf8');
    expect(
      text.startsWith(
        'seq,ts,consumer_id,key_id,auth_method,roles,server,kind,name,arguments,result,status,error,latency_ms,decided_by,prev_hash,hash,method,meta\r\n',
      ),
    ).toBe(true);
    // Each record holds its prev_hash and hash side by side; fields holding newlines are quoted, so count those.
    expect(text.match(/,[0-9a-f]{64},[0-9a-f]{64},/g)).toHaveLength(30);
    expect(text).toContain('"{""q"":""issue 1"",""note"":""commas, \\""quotes\\""\\nand a newline""}"');

    const since = await cli(['audit', 'export', '--config', g.config, '--since', iso(BASE + 25 * 60_000)]);
    expect(since.code).toBe(0);
    const lines = since.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { seq: number; hash: string });
    expect(lines.map((l) => l.seq)).toEqual([25, 26, 27, 28, 29, 30]);
  });

  test('usage --json --by tool, and the table with a total', async () => {
    const run = await cli(['usage', '--config', g.config, '--json', '--by', 'tool']);
    expect(run.code).toBe(0);
    expect(json(run)).toMatchObject({
      bucket: 'hour',
      // Without --since: from the first hour counted.
      from: '2026-03-01T10:00:00.000Z',
      since: null,
      by: 'tool',
      rows: [
        { server: 'github', tool: 'search', calls: 5, errors: 2, rate_limited: 2, avg_latency_ms: 100, cost: 0.05 },
        { server: 'stripe', tool: 'create_charge', calls: 1, errors: 1, cost: 0.5 },
      ],
      total: { calls: 6, errors: 3, rate_limited: 3, cost: 0.55 },
    });
    const bob = json(await cli(['usage', 'bob', '--config', g.config, '--json']));
    expect(bob['rows']).toEqual([expect.objectContaining({ consumer: 'bob', calls: 3 })]);
    const table = await cli(['usage', '--config', g.config, '--by', 'server']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^TOTAL\s+6\s/m);
  });

  test('usage --since 1m counts the current hour whole: --json gives the bucket bounds, the table says so', async () => {
    // Counters of one consumer (gatewayDir has others, in 2026-03) for the current hour and one two
    // hours before, as the gateway writes them.
    const hourMs = 3_600_000;
    // Not across an hour boundary between writing the rows and running the commands.
    if (hourMs - (Date.now() % hourMs) < 15_000) await new Promise((r) => setTimeout(r, hourMs - (Date.now() % hourMs) + 100));
    const start = Math.floor(Date.now() / hourMs) * hourMs;
    const u = gatewayDir(1);
    const db = openDatabase(u.db);
    const at = (ms: number) => `${iso(ms).slice(0, 13)}:00:00Z`;
    const delta = (hour: string, calls: number, latency_ms: number, latency_max_ms: number) => ({
      hour,
      consumer_id: 'dana',
      server: 'github',
      tool: 'search',
      calls,
      errors: 0,
      denied: 0,
      rate_limited: 0,
      latency_ms,
      latency_max_ms,
      cost: 0.002 * calls,
    });
    // The case: 5.357 ms, one call, was shown as avg 5.40 and max 5.36.
    db.transaction(() =>
      new UsageStore(db).addInTransaction([delta(at(start), 1, 5.357, 5.357), delta(at(start - 2 * hourMs), 5, 50, 10)]),
    ).immediate();
    db.close();

    const run = await cli(['usage', 'dana', '--config', u.config, '--since', '1m', '--json']);
    expect(run.code).toBe(0);
    const report = json(run);
    // The start of the hour "1m ago" falls inside (this one, unless run in an hour's first minute).
    const since = Date.parse(report['since'] as string);
    expect(report).toMatchObject({
      bucket: 'hour',
      from: iso(since - (since % hourMs)),
      to: iso(start + hourMs),
      until: null,
      rows: [{ consumer: 'dana', calls: 1, avg_latency_ms: 5.36, max_latency_ms: 5.36, cost: 0.002 }],
      total: { calls: 1 },
    });
    // Every number in the JSON is rounded (no float noise such as 22.448361999999634).
    expect(run.stdout.match(/\d+\.\d{7,}/)).toBeNull();

    const table = await cli(['usage', 'dana', '--config', u.config, '--since', '1m']);
    expect(table.code).toBe(0);
    const lines = table.stdout.split('\n');
    expect(lines[0]).toMatch(/^usage from .* UTC \(counted per hour\)$/);
    expect(lines[0]).toContain(`${iso(start + hourMs).slice(11, 16)} UTC (counted per hour)`);
    expect(lines[1]).toMatch(/^--since .* counted whole$/);
    expect(table.stdout).toMatch(/^dana\s+1\s+0\s+0\s+0\s+5\.36\s+5\.36\s+0\.002000$/m);

    // Without --since, both hours; the earlier one starts the range.
    const all = json(await cli(['usage', 'dana', '--config', u.config, '--json']));
    expect(all).toMatchObject({ from: iso(start - 2 * hourMs), to: iso(start + hourMs), total: { calls: 6 } });
  });

  test('a database file that is not SQLite, or is missing, is exit 2 naming the file', async () => {
    const dir = tempDir('mcpgw-audit-');
    const config = writeConfig(dir, { database: './gateway.db' });
    for (const args of [['audit', 'log'], ['audit', 'verify'], ['usage']]) {
      const missing = await cli([...args, '--config', config]);
      expect(missing.code).toBe(2);
    }
    writeFileSync(path.join(dir, 'gateway.db'), 'this is a text file, not a database\n'.repeat(200));
    for (const args of [['audit', 'log'], ['audit', 'verify'], ['audit', 'head'], ['audit', 'export'], ['usage']]) {
      const run = await cli([...args, '--config', config]);
      expect({ args, code: run.code }).toEqual({ args, code: 2 });
      expect(run.stderr).toContain(path.join(dir, 'gateway.db'));
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
    }
  });
});

describe('gateway tools', () => {
  const SELF_KEY = 'gw_selfkey1_ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkjih';
  let dir: string;
  let admin: RunningGateway;

  const config = () =>
    testConfig({
      servers: [{ id: 'echo', ...fixture('echo.js') }],
      auth: {
        apiKeys: {
          static: [
            { id: 'testkey1', consumerId: 'tester', roles: ['admin'], key: '${TEST_KEY}' },
            { id: 'selfkey1', consumerId: 'ana', roles: ['self'], key: '${SELF_KEY}' },
          ],
        },
      },
      policies: [
        { id: 'admin', roles: ['admin'], rules: [{ action: 'allow' }, { server: 'gateway', action: 'allow' }] },
        // docs/audit.md: a consumer may read only its own usage.
        {
          id: 'own-usage',
          roles: ['self'],
          rules: [{ server: 'gateway', tool: 'usage', action: 'allow', when: { 'args.consumerId': { eq: '${consumer.id}' } } }],
        },
      ],
      audit: { hmacKeyEnv: 'AUDIT_KEY' },
    });

  beforeAll(async () => {
    dir = tempDir('mcpgw-audit-tools-');
    admin = await startGateway({ config: config(), dir, env: { AUDIT_KEY, SELF_KEY } });
  });
  afterAll(async () => {
    await admin?.close();
  });

  const call = (g: RunningGateway, name: string, args: Record<string, unknown> = {}) => g.client.callTool({ name, arguments: args });
  const structured = (r: unknown) => (r as { structuredContent: Record<string, unknown> }).structuredContent;

  test('audit_log, audit_verify, audit_stats and usage over a live gateway', async () => {
    for (let i = 0; i < 3; i++) await call(admin, 'echo__echo', { message: `hello ${i}` });

    const log = await call(admin, 'audit_log', { server: 'echo', limit: 2 });
    expect(log.isError).toBeFalsy();
    const entries = structured(log)['entries'] as { name: string; arguments: unknown; consumer_id: string; status: string }[];
    expect(entries).toHaveLength(2);
    expect(entries[0]).toMatchObject({ name: 'echo', consumer_id: 'tester', status: 'ok', arguments: { message: 'hello 2' } });

    const verify = structured(await call(admin, 'audit_verify'));
    expect(verify).toMatchObject({ ok: true, mode: 'hmac-sha256' });
    const head = verify['head'] as { seq: number; hash: string };
    expect(structured(await call(admin, 'audit_verify', { anchor: `${head.seq}:${head.hash}` }))).toMatchObject({ ok: true });
    expect(structured(await call(admin, 'audit_verify', { anchor: `${head.seq}:${'0'.repeat(64)}` }))).toMatchObject({
      ok: false,
      seq: head.seq,
      reason: 'anchor-mismatch',
    });

    const stats = structured(await call(admin, 'audit_stats', { since: '1h' }));
    expect(stats['total']).toBeGreaterThanOrEqual(3);

    // Counters are held in memory up to a second; the tool writes them before reading.
    const hourEnd = (ms: number) => ms - (ms % 3_600_000) + 3_600_000;
    const before = hourEnd(Date.now());
    const usage = structured(await call(admin, 'usage', { by: 'tool', since: '1m' }));
    const after = hourEnd(Date.now());
    expect(usage['rows']).toContainEqual(expect.objectContaining({ server: 'echo', tool: 'echo', calls: 3 }));
    // The hour bounds counted: from the start of the hour "1m ago" falls inside, to the end of this one.
    const since = Date.parse(usage['since'] as string);
    expect(usage).toMatchObject({ bucket: 'hour', from: iso(hourEnd(since) - 3_600_000) });
    expect([iso(before), iso(after)]).toContain(usage['to']);
  });

  test('bad arguments are INVALID_ARGUMENTS', async () => {
    expect(errorCode(await call(admin, 'audit_log', { since: 'last tuesday' }))).toBe('INVALID_ARGUMENTS');
    expect(errorCode(await call(admin, 'audit_log', { limit: 501 }))).toBe('INVALID_ARGUMENTS');
    expect(errorCode(await call(admin, 'audit_log', { colour: 'red' }))).toBe('INVALID_ARGUMENTS');
    expect(errorCode(await call(admin, 'audit_verify', { anchor: '12' }))).toBe('INVALID_ARGUMENTS');
    expect(errorCode(await call(admin, 'usage', { until: 'never' }))).toBe('INVALID_ARGUMENTS');
    expect(errorCode(await call(admin, 'usage', { by: 'color' }))).toBe('INVALID_ARGUMENTS');
  });

  test('the own-usage policy: a consumer reads its own usage only', async () => {
    const self = await startGateway({ config: config(), dir, env: { AUDIT_KEY, SELF_KEY }, key: SELF_KEY });
    try {
      const names = (await self.client.listTools()).tools.map((t) => t.name);
      expect(names).toContain('usage');
      expect(names).not.toContain('audit_log');
      expect((await call(self, 'usage', { consumerId: 'ana' })).isError).toBeFalsy();
      expect(errorCode(await call(self, 'usage', { consumerId: 'tester' }))).toBe('FORBIDDEN');
      expect(errorCode(await call(self, 'usage', {}))).toBe('FORBIDDEN');
      // A tool it may never use is answered as one that does not exist.
      expect(errorCode(await call(self, 'audit_log', {}))).toBe('UNKNOWN_TOOL');
    } finally {
      await self.close();
    }
  });
});
