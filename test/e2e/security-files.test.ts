/**
 * Security: the database and what is exported from it are readable by the gateway's user only,
 * from the first byte (docs/security.md D2). A new database made by `keys create` or by `serve`
 * (the main file, -wal, -shm and the -reserve file) is 0600, and it was never chmod-ed from a
 * wider mode: the preload test/fixtures/chmod-spy.js logs the mode a file had before each chmod.
 * `audit export --out F` creates F 0600. Everything runs under umask 022, as a user's shell would.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { FIXTURES, fixture, tempDir, testConfig, waitFor, writeConfig } from '../helpers/gateway.js';
import { Gateways, cli } from '../helpers/security.js';

const SPY = path.join(FIXTURES, 'chmod-spy.js');
const gateways = new Gateways();
afterAll(() => gateways.closeAll());

/** The environment that makes a process log its chmods to `log`. */
const spyEnv = (log: string) => ({ NODE_OPTIONS: `--import ${SPY}`, CHMOD_SPY_LOG: log });

/** The chmods logged, as { target, before, to }. */
function chmods(log: string): { target: string; before: string; to: string }[] {
  if (!existsSync(log)) return [];
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { target: string; before: string; to: string });
}

const modeOf = (file: string) => (statSync(file).mode & 0o777).toString(8).padStart(3, '0');

describe('database files are 0600 from the first byte', () => {
  test('`keys create` on a new database: never chmod-ed from a wider mode, and 0600 (with -wal/-shm if present)', async () => {
    const dir = tempDir('mcpgw-sec-mode-keys-');
    const configFile = writeConfig(dir, { database: './gateway.db' });
    const log = path.join(dir, 'chmod.log');
    const created = await cli(['keys', 'create', 'laptop', 'ana', 'user', '--json', '--config', configFile], {
      cwd: dir,
      umask: '022',
      env: spyEnv(log),
    });
    expect(created.code, created.stderr).toBe(0);

    // The file was created 0600: any chmod found it 0600 already (today: created 0644, then chmod-ed).
    const widened = chmods(log).filter((c) => c.before !== '600' && c.before !== 'missing');
    expect(widened, 'chmod calls that found a wider mode').toEqual([]);

    const db = path.join(dir, 'gateway.db');
    expect(modeOf(db)).toBe('600');
    for (const extra of ['-wal', '-shm', '-reserve']) {
      if (existsSync(db + extra)) expect(modeOf(db + extra), extra).toBe('600');
    }
  });

  test('`serve` on a new database: the main file, -wal, -shm and -reserve are 0600, never chmod-ed from a wider mode', async () => {
    const dir = tempDir('mcpgw-sec-mode-serve-');
    const log = path.join(dir, 'chmod.log');
    const gw = await gateways.start({
      config: testConfig({ servers: [{ id: 'echo', ...fixture('echo.js') }] }),
      dir,
      umask: '022',
      env: spyEnv(log),
    });
    const db = path.join(dir, 'gateway.db');
    // A request, so the audit log has been written (WAL in use).
    await gw.client.listTools();
    await waitFor(() => ['', '-wal', '-shm', '-reserve'].every((x) => existsSync(db + x)), 15_000, 'the database files');

    const widened = chmods(log).filter((c) => c.before !== '600' && c.before !== 'missing');
    expect(widened, 'chmod calls that found a wider mode').toEqual([]);
    for (const extra of ['', '-wal', '-shm', '-reserve']) expect(modeOf(db + extra), `gateway.db${extra}`).toBe('600');
  });

  test('`audit export --out F` creates F with mode 0600', async () => {
    const dir = tempDir('mcpgw-sec-mode-export-');
    const configFile = writeConfig(dir, { database: './gateway.db' });
    const created = await cli(['keys', 'create', 'laptop', 'ana', 'user', '--config', configFile], { cwd: dir, umask: '022' });
    expect(created.code, created.stderr).toBe(0);

    for (const format of ['jsonl', 'csv']) {
      const out = path.join(dir, `audit.${format}`);
      const exported = await cli(['audit', 'export', '--format', format, '--out', out, '--config', configFile], { cwd: dir, umask: '022' });
      expect(exported.code, exported.stderr).toBe(0);
      expect(existsSync(out)).toBe(true);
      expect(modeOf(out), `audit export --format ${format}`).toBe('600');
    }
  });
});
