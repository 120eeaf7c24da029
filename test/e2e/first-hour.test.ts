/**
 * The first hour of a new user: what `init`, `check`, `keys`, `servers list`, `audit verify` and a
 * failing server tell them. Each error names what went wrong and what to do; nothing is edited
 * that did not need it. Assertions are on exit codes and `--json` fields; text only where the text
 * is the point (the decisive line of a crash, a warning that exists).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { TEST_KEY, call, errorCode, fixture, tempDir, testConfig, waitFor, writeConfig, type Obj } from '../helpers/gateway.js';
import { Gateways, cli, statusOf } from '../helpers/security.js';

const gateways = new Gateways();
afterAll(() => gateways.closeAll());

describe('init and .gitignore', () => {
  test('leaves a .gitignore alone when it already ignores the database (*.db and friends), in a git repository', async () => {
    const dir = tempDir('mcpgw-init-git-');
    execFileSync('git', ['init', '-q'], { cwd: dir });
    const before = 'node_modules/\n*.db\n*.db-wal\n*.db-shm\n*.db-reserve\n';
    writeFileSync(path.join(dir, '.gitignore'), before);
    const r = await cli(['init'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(path.join(dir, '.gitignore'), 'utf8')).toBe(before);
  });

  test('adds only what is missing, outside git too (*.db covers the database, not its -wal)', async () => {
    const dir = tempDir('mcpgw-init-plain-');
    writeFileSync(path.join(dir, '.gitignore'), '*.db\n');
    const r = await cli(['init'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    const lines = readFileSync(path.join(dir, '.gitignore'), 'utf8').split('\n');
    expect(lines).not.toContain('mcp-gateway.db');
    expect(lines).toEqual(expect.arrayContaining(['mcp-gateway.db-wal', 'mcp-gateway.db-shm', 'mcp-gateway.db-reserve']));
  });
});

describe('why a server did not start', () => {
  test('check keeps the decisive line of a crash (Node: "Cannot find module …"), not only the tail of its stack', async () => {
    const dir = tempDir('mcpgw-missing-');
    const file = writeConfig(dir, {
      database: './gateway.db',
      servers: [{ id: 'missing', command: process.execPath, args: ['./no-such-server.js'] }],
    });
    const r = await cli(['check', '--json', '--config', file]);
    expect(r.code).toBe(1);
    const server = (JSON.parse(r.stdout) as { servers: Obj[] }).servers[0]!;
    expect(server['ok']).toBe(false);
    expect(String(server['error'])).toContain('Cannot find module');
  });

  test('a command that does not exist: check says so once; the agent is told the server has failed and why', async () => {
    const dir = tempDir('mcpgw-enoent-');
    const config = { database: './gateway.db', servers: [{ id: 'ghost', command: 'no-such-command-mcpgw' }] };
    const file = writeConfig(dir, config);
    const r = await cli(['check', '--config', file]);
    expect(r.code).toBe(1);
    expect(`${r.stdout}${r.stderr}`.match(/ENOENT/g)).toHaveLength(1);

    const gw = await gateways.start({
      config: testConfig({
        servers: [
          { id: 'ghost', command: 'no-such-command-mcpgw' },
          { id: 'echo', ...fixture('echo.js') },
        ],
      }),
    });
    const status = await waitFor(async () => {
      const s = await statusOf(gw.client, 'ghost');
      return s['state'] === 'failed' ? s : undefined;
    });
    expect(status['lastError']).toEqual(expect.stringContaining('ENOENT'));
    expect(status['totalRestarts']).toBe(0);
    const refused = await call(gw.client, 'ghost__anything');
    expect(errorCode(refused)).toBe('SERVER_UNAVAILABLE');
    const details = (refused['_meta'] as Obj)['mcp-gateway/error'] as Obj;
    expect(details['failed']).toBe(true);
    expect(details['retryAfterMs']).toBeUndefined();
  });
});

describe('keys and roles', () => {
  test('keys create with a role no policy names succeeds, and warns; check lists it', async () => {
    const dir = tempDir('mcpgw-roles-');
    const file = writeConfig(dir, {
      database: './gateway.db',
      policies: [{ id: 'reader', roles: ['reader'], rules: [{ action: 'allow' }] }],
    });
    const created = await cli(['keys', 'create', 'x', 'y', 'nonexistentrole', '--json', '--config', file]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stderr).toMatch(/warning: .*"nonexistentrole"/);
    const keyId = (JSON.parse(created.stdout) as { id: string }).id;
    const checked = await cli(['check', '--json', '--config', file]);
    expect(checked.code, checked.stderr).toBe(0);
    expect((JSON.parse(checked.stdout) as { rolesInNoPolicy: Obj[] }).rolesInNoPolicy).toEqual([
      { key: keyId, roles: ['nonexistentrole'] },
    ]);

    const fine = await cli(['keys', 'create', 'z', 'y', 'reader', '--config', file]);
    expect(fine.code).toBe(0);
    expect(fine.stderr).not.toMatch(/warning/);
  });

  test('keys hash takes --config like every command', async () => {
    const dir = tempDir('mcpgw-hash-');
    const file = writeConfig(dir, { database: './gateway.db' });
    const r = await cli(['keys', 'hash', '--config', file], { stdin: TEST_KEY });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\$2[aby]\$12\$/);
  });
});

describe('audit verify --anchor', () => {
  test('takes the first 16 or more hex digits of the hash, as the README shows', async () => {
    const dir = tempDir('mcpgw-anchor-');
    const gw = await gateways.start({ dir, config: testConfig({ servers: [{ id: 'echo', ...fixture('echo.js') }] }) });
    await waitFor(async () => errorCode(await call(gw.client, 'echo__echo', { message: 'x' })) === undefined);
    await gw.close();
    // The test config's static key is ${TEST_KEY}: the CLI needs the variable set to load it.
    const audit = (...args: string[]) => cli(['audit', ...args, '--config', path.join(dir, 'gateway.yaml')], { env: { TEST_KEY } });
    const head = await audit('head');
    expect(head.code, head.stderr).toBe(0);
    const [seq, hash] = head.stdout.trim().split(':') as [string, string];
    expect(Number(seq)).toBeGreaterThan(0);
    expect((await audit('verify', '--anchor', `${seq}:${hash.slice(0, 16)}`)).code).toBe(0);
    expect((await audit('verify', '--anchor', `${seq}:${hash.slice(0, 16)}…`)).code).toBe(0);
    expect((await audit('verify', '--anchor', `${seq}:${hash.slice(0, 15)}`)).code).toBe(2);
    const wrong = `${hash[0] === '0' ? '1' : '0'}${hash.slice(1, 16)}`;
    expect((await audit('verify', '--anchor', `${seq}:${wrong}`)).code).toBe(1);
  });
});

describe('listings and logs', () => {
  test('servers list shows the whole command line and folder, however long', async () => {
    const dir = tempDir('mcpgw-list-');
    const deep = path.join(dir, 'a'.repeat(40), 'b'.repeat(40));
    mkdirSync(deep, { recursive: true });
    const script = path.join(deep, 'my-server-with-a-long-name.js');
    const file = writeConfig(dir, {
      database: './gateway.db',
      servers: [{ id: 'long', command: process.execPath, args: [script, '--flag'], cwd: deep }],
    });
    const r = await cli(['servers', 'list', '--config', file]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`${script} --flag`);
    expect(r.stdout).toContain(deep);
    expect(r.stdout).toMatch(/^1 server$/m);
  });

  test('an unknown MCP_GATEWAY_LOG_LEVEL is said, not ignored', async () => {
    const dir = tempDir('mcpgw-level-');
    const file = writeConfig(dir, { database: './gateway.db' });
    const r = await cli(['check', '--config', file], { env: { MCP_GATEWAY_LOG_LEVEL: 'verbose' } });
    expect(r.stderr).toMatch(/MCP_GATEWAY_LOG_LEVEL "verbose"/);
  });
});
