/**
 * The audit log's promises (design §6, docs/audit.md "Durability"), through real `mcp-gateway
 * serve` processes, checked by reading the SQLite file itself:
 *
 * - every outcome of a request is one row, with the right status, target, decision and error;
 * - a reply an agent received is never lost, even when the gateway is killed with SIGKILL;
 * - several gateway processes on one file keep one gapless, valid chain and exact usage counters;
 * - secrets (injected env values, redactKeys values, the caller's key) never reach the file's bytes;
 * - a file that is not a database, or cannot be written, stops `serve` with a one-line reason;
 * - at the size limit (`limits.maxDatabaseBytes`) the gateway records what it forwarded, refuses
 *   (and does not forward) the rest, and keeps running — also with two gateways on the file;
 * - on a disk that is really full, and while another process holds the write lock, it fails
 *   closed: no result without its row, and no new call forwarded until it can write again.
 *
 * Calls are told apart by a unique argument; counter.js logs every call it receives, which shows
 * what was forwarded. The database is read read-only beside the gateways, as `audit verify` does.
 */
import { execFileSync, spawn, type SpawnOptions } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, test } from 'vitest';
import { verifyChain } from '../../src/audit/verify.js';
import {
  BIN,
  TEST_KEY,
  alive,
  errorCode,
  fixture,
  startGateway,
  tempDir,
  testConfig,
  textOf,
  waitFor,
  writeConfig,
  type RunningGateway,
  type Obj,
  call,
  toolNames,
  waitListed,
} from '../helpers/gateway.js';

interface AuditRowRead {
  seq: number;
  ts: string;
  consumer_id: string | null;
  key_id: string | null;
  auth_method: string | null;
  roles: string | null;
  server: string | null;
  kind: string;
  name: string;
  arguments: string | null;
  result: string | null;
  status: string;
  error: string | null;
  latency_ms: number;
  decided_by: string | null;
  prev_hash: string;
  hash: string;
}

/** Opens the gateway's database read-only (as `audit verify` does); works beside live gateways. */
/** The `message` argument of every call the counter fixture received (its calls.log). */
function forwardedMessages(markers: string): string[] {
  return readFileSync(path.join(markers, 'calls.log'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { args: { message: string } }).args.message);
}
function openRo(file: string): Database.Database {
  return new Database(file, { readonly: true, fileMustExist: true, timeout: 10_000 });
}

function readRows(file: string): AuditRowRead[] {
  const db = openRo(file);
  try {
    return db.prepare('SELECT * FROM audit_log ORDER BY seq').all() as AuditRowRead[];
  } finally {
    db.close();
  }
}

/** The chain verifies and seq is 1..N without gaps; returns N. */
function expectValidChain(file: string): number {
  const db = openRo(file);
  try {
    const result = verifyChain(db, { hmacKey: null });
    expect(result, JSON.stringify(result)).toMatchObject({ ok: true });
    const { n, lo, hi } = db.prepare('SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi FROM audit_log').get() as {
      n: number;
      lo: number | null;
      hi: number | null;
    };
    if (n > 0) {
      expect(lo).toBe(1);
      expect(hi).toBe(n);
    }
    expect(result.ok && result.rows).toBe(n);
    return n;
  } finally {
    db.close();
  }
}

/** The `message` argument of a recorded call, if it has one. */
function recordedMessage(row: AuditRowRead): string | undefined {
  if (row.arguments === null) return undefined;
  const args = JSON.parse(row.arguments) as Obj;
  return typeof args['message'] === 'string' ? args['message'] : undefined;
}

function recordedArg(row: AuditRowRead, key: string): unknown {
  return row.arguments === null ? undefined : (JSON.parse(row.arguments) as Obj)[key];
}

interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the built CLI with only the given environment; stdin stays open unless `input` is given. */
function runCli(
  args: string[],
  env: Record<string, string> = {},
  options: { input?: string; spawn?: SpawnOptions; ms?: number } = {},
): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', TEST_KEY, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
      ...options.spawn,
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.ms ?? 30_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    if (options.input !== undefined) child.stdin!.end(options.input);
  });
}

/** Closes a gateway cleanly (stdin closed: it commits what it holds) and waits for its exit. */
async function stop(gw: RunningGateway): Promise<void> {
  await gw.close();
  await waitFor(() => !alive(gw.pid), 15_000, `gateway ${gw.pid} to exit`);
}

/** Runs `total` calls of `fn(i)` with at most `concurrency` in flight. */
async function pool(total: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await fn(next++);
    }),
  );
}

const running: RunningGateway[] = [];
afterAll(async () => {
  for (const gw of running) {
    if (alive(gw.pid)) await gw.close().catch(() => {});
  }
});

async function start(options: Parameters<typeof startGateway>[0]): Promise<RunningGateway> {
  const gw = await startGateway(options);
  running.push(gw);
  return gw;
}

// ---------------------------------------------------------------------------------------------

describe('every outcome is one row', () => {
  test('ok, error, denied, rate_limited, invalid, timeout, unavailable, cancelled, unauthenticated', async () => {
    const dir = tempDir('mcpgw-statuses-');
    const config = testConfig({
      servers: [
        { id: 'echo', ...fixture('echo.js') },
        { id: 'slow', ...fixture('slow.js'), timeoutMs: 500 },
        { id: 'slow2', ...fixture('slow.js') },
        { id: 'crash', ...fixture('crash.js'), restart: { maxRestarts: 5, windowMs: 60_000, backoffMs: 50, maxBackoffMs: 100 } },
      ],
      policies: [
        { id: 'admin', roles: ['admin'], rules: [{ action: 'allow' }, { server: 'gateway', action: 'allow' }] },
        { id: 'no-throw', roles: ['admin'], rules: [{ server: 'echo', tool: 'throw', action: 'forbid' }] },
      ],
      rateLimit: { enabled: true, defaultPerMinute: 100_000, rules: [{ server: 'echo', tool: 'add', perMinute: 1 }] },
    });
    const configFile = writeConfig(dir, config);
    const created = await runCli(['keys', 'create', 'status-agent', 'agent', 'admin', '--json', '--config', configFile], {}, { input: '' });
    expect(created.code, created.stderr).toBe(0);
    const key = JSON.parse(created.stdout) as { key: string; id: string };

    const gw = await start({ config, dir, key: key.key });
    const db = path.join(dir, 'gateway.db');
    await waitListed(gw.client, ['echo__echo', 'slow__hang', 'slow2__sleep', 'crash__crash']);

    type Expected = {
      status: string;
      server: string | null;
      name: string;
      decided: string | RegExp | undefined;
      error: RegExp | null;
      kind?: string;
    };
    const expected: Expected[] = [];
    const allowed = 'admin#0';

    // ok
    expect(textOf(await call(gw.client, 'echo__echo', { message: 'hello' }))).toBe('hello');
    expected.push({ status: 'ok', server: 'echo', name: 'echo', decided: allowed, error: null });
    // error: the child's own isError result
    const failed = await call(gw.client, 'echo__fail', { message: 'it failed on purpose' });
    expect(failed['isError']).toBe(true);
    expect(errorCode(failed)).toBeUndefined();
    expected.push({ status: 'error', server: 'echo', name: 'fail', decided: allowed, error: /^it failed on purpose$/ });
    // denied: a forbid rule beats the allow (a tool never allowed is answered as unknown; the row says why)
    expect(errorCode(await call(gw.client, 'echo__throw', { message: 'x' }))).toBe('UNKNOWN_TOOL');
    expected.push({ status: 'denied', server: 'echo', name: 'throw', decided: 'no-throw#0', error: /FORBIDDEN/ });
    // rate_limited: the rule's bucket holds one call a minute
    expect(textOf(await call(gw.client, 'echo__add', { a: 1, b: 2 }))).toBe('3');
    expected.push({ status: 'ok', server: 'echo', name: 'add', decided: allowed, error: null });
    expect(errorCode(await call(gw.client, 'echo__add', { a: 1, b: 2 }))).toBe('RATE_LIMITED');
    expected.push({ status: 'rate_limited', server: 'echo', name: 'add', decided: /^ratelimit:rule0:/, error: /RATE_LIMITED/ });
    // invalid: an unknown tool of a known server, a name no server has, bad arguments
    expect(errorCode(await call(gw.client, 'echo__nosuch', {}))).toBe('UNKNOWN_TOOL');
    expected.push({ status: 'invalid', server: 'echo', name: 'nosuch', decided: allowed, error: /UNKNOWN_TOOL/ });
    expect(errorCode(await call(gw.client, 'nosuchserver__x', {}))).toBe('UNKNOWN_TOOL');
    // No policy decides a name that matches no server (decided_by is not asserted here).
    expected.push({ status: 'invalid', server: null, name: 'nosuchserver__x', decided: undefined, error: /UNKNOWN_TOOL/ });
    expect(errorCode(await call(gw.client, 'echo__echo', { message: 42 }))).toBe('INVALID_ARGUMENTS');
    expected.push({ status: 'invalid', server: 'echo', name: 'echo', decided: allowed, error: /INVALID_ARGUMENTS/ });
    // timeout: the child never answers within timeoutMs
    expect(errorCode(await call(gw.client, 'slow__hang', {}))).toBe('TIMEOUT');
    expected.push({ status: 'timeout', server: 'slow', name: 'hang', decided: allowed, error: /TIMEOUT/ });
    // unavailable: the child exits during the call
    expect(errorCode(await call(gw.client, 'crash__crash', {}))).toBe('SERVER_UNAVAILABLE');
    expected.push({ status: 'unavailable', server: 'crash', name: 'crash', decided: allowed, error: /SERVER_UNAVAILABLE/ });
    // cancelled: the agent aborts its request
    const abort = new AbortController();
    const cancelled = call(gw.client, 'slow2__sleep', { ms: 30_000 }, { signal: abort.signal });
    setTimeout(() => abort.abort('the agent changed its mind'), 300);
    await expect(cancelled).rejects.toThrow();
    await waitFor(() => readRows(db).some((r) => r.name === 'sleep'), 15_000, 'the cancelled call to be recorded');
    expected.push({ status: 'cancelled', server: 'slow2', name: 'sleep', decided: allowed, error: /CANCELLED/ });
    // a gateway tool: kind admin, server gateway
    const servers = await call(gw.client, 'list_servers', {});
    expect(errorCode(servers)).toBeUndefined();
    expected.push({ status: 'ok', server: 'gateway', name: 'list_servers', decided: /^admin#\d$/, error: null, kind: 'admin' });
    // unauthenticated: the session's key is revoked by the CLI; the next call is refused
    const revoked = await runCli(['keys', 'revoke', key.id, '--config', configFile], {}, { input: '' });
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(errorCode(await call(gw.client, 'echo__echo', { message: 'after revoke' }))).toBe('UNAUTHENTICATED');
    expected.push({ status: 'unauthenticated', server: 'echo', name: 'echo', decided: 'identity', error: /UNAUTHENTICATED/ });

    const rows = await waitFor(
      () => {
        const r = readRows(db);
        return r.length >= expected.length ? r : undefined;
      },
      10_000,
      'every row',
    );
    expect(rows.map((r) => r.status)).toEqual(expected.map((e) => e.status));
    rows.forEach((row, i) => {
      const want = expected[i]!;
      const where = `row ${row.seq}: ${JSON.stringify(row)}`;
      expect(row.kind, where).toBe(want.kind ?? 'tool');
      expect(row.server, where).toBe(want.server);
      expect(row.name, where).toBe(want.name);
      expect(row.consumer_id, where).toBe('agent');
      expect(row.key_id, where).toBe(key.id);
      expect(row.auth_method, where).toBe('api-key');
      expect(JSON.parse(row.roles!), where).toEqual(['admin']);
      expect(row.ts, where).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(Number.isInteger(row.latency_ms) && row.latency_ms >= 0, where).toBe(true);
      if (typeof want.decided === 'string') expect(row.decided_by, where).toBe(want.decided);
      else if (want.decided instanceof RegExp) expect(row.decided_by, where).toMatch(want.decided);
      if (want.error === null) expect(row.error, where).toBeNull();
      else expect(row.error, where).toMatch(want.error);
      expect(row.arguments, where).not.toBeNull();
    });
    // The timeout row's latency covers the wait (a lower bound only).
    expect(rows.find((r) => r.status === 'timeout')!.latency_ms).toBeGreaterThanOrEqual(450);
    // Results are recorded for what the child answered; refusals have none.
    expect(JSON.parse(rows[0]!.result!)).toMatchObject({ content: [{ type: 'text', text: 'hello' }] });
    for (const row of rows) {
      if (['denied', 'rate_limited', 'invalid', 'timeout', 'unavailable', 'cancelled', 'unauthenticated'].includes(row.status)) {
        expect(row.result, `row ${row.seq}`).toBeNull();
      }
    }
    expect(expectValidChain(db)).toBe(expected.length);
  });
});

// ---------------------------------------------------------------------------------------------

describe('a reply the agent saw is never lost', () => {
  test('SIGKILL mid-stream, three times on one database: every answered call has its committed row', async () => {
    const dir = tempDir('mcpgw-sigkill-');
    const db = path.join(dir, 'gateway.db');
    const config = testConfig({ servers: [{ id: 'echo', ...fixture('echo.js') }] });
    const answered: string[] = [];
    let rowsBefore = 0;

    for (let round = 0; round < 3; round++) {
      const gw = await start({ config, dir });
      await waitListed(gw.client, ['echo__echo']);
      const thisRound: string[] = [];
      let killed = false;
      let next = 0;
      const killAfter = 250 + round * 100;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (!killed) {
            const message = `r${round}-m${next++}`;
            let result: Obj;
            try {
              result = await call(gw.client, 'echo__echo', { message }, { timeout: 30_000 });
            } catch {
              return; // the connection died with the gateway
            }
            if (textOf(result) !== message) throw new Error(`unexpected reply to ${message}: ${JSON.stringify(result)}`);
            thisRound.push(message);
            if (!killed && thisRound.length >= killAfter) {
              killed = true;
              process.kill(gw.pid, 'SIGKILL');
            }
          }
        }),
      );
      await waitFor(() => !alive(gw.pid), 10_000, 'the killed gateway to be gone');
      expect(killed).toBe(true);
      answered.push(...thisRound);

      const rows = readRows(db);
      const recorded = new Set(rows.map(recordedMessage));
      const lost = thisRound.filter((m) => !recorded.has(m));
      expect(lost, `answered but not recorded in round ${round}`).toEqual([]);
      // Each message was recorded once; a call may be recorded without its reply having arrived.
      const roundRows = rows.filter((r) => recordedMessage(r)?.startsWith(`r${round}-`));
      expect(new Set(roundRows.map(recordedMessage)).size).toBe(roundRows.length);
      expect(roundRows.length).toBeGreaterThanOrEqual(thisRound.length);
      expect(roundRows.every((r) => r.status === 'ok')).toBe(true);
      // The chain continues across the crash: still valid and gapless.
      const n = expectValidChain(db);
      expect(n).toBeGreaterThan(rowsBefore);
      rowsBefore = n;
    }
    const recorded = new Set(readRows(db).map(recordedMessage));
    expect(answered.filter((m) => !recorded.has(m))).toEqual([]);
    expect(answered.length).toBeGreaterThanOrEqual(250 + 350 + 450);
  });
});

// ---------------------------------------------------------------------------------------------

describe('several gateway processes on one database', () => {
  test('three gateways calling at once keep one gapless chain and exact usage counters', async () => {
    const dir = tempDir('mcpgw-three-');
    const db = path.join(dir, 'gateway.db');
    const config = testConfig({ servers: [{ id: 'echo', ...fixture('echo.js') }] });
    writeConfig(dir, config);
    const gateways = await Promise.all([0, 1, 2].map(() => start({ config, dir })));
    await Promise.all(gateways.map((gw) => waitListed(gw.client, ['echo__echo'])));

    const PER = 300;
    await Promise.all(
      gateways.map((gw, g) =>
        pool(PER, 8, async (i) => {
          const message = `g${g}-m${i}`;
          expect(textOf(await call(gw.client, 'echo__echo', { message }))).toBe(message);
        }),
      ),
    );
    await Promise.all(gateways.map(stop));

    const total = 3 * PER;
    expect(expectValidChain(db)).toBe(total);
    const rows = readRows(db);
    const messages = rows.map(recordedMessage);
    expect(new Set(messages).size).toBe(total);
    for (let g = 0; g < 3; g++) for (let i = 0; i < PER; i++) expect(messages).toContain(`g${g}-m${i}`);
    const ro = openRo(db);
    try {
      const usage = ro.prepare('SELECT sum(calls) AS calls, sum(errors) AS errors FROM usage_hourly').get() as {
        calls: number;
        errors: number;
      };
      expect(usage).toEqual({ calls: total, errors: 0 });
      // One ballast, however many gateways laid it down at once.
      const ballast = ro.prepare('SELECT count(*) AS n FROM audit_ballast').get() as { n: number };
      expect(ballast.n).toBe(16);
    } finally {
      ro.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('secrets never reach the database file', () => {
  const INJECTED = 'injected-secret-abc123';
  const ARGUMENT = 'argument-secret-xyz789';

  function fileBytes(db: string): { files: string[]; bytes: Buffer } {
    const files = [db, `${db}-wal`, `${db}-shm`].filter((f) => existsSync(f));
    return { files, bytes: Buffer.concat(files.map((f) => readFileSync(f))) };
  }

  function expectNoSecret(db: string, marker: string): string[] {
    const { files, bytes } = fileBytes(db);
    // A control: what was recorded is in these bytes, so the search looks in the right place.
    expect(bytes.includes(Buffer.from(marker)), `${marker} in ${files.join(', ')}`).toBe(true);
    for (const secret of [INJECTED, ARGUMENT, TEST_KEY]) {
      expect(bytes.includes(Buffer.from(secret)), `${secret} found in ${files.join(', ')}`).toBe(false);
    }
    return files;
  }

  test('injected env values, redactKeys values and the caller key are redacted in the file bytes', async () => {
    const dir = tempDir('mcpgw-redact-');
    const db = path.join(dir, 'gateway.db');
    const config = testConfig({ servers: [{ id: 'echo', ...fixture('echo.js'), env: { SECRET_TOKEN: INJECTED } }] });
    const gw = await start({ config, dir });
    await waitListed(gw.client, ['echo__echo']);

    // Extra keys are accepted by echo's schema (no additionalProperties: false); the child drops them.
    expect(textOf(await call(gw.client, 'echo__echo', { message: 'marker-one', password: ARGUMENT }))).toBe('marker-one');
    expect(
      textOf(
        await call(gw.client, 'echo__echo', {
          message: 'marker-nested',
          nested: { apiKey: ARGUMENT, list: [{ Authorization: `Bearer ${ARGUMENT}` }, { 'x-access-token': ARGUMENT }] },
        }),
      ),
    ).toBe('marker-nested');
    // The child returns the injected secret: the agent and the log see it redacted.
    expect(textOf(await call(gw.client, 'echo__env', { name: 'SECRET_TOKEN' }))).toBe('[REDACTED:SECRET_TOKEN]');
    // The agent itself sends secrets in values (not under a redacted key): argument and result.
    const echoedInjected = await call(gw.client, 'echo__echo', { message: `the token is ${INJECTED}` });
    expect(textOf(echoedInjected)).toBe('the token is [REDACTED:SECRET_TOKEN]');
    const echoedKey = await call(gw.client, 'echo__echo', { message: `my key is ${TEST_KEY}` });
    expect(textOf(echoedKey)).not.toContain(TEST_KEY);
    // An error carrying the secret, and the `call` entry point with a redacted key.
    expect((await call(gw.client, 'echo__fail', { message: `failed near ${INJECTED}` }))['isError']).toBe(true);
    expect(textOf(await call(gw.client, 'call', { tool: 'echo__echo', arguments: { message: 'via-call', token: ARGUMENT } }))).toBe(
      'via-call',
    );

    // While the gateway runs, the rows are in the WAL.
    await waitFor(() => readRows(db).length === 7, 10_000, 'seven rows');
    const liveFiles = expectNoSecret(db, 'marker-nested');
    expect(liveFiles).toContain(`${db}-wal`);

    const rows = readRows(db);
    const bySeq = (seq: number) => rows.find((r) => r.seq === seq)!;
    expect(recordedArg(bySeq(1), 'password')).toBe('[REDACTED]');
    expect(recordedArg(bySeq(2), 'nested')).toEqual({
      apiKey: '[REDACTED]',
      list: [{ Authorization: '[REDACTED]' }, { 'x-access-token': '[REDACTED]' }],
    });
    expect(bySeq(3).result).toContain('[REDACTED:SECRET_TOKEN]');
    expect(recordedArg(bySeq(4), 'message')).toBe('the token is [REDACTED:SECRET_TOKEN]');
    expect(bySeq(4).result).toContain('the token is [REDACTED:SECRET_TOKEN]');
    expect(recordedArg(bySeq(5), 'message')).toMatch(/^my key is \[REDACTED:[^\]]+\]$/);
    expect(bySeq(6).error).toBe('failed near [REDACTED:SECRET_TOKEN]');
    expect(bySeq(7).server).toBe('echo');
    expect(bySeq(7).name).toBe('echo');
    expect(recordedArg(bySeq(7), 'token')).toBe('[REDACTED]');
    expect(rows.map((r) => r.status)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'error', 'ok']);

    // After a clean stop the WAL is checkpointed into the file: still nothing.
    await stop(gw);
    expectNoSecret(db, 'marker-nested');
    expectValidChain(db);
  });
});

// ---------------------------------------------------------------------------------------------

describe('unusable database files stop `serve` with a one-line reason', () => {
  const isRoot = process.getuid?.() === 0;
  const restore: (() => void)[] = [];
  afterAll(() => {
    for (const undo of restore.reverse()) undo();
  });

  /** The reason `serve` printed: its stderr lines that are not log lines. */
  function reasonLines(stderr: string): string[] {
    return stderr.split('\n').filter((l) => l.trim() !== '' && !/^\d{4}-\d\d-\d\dT\S+ mcp-gateway (debug|info|warn|error) /.test(l));
  }

  test('a file that is not SQLite: exit 2 naming the file, the file untouched', async () => {
    const dir = tempDir('mcpgw-notdb-');
    const file = path.join(dir, 'notes.db');
    const content = 'these are my notes, not a database\n'.repeat(200);
    writeFileSync(file, content);
    const configFile = writeConfig(dir, testConfig({ database: './notes.db', servers: [{ id: 'echo', ...fixture('echo.js') }] }));
    // stdin stays open: only the bad file can make it stop.
    const exit = await runCli(['serve', '--config', configFile], { MCP_GATEWAY_API_KEY: TEST_KEY });
    expect(exit.code, exit.stderr).toBe(2);
    expect(exit.stdout).toBe('');
    const reason = reasonLines(exit.stderr);
    expect(reason, exit.stderr).toHaveLength(1);
    expect(reason[0]).toContain(file);
    expect(reason[0]).toMatch(/not an mcp-gateway database/);
    expect(readFileSync(file, 'utf8')).toBe(content);
    expect(existsSync(`${file}-wal`)).toBe(false);
  });

  // Root ignores file modes, so as root `serve` runs as the unprivileged user "nobody" (uid/gid
  // 65534); the folder tree up to the database is made readable for it.
  test('a database that cannot be written: exit non-zero naming the file, nothing forwarded', async () => {
    const dir = tempDir('mcpgw-readonly-');
    const markers = tempDir('mcpgw-readonly-markers-');
    const file = path.join(dir, 'gateway.db');
    const config = testConfig({ servers: [{ id: 'counter', ...fixture('counter.js'), env: { FIXTURE_MARKER_DIR: markers } }] });
    // One run creates the database (with a row), then the file and its folder are made read-only.
    const first = await start({ config, dir });
    await waitListed(first.client, ['counter__count']);
    await call(first.client, 'counter__count', { n: 1 });
    await stop(first);
    const calls = path.join(markers, 'calls.log');
    expect(readFileSync(calls, 'utf8').trim().split('\n')).toHaveLength(1);
    expect(existsSync(`${file}-wal`)).toBe(false);
    const before = readFileSync(file);

    chmodSync(file, 0o444);
    chmodSync(dir, 0o555);
    restore.push(
      () => chmodSync(dir, 0o700),
      () => chmodSync(file, 0o600),
    );
    const asUser: SpawnOptions = isRoot ? { uid: 65534, gid: 65534 } : {};

    const exit = await runCli(['serve', '--config', path.join(dir, 'gateway.yaml')], { MCP_GATEWAY_API_KEY: TEST_KEY }, { spawn: asUser });
    expect(exit.code, exit.stderr).not.toBe(0);
    expect(exit.code).not.toBeNull(); // it exited by itself, it was not killed by the time limit
    const reason = reasonLines(exit.stderr);
    expect(reason, exit.stderr).toHaveLength(1);
    expect(reason[0]).toContain(file);
    expect(reason[0]).toMatch(/cannot be written|read-?only|permission/i);
    expect(readFileSync(file).equals(before)).toBe(true);
    // No child was started and nothing forwarded.
    expect(readFileSync(calls, 'utf8').trim().split('\n')).toHaveLength(1);
  });
});

// ---------------------------------------------------------------------------------------------

describe('the database at its size limit', () => {
  test('forwarded calls are recorded, new ones refused and not forwarded; the gateway keeps running', async () => {
    const dir = tempDir('mcpgw-full-');
    const markers = tempDir('mcpgw-full-markers-');
    const db = path.join(dir, 'gateway.db');
    const LIMIT = 1_572_864; // 1.5 MB: 1 MB of ballast and room for a few dozen large rows
    const config = testConfig({
      servers: [
        { id: 'echo', ...fixture('echo.js') },
        { id: 'counter', ...fixture('counter.js'), env: { FIXTURE_MARKER_DIR: markers } },
      ],
      audit: { maxRecordBytes: 16_384 },
      limits: { maxDatabaseBytes: LIMIT },
    });
    const gw = await start({ config, dir });
    await waitListed(gw.client, ['echo__big', 'counter__echo']);

    type Outcome = 'ok' | 'refused';
    const outcomes = new Map<string, Outcome>();
    let refusals = 0;
    let firstRefusal = 0;
    let sent = 0;
    const pad = 'y'.repeat(6_000);
    // Calls go on well past the first refusal, so the gateway's attempts to restore its reserve
    // (at most once a second) happen while calls arrive.
    const enough = () => refusals >= 30 && Date.now() - firstRefusal > 3_000;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (!enough() && sent < 2_000) {
          const n = sent++;
          const tag = `t${n}`;
          const result =
            n % 2 === 0
              ? await call(gw.client, 'echo__big', { bytes: 15_000, tag })
              : await call(gw.client, 'counter__echo', { message: `${tag}-${pad}` });
          const code = errorCode(result);
          if (code === undefined && result['isError'] !== true) {
            expect(textOf(result).length).toBeGreaterThanOrEqual(6_000);
            outcomes.set(tag, 'ok');
          } else {
            expect(code, JSON.stringify(result).slice(0, 500)).toBe('INTERNAL_ERROR');
            outcomes.set(tag, 'refused');
            if (refusals++ === 0) firstRefusal = Date.now();
            await new Promise((r) => setTimeout(r, 25));
          }
        }
      }),
    );
    expect(enough(), 'the gateway never refused: the limit was not reached').toBe(true);

    const rows = readRows(db);
    const tagOf = (row: AuditRowRead): string | undefined => {
      const tag = recordedArg(row, 'tag') ?? recordedMessage(row)?.split('-')[0];
      return typeof tag === 'string' ? tag : undefined;
    };
    const recorded = new Set(rows.map(tagOf));
    const forwarded = new Set(forwardedMessages(markers).map((m) => m.split('-')[0]!));
    const ok = [...outcomes].filter(([, o]) => o === 'ok').map(([t]) => t);
    const refused = [...outcomes].filter(([, o]) => o === 'refused').map(([t]) => t);
    expect(ok.length).toBeGreaterThan(10);
    // Every result the agent got is in the log.
    expect(ok.filter((t) => !recorded.has(t))).toEqual([]);
    // A refused call has no row and never reached the child; every forwarded call has its row.
    expect(refused.filter((t) => recorded.has(t))).toEqual([]);
    expect(refused.filter((t) => forwarded.has(t))).toEqual([]);
    expect([...forwarded].filter((t) => !recorded.has(t))).toEqual([]);
    // The counter's calls: forwarded exactly when answered.
    const okCounter = ok.filter((t) => Number(t.slice(1)) % 2 === 1);
    expect([...forwarded].sort()).toEqual(okCounter.sort());
    expect(rows.every((r) => r.status === 'ok')).toBe(true);
    expect(rows.length).toBe(ok.length);
    expectValidChain(db);

    // Still alive and answering; one clear line about the full database.
    expect(alive(gw.pid)).toBe(true);
    expect(await toolNames(gw.client)).toContain('counter__echo');
    const fullLines = gw
      .stderr()
      .split('\n')
      .filter((l) => /database or disk is full/.test(l) && /refusing new requests/.test(l));
    expect(fullLines.length, gw.stderr().slice(-3000)).toBeGreaterThanOrEqual(1);
    await stop(gw);
    // The file never grew beyond its limit.
    expect(statSync(db).size).toBeLessThanOrEqual(LIMIT);
  });

  test('two gateways on one file at the limit: the second stops too; a start on the full file names it; more room recovers', async () => {
    const dir = tempDir('mcpgw-full2-');
    const markers = tempDir('mcpgw-full2-markers-');
    const db = path.join(dir, 'gateway.db');
    const LIMIT = 1_572_864;
    const config = (limit: number) =>
      testConfig({
        servers: [{ id: 'counter', ...fixture('counter.js'), env: { FIXTURE_MARKER_DIR: markers } }],
        limits: { maxDatabaseBytes: limit },
      });
    const a = await start({ config: config(LIMIT), dir });
    const b = await start({ config: config(LIMIT), dir });
    await Promise.all([a, b].map((gw) => waitListed(gw.client, ['counter__echo'])));
    const pad = 'y'.repeat(15_000);
    const ok = new Set<string>();
    const refused = new Set<string>();
    const send = async (gw: RunningGateway, tag: string): Promise<boolean> => {
      const result = await call(gw.client, 'counter__echo', { message: `${tag}-${pad}` });
      const code = errorCode(result);
      if (code === undefined) {
        expect(textOf(result).startsWith(`${tag}-`)).toBe(true);
        ok.add(tag);
        return true;
      }
      expect(code).toBe('INTERNAL_ERROR');
      refused.add(tag);
      return false;
    };

    // A fills the file until it refuses: it released the shared reserve to record what it had forwarded.
    let n = 0;
    while (n < 500 && (await send(a, `a${n++}`)));
    expect(refused.size, 'A never refused').toBe(1);
    // B did not hit the limit itself; it must not spend the reserve on new requests.
    const bOutcomes: boolean[] = [];
    for (let i = 0; i < 40; i++) bOutcomes.push(await send(b, `b${i}`));

    const recorded = new Set(readRows(db).map((r) => recordedMessage(r)?.split('-')[0]));
    const forwarded = new Set(forwardedMessages(markers).map((m) => m.split('-')[0]!));
    // Nothing ran without its record; nothing refused ran; every answer has its row.
    expect(
      [...forwarded].filter((t) => !recorded.has(t)),
      'forwarded but not recorded',
    ).toEqual([]);
    expect(
      [...refused].filter((t) => forwarded.has(t)),
      'refused but forwarded',
    ).toEqual([]);
    expect(
      [...ok].filter((t) => !recorded.has(t)),
      'answered but not recorded',
    ).toEqual([]);
    // B stopped at once (its first commit saw the reserve gone).
    expect(bOutcomes.filter(Boolean).length, `B kept accepting: ${bOutcomes.join(' ')}`).toBeLessThanOrEqual(2);
    expect(bOutcomes.slice(-10).every((x) => !x)).toBe(true);
    expectValidChain(db);
    for (const gw of [a, b]) {
      expect(alive(gw.pid)).toBe(true);
      expect(gw.stderr()).toMatch(/database or disk is full.*refusing new requests/);
    }
    await Promise.all([a, b].map(stop));

    // A new gateway on the full file: a one-line reason naming the file and what to do, exit 2.
    const exit = await runCli(['serve', '--config', path.join(dir, 'gateway.yaml')], { MCP_GATEWAY_API_KEY: TEST_KEY });
    expect(exit.code, exit.stderr).toBe(2);
    const reason = exit.stderr.split('\n').filter((l) => l.startsWith('mcp-gateway: '));
    expect(reason, exit.stderr).toHaveLength(1);
    expect(reason[0]).toContain(db);
    expect(reason[0]).toMatch(/maxDatabaseBytes/);

    // More room: the chain goes on where it stopped.
    const rowsBefore = readRows(db).length;
    const c = await start({ config: config(3 * LIMIT), dir });
    await waitListed(c.client, ['counter__echo']);
    expect(await send(c, 'c0')).toBe(true);
    await stop(c);
    expect(expectValidChain(db)).toBe(rowsBefore + 1);
  });

  // A disk really full (not max_page_count): an 8 MB tmpfs, which needs root with CAP_SYS_ADMIN.
  // In WAL mode every commit grows the -wal file, and freed pages inside the database give no disk
  // space back; the reserve file beside the database (<db>-reserve, 4 MiB) is real disk space,
  // released when the disk fills, so the calls in flight at that moment are still recorded.
  test('a disk that is really full: calls in flight recorded from the reserve, new calls refused, the gateway keeps running', async (ctx) => {
    const dir = tempDir('mcpgw-disk-');
    if (!mountTmpfs(dir, '8m')) ctx.skip('mounting a small tmpfs needs root with CAP_SYS_ADMIN');
    try {
      const markers = tempDir('mcpgw-disk-markers-');
      const db = path.join(dir, 'gateway.db');
      const gw = await start({
        config: testConfig({ servers: [{ id: 'counter', ...fixture('counter.js'), env: { FIXTURE_MARKER_DIR: markers } }] }),
        dir,
      });
      await waitListed(gw.client, ['counter__echo']);
      const IN_FLIGHT = 4;
      const pad = 'y'.repeat(15_000);
      const outcomes = new Map<string, 'ok' | 'refused'>();
      let sent = 0;
      let firstRefusal = 0;
      const enough = () => firstRefusal > 0 && Date.now() - firstRefusal > 3_000;
      await Promise.all(
        Array.from({ length: IN_FLIGHT }, async () => {
          while (!enough() && sent < 2_000) {
            const tag = `t${sent++}`;
            const result = await call(gw.client, 'counter__echo', { message: `${tag}-${pad}` });
            const code = errorCode(result);
            if (code === undefined) {
              expect(textOf(result).startsWith(`${tag}-`)).toBe(true);
              outcomes.set(tag, 'ok');
            } else {
              expect(code).toBe('INTERNAL_ERROR');
              outcomes.set(tag, 'refused');
              if (firstRefusal === 0) firstRefusal = Date.now();
              await new Promise((r) => setTimeout(r, 25));
            }
          }
        }),
      );
      expect(enough(), 'the disk never filled').toBe(true);

      const recorded = new Set(readRows(db).map((r) => recordedMessage(r)?.split('-')[0]));
      const forwarded = new Set(forwardedMessages(markers).map((m) => m.split('-')[0]!));
      const ok = [...outcomes].filter(([, o]) => o === 'ok').map(([t]) => t);
      const refused = [...outcomes].filter(([, o]) => o === 'refused').map(([t]) => t);
      expect(ok.length).toBeGreaterThan(10);
      // Every result the agent got has its row.
      expect(ok.filter((t) => !recorded.has(t))).toEqual([]);
      // Everything that ran at the server has its row: the reserve held the calls in flight.
      const unrecorded = [...forwarded].filter((t) => !recorded.has(t));
      expect(unrecorded, unrecorded.join(' ')).toEqual([]);
      // After that, refused calls are not forwarded.
      expect(refused.filter((t) => forwarded.has(t))).toEqual([]);
      expect(refused.length).toBeGreaterThan(10);
      expectValidChain(db);
      expect(alive(gw.pid)).toBe(true);
      expect(await toolNames(gw.client)).toContain('counter__echo');
      expect(gw.stderr()).toMatch(/database or disk is full.*refusing new requests/);
      await stop(gw);
      expectValidChain(db);
    } finally {
      execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
    }
  });
});

/** Mounts a tmpfs of `size` on `dir`; false when this process may not (not root, no CAP_SYS_ADMIN). */
function mountTmpfs(dir: string, size: string): boolean {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------

describe('a database that stops taking writes at run time', () => {
  // Another process holds the write lock longer than the gateway's busy timeout (10 s), as a stuck
  // maintenance job could. The call whose commit times out ran and cannot be recorded (its result
  // is withheld); after that the gateway must refuse until it can WRITE again — finding its ballast
  // in place (nothing was released: the database is not full) proves only that it can read.
  test('a write lock held elsewhere: refused, not forwarded, until a write succeeds; then it recovers', async () => {
    const dir = tempDir('mcpgw-locked-');
    const markers = tempDir('mcpgw-locked-markers-');
    const db = path.join(dir, 'gateway.db');
    const gw = await start({
      config: testConfig({ servers: [{ id: 'counter', ...fixture('counter.js'), env: { FIXTURE_MARKER_DIR: markers } }] }),
      dir,
    });
    await waitListed(gw.client, ['counter__echo']);
    expect(textOf(await call(gw.client, 'counter__echo', { message: 'before' }))).toBe('before');

    const outcomes = new Map<string, 'ok' | 'refused'>();
    const send = async (tag: string): Promise<boolean> => {
      const result = await call(gw.client, 'counter__echo', { message: tag }, { timeout: 120_000 });
      const code = errorCode(result);
      if (code === undefined) {
        expect(textOf(result)).toBe(tag);
        outcomes.set(tag, 'ok');
        return true;
      }
      expect(code).toBe('INTERNAL_ERROR');
      outcomes.set(tag, 'refused');
      return false;
    };

    // Held for three busy timeouts: long enough for the gateway to try again more than once.
    const HOLD_MS = 32_000;
    const locker = new Database(db, { timeout: 0 });
    locker.exec('BEGIN IMMEDIATE');
    const lockedAt = Date.now();
    let n = 0;
    try {
      while (Date.now() - lockedAt < HOLD_MS) {
        if (!(await send(`l${n++}`))) await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      locker.exec('ROLLBACK');
      locker.close();
    }
    // Once the lock is gone the gateway takes calls again (a probe may still be waiting out its timeout).
    let m = 0;
    await waitFor(() => send(`after${m++}`), 60_000, 'the gateway to accept calls again');

    const recorded = new Set(readRows(db).map(recordedMessage));
    const forwarded = new Set(forwardedMessages(markers));
    const unrecorded = [...forwarded].filter((t) => !recorded.has(t));
    // Only the call in flight when the lock outlasted the timeout ran without its row, and its
    // result was withheld.
    expect(unrecorded, `forwarded but not recorded (outcomes: ${JSON.stringify([...outcomes])})`).toEqual(['l0']);
    expect(outcomes.get('l0')).toBe('refused');
    const ok = [...outcomes].filter(([, o]) => o === 'ok').map(([t]) => t);
    expect(ok.filter((t) => !recorded.has(t))).toEqual([]);
    expect(ok.some((t) => t.startsWith('after'))).toBe(true);
    expect([...outcomes].filter(([t, o]) => o === 'refused' && t !== 'l0' && forwarded.has(t))).toEqual([]);
    expectValidChain(db);
    expect(gw.stderr()).toMatch(/database is locked.*refusing new requests/);
    expect(gw.stderr()).toMatch(/writable again/);
  }, 180_000);
});

// ---------------------------------------------------------------------------------------------

describe('names that carry secrets', () => {
  // The usage counters key on the tool name as the agent asked for it: an injected secret or the
  // caller's own key used in a name must be redacted there as in the audit row.
  test('a secret inside a requested tool name stays out of the database file', async () => {
    const INJECTED = 'injected-secret-abc123';
    const dir = tempDir('mcpgw-usage-leak-');
    const db = path.join(dir, 'gateway.db');
    const gw = await start({
      config: testConfig({ servers: [{ id: 'echo', ...fixture('echo.js'), env: { SECRET_TOKEN: INJECTED } }] }),
      dir,
    });
    await waitListed(gw.client, ['echo__echo']);
    expect(errorCode(await call(gw.client, `echo__${INJECTED}`, {}))).toBe('UNKNOWN_TOOL');
    expect(errorCode(await call(gw.client, `nosuch__${TEST_KEY}`, {}))).toBe('UNKNOWN_TOOL');
    await stop(gw);
    // The audit rows are redacted ...
    expect(readRows(db).map((r) => r.name)).toEqual(['[REDACTED:SECRET_TOKEN]', expect.stringMatching(/^nosuch__\[REDACTED:[^\]]+\]$/)]);
    // ... the file as a whole is not.
    const bytes = readFileSync(db);
    expect(bytes.includes(Buffer.from(INJECTED))).toBe(false);
    expect(bytes.includes(Buffer.from(TEST_KEY))).toBe(false);
  });
});
