/**
 * The log's format (issue 13 §7): `log.format: json` writes one JSON object a line on stderr, for
 * log collectors, redacted like text lines; MCP_GATEWAY_LOG_FORMAT and MCP_GATEWAY_LOG_LEVEL win
 * over the config.
 */
import { expect, test } from 'vitest';
import { TEST_KEY, fixture, startGateway, tempDir, testConfig, textOf, waitFor, waitListed, writeConfig } from '../helpers/gateway.js';
import { cli } from '../helpers/security.js';

const SECRET = 'log-secret-value-12345';

test('log.format json: every stderr line is a JSON object, secrets redacted', async () => {
  const gw = await startGateway({
    config: testConfig({
      log: { format: 'json', level: 'debug' },
      servers: [{ id: 'echo', ...fixture('echo.js'), env: { LEAKY: SECRET } }],
    }),
    env: { MCP_GATEWAY_LOG_LEVEL: '' },
  });
  try {
    await waitListed(gw.client, 'echo__echo');
    await gw.client.callTool({ name: 'echo__echo', arguments: { message: `say ${SECRET}` } });
    await waitFor(() => /listening on stdio/.test(gw.stderr()), 10_000, 'listening line');
    const lines = gw.stderr().split('\n').filter(Boolean);
    const entries = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const e of entries) {
      expect(e).toMatchObject({ time: expect.any(String), level: expect.any(String), service: 'mcp-gateway', msg: expect.any(String) });
      expect(Number.isNaN(Date.parse(String(e['time'])))).toBe(false);
    }
    expect(entries.some((e) => String(e['msg']).startsWith('listening on stdio'))).toBe(true);
    expect(gw.stderr()).not.toContain(SECRET);
  } finally {
    await gw.close();
  }
});

test('MCP_GATEWAY_LOG_FORMAT=text and MCP_GATEWAY_LOG_LEVEL win over the config', async () => {
  const gw = await startGateway({
    config: testConfig({ log: { format: 'json', level: 'debug' }, servers: [{ id: 'echo', ...fixture('echo.js') }] }),
    env: { MCP_GATEWAY_LOG_FORMAT: 'text', MCP_GATEWAY_LOG_LEVEL: 'info' },
  });
  try {
    await waitListed(gw.client, 'echo__echo');
    expect(textOf(await gw.client.callTool({ name: 'echo__echo', arguments: { message: 'hi' } }))).toContain('hi');
    await waitFor(() => /listening on stdio/.test(gw.stderr()), 10_000, 'listening line');
    const lines = gw.stderr().split('\n').filter(Boolean);
    expect(lines.every((l) => /^\d{4}-\d\d-\d\dT\S+ mcp-gateway (info|warn|error)( \[[^\]]+\])? /.test(l) || l.startsWith('    '))).toBe(
      true,
    );
  } finally {
    await gw.close();
  }
});

test('log.level from the config applies when MCP_GATEWAY_LOG_LEVEL is not set', async () => {
  const gw = await startGateway({
    config: testConfig({ log: { level: 'error' }, servers: [{ id: 'echo', ...fixture('echo.js') }] }),
    env: { MCP_GATEWAY_LOG_LEVEL: '' },
  });
  try {
    await waitListed(gw.client, 'echo__echo');
    expect(textOf(await gw.client.callTool({ name: 'echo__echo', arguments: { message: 'quiet' } }))).toContain('quiet');
    expect(gw.stderr()).not.toMatch(/ info | warn /);
  } finally {
    await gw.close();
  }
});

test('log.format json: the reason serve exits for is a JSON line too', async () => {
  const dir = tempDir();
  writeConfig(dir, testConfig({ log: { format: 'json' } }));
  const run = await cli(['serve', '--config', `${dir}/gateway.yaml`], {
    cwd: dir,
    env: { TEST_KEY, MCP_GATEWAY_API_KEY: 'gw_nosuchkey_abcdefghijklmnopqrstuvwxyz0123456789' },
  });
  expect(run.code).toBe(1);
  const entries = run.stderr
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(entries.find((e) => e['level'] === 'error')?.['msg']).toMatch(/key/i);
});
