/**
 * The operations listener (issue 13 §7): `/metrics` in Prometheus format behind its own token,
 * `/healthz`, `/readyz`, with series named after the OpenTelemetry MCP semantic conventions, and
 * label values an agent cannot multiply.
 */
import { afterAll, beforeAll, describe, expect, it, test } from 'vitest';
import {
  TEST_KEY,
  fixture,
  startGateway,
  tempDir,
  testConfig,
  waitFor,
  waitListed,
  writeConfig,
  type RunningGateway,
} from '../helpers/gateway.js';
import { cli } from '../helpers/security.js';

const TOKEN = 'metrics-token-0123456789abcdef';

describe('metrics, health and readiness of a running gateway', () => {
  let gw: RunningGateway;
  let base: string;

  beforeAll(async () => {
    gw = await startGateway({
      config: testConfig({
        metrics: { listen: '127.0.0.1:0', token: TOKEN },
        servers: [{ id: 'echo', ...fixture('echo.js') }],
      }),
    });
    await waitListed(gw.client, 'echo__echo');
    const m = await waitFor(() => /metrics on (http:\/\/\S+)\/metrics/.exec(gw.stderr()), 10_000, 'metrics address');
    base = m[1]!;
  }, 60_000);

  afterAll(async () => {
    await gw?.close();
  });

  const get = (path: string, headers: Record<string, string> = {}) => fetch(`${base}${path}`, { headers });
  const metrics = async () => (await get('/metrics', { authorization: `Bearer ${TOKEN}` })).text();

  it('/healthz answers; /readyz once the store is writable and the eager servers have started', async () => {
    expect((await get('/healthz')).status).toBe(200);
    const ready = await waitFor(async () => ((await get('/readyz')).status === 200 ? get('/readyz') : undefined), 15_000, 'ready');
    expect(await ready.json()).toEqual({ status: 'ready', checks: { store: 'ok', 'server:echo': 'ok' } });
  });

  it('/metrics needs its token', async () => {
    expect((await get('/metrics')).status).toBe(401);
    expect((await get('/metrics', { authorization: 'Bearer wrong-token-0123456789abcdef' })).status).toBe(401);
    const ok = await get('/metrics', { authorization: `Bearer ${TOKEN}` });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toContain('text/plain');
  });

  it('counts and times calls by method, server, tool, status and decision', async () => {
    await gw.client.callTool({ name: 'echo__echo', arguments: { message: 'counted' } });
    await gw.client.callTool({ name: 'echo__echo', arguments: { message: 'counted' } });
    const text = await metrics();
    expect(text).toMatch(/mcp_gateway_requests_total\{method="tools\/call",server="echo",tool="echo",status="ok",decision="allow"\} 2/);
    expect(text).toMatch(
      /mcp_server_operation_duration_seconds_count\{mcp_method_name="tools\/call",gen_ai_tool_name="echo",error_type="",server="echo"\} 2/,
    );
    expect(text).toMatch(/mcp_gateway_server_state\{server="echo",state="ready"\} 1/);
    expect(text).toMatch(/mcp_gateway_server_restarts\{server="echo"\} 0/);
    expect(text).toMatch(/mcp_gateway_sessions 1/);
    expect(text).toMatch(/mcp_gateway_audit_commit_duration_seconds_count [1-9]/);
    expect(text).toMatch(/mcp_gateway_process_resident_memory_bytes \d+/);
  });

  it('names an agent makes up do not become series', async () => {
    for (let i = 0; i < 20; i++) await gw.client.callTool({ name: `echo__nosuch${i}`, arguments: {} });
    await gw.client.callTool({ name: 'made-up-name', arguments: {} });
    const text = await metrics();
    expect(text).not.toMatch(/nosuch|made-up-name/);
    expect(text).toMatch(
      /mcp_gateway_requests_total\{method="tools\/call",server="echo",tool="\(other\)",status="invalid",decision="[a-z]+"\} 20/,
    );
  });

  it('answers only GET and HEAD on its three paths', async () => {
    expect((await fetch(`${base}/metrics`, { method: 'POST', body: 'x' })).status).toBe(405);
    expect((await get('/mcp')).status).toBe(404);
  });
});

test('a metrics listen address that is not host:port is a config error', async () => {
  const dir = tempDir();
  writeConfig(dir, testConfig({ metrics: { listen: 'not an address' } }));
  const run = await cli(['check', '--config', `${dir}/gateway.yaml`], { cwd: dir, env: { TEST_KEY } });
  expect(run.code).toBe(2);
  expect(run.stderr).toMatch(/metrics\.listen/);
});
