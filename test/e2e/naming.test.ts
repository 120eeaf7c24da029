/**
 * Naming (issue 13 §6): `servers[].prefix` shows a server's tools and prompts under another
 * prefix, or ("") under their own names, for a gateway in front of one server. Two servers shown
 * under one prefix are a config error; names that collide at run time fail `check`, naming both
 * servers, and `serve` lists such a name once, for the server a call reaches, and warns.
 */
import { afterAll, beforeAll, describe, expect, it, test } from 'vitest';
import { GATEWAY_TOOL_NAMES } from '../../src/front/gateway-tools.js';
import {
  TEST_KEY,
  fixture,
  startGateway,
  tempDir,
  testConfig,
  textOf,
  waitFor,
  waitListed,
  writeConfig,
  type Obj,
  type RunningGateway,
} from '../helpers/gateway.js';
import { auditRows, cli } from '../helpers/security.js';

const listNames = async (gw: RunningGateway) => (await gw.client.listTools()).tools.map((t) => t.name);

describe('a server shown under its own names, another under a prefix of its choosing', () => {
  let gw: RunningGateway;

  beforeAll(async () => {
    gw = await startGateway({
      config: testConfig({
        servers: [
          { id: 'plain', ...fixture('echo.js'), prefix: '' },
          { id: 'second', ...fixture('echo.js'), prefix: 'two' },
        ],
      }),
    });
    await waitListed(gw.client, ['echo', 'two__echo']);
  }, 60_000);

  afterAll(async () => {
    await gw?.close();
  });

  it('lists them so, and calls reach the right server, audited under its id', async () => {
    const names = await listNames(gw);
    expect(names).toEqual(expect.arrayContaining(['echo', 'add', 'two__echo', 'two__add']));
    expect(names.filter((n) => n.startsWith('plain__') || n.startsWith('second__'))).toEqual([]);
    expect(textOf(await gw.client.callTool({ name: 'echo', arguments: { message: 'bare' } }))).toContain('bare');
    expect(textOf(await gw.client.callTool({ name: 'two__echo', arguments: { message: 'prefixed' } }))).toContain('prefixed');
    const unknown = await gw.client.callTool({ name: 'second__echo', arguments: { message: 'x' } });
    expect(unknown.isError).toBe(true);
    expect(textOf(unknown)).toContain('UNKNOWN_TOOL');
    const rows = auditRows(gw.dir).filter((r) => ['echo', 'second__echo'].includes(String(r['name'])));
    expect(rows.map((r) => [r['server'], r['status']])).toEqual([
      ['plain', 'ok'],
      ['second', 'ok'],
      // With one server under its own names, a name no prefix claims is asked of it (and unknown there).
      ['plain', 'invalid'],
    ]);
  });

  it('`call` and server_status know the prefixes', async () => {
    expect(textOf(await gw.client.callTool({ name: 'call', arguments: { tool: 'echo', arguments: { message: 'via call' } } }))).toContain(
      'via call',
    );
    const status = JSON.parse(textOf(await gw.client.callTool({ name: 'server_status', arguments: {} }))) as {
      servers: Obj[];
      nameConflicts: unknown[];
    };
    expect(status.servers.map((s) => [s['id'], s['prefix']])).toEqual([
      ['plain', ''],
      ['second', 'two'],
    ]);
    // Both echo.js offer the same names, but under different prefixes: nothing collides.
    expect(status.nameConflicts).toEqual([]);
  });

  it("the gateway's own tools are the names GATEWAY_TOOL_NAMES reserves", async () => {
    const names = await listNames(gw);
    const own = names.filter((n) => !n.includes('__') && !['echo', 'add'].includes(n) && GATEWAY_TOOL_NAMES.includes(n));
    expect(own.sort()).toEqual([...GATEWAY_TOOL_NAMES].sort());
  });
});

test('two servers shown under their own names with the same tool: check fails naming both; serve lists it once and warns', async () => {
  const dir = tempDir();
  const config = testConfig({
    servers: [
      { id: 'first', ...fixture('echo.js'), prefix: '' },
      { id: 'other', ...fixture('echo.js'), prefix: '' },
    ],
  });
  writeConfig(dir, config);
  const env = { TEST_KEY };
  const check = await cli(['check', '--config', `${dir}/gateway.yaml`], { cwd: dir, env });
  expect(check.code).toBe(1);
  expect(check.stdout).toMatch(/tool name "echo" would be shown for server "first" and server "other"/);
  expect(check.stderr).toMatch(/names collide: tool "\w+" of first and other/);

  const json = await cli(['check', '--config', `${dir}/gateway.yaml`, '--json'], { cwd: dir, env });
  const report = JSON.parse(json.stdout) as { nameConflicts: Obj[] };
  expect(report.nameConflicts).toContainEqual({ kind: 'tool', name: 'echo', servers: ['first', 'other'], servedBy: 'first' });

  const gw = await startGateway({ config, dir });
  try {
    await waitFor(async () => (await listNames(gw)).includes('echo') && /calls reach first/.test(gw.stderr()), 30_000, 'both listed');
    expect((await listNames(gw)).filter((n) => n === 'echo')).toHaveLength(1);
    expect(gw.stderr()).toMatch(/tool name "echo" is offered by first and other; calls reach first/);
    await gw.client.callTool({ name: 'echo', arguments: { message: 'who' } });
    expect(auditRows(gw.dir).at(-1)).toMatchObject({ server: 'first', name: 'echo', status: 'ok' });
  } finally {
    await gw.close();
  }
});

test('two servers under one prefix are a config error naming both', async () => {
  const dir = tempDir();
  writeConfig(
    dir,
    testConfig({
      servers: [
        { id: 'alpha', ...fixture('echo.js') },
        { id: 'beta', ...fixture('echo.js'), prefix: 'alpha' },
      ],
    }),
  );
  const run = await cli(['check', '--config', `${dir}/gateway.yaml`], { cwd: dir, env: { TEST_KEY } });
  expect(run.code).toBe(2);
  expect(run.stderr).toMatch(/servers\[1\]\.prefix: servers "alpha" and "beta" would both be shown as "alpha__…"/);
  const bad = tempDir();
  writeConfig(bad, testConfig({ servers: [{ id: 'alpha', ...fixture('echo.js'), prefix: 'Has Space' }] }));
  const invalid = await cli(['check', '--config', `${bad}/gateway.yaml`], { cwd: bad, env: { TEST_KEY } });
  expect(invalid.code).toBe(2);
  expect(invalid.stderr).toMatch(/servers\[0\]\.prefix: must be "" or match/);
});
