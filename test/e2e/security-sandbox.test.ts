/**
 * Security: children cannot see other processes (design §8 "Sandbox", docs/security.md C1, C6).
 * With `sandbox: auto` (the default) each child runs on Linux in its own user, pid and mount
 * namespaces with its own /proc: hostile-environ.js cannot read the gateway's environment (its
 * API key, its audit key) or a sibling's (its secret), not even in redacted form. `server_status`
 * and `check --json` say what isolation each server has. A sandboxed child's exit code is kept,
 * and no process of a child (grandchildren in another session included) outlives the gateway,
 * whether its stdin closes or it is killed with SIGKILL.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import {
  BIN,
  FIXTURES,
  TEST_KEY,
  call,
  errorCode,
  fixture,
  tempDir,
  testConfig,
  textOf,
  waitFor,
  waitListed,
  writeConfig,
  type Obj,
} from '../helpers/gateway.js';
import { Gateways, cli, killProcessesWithToken, processesWithToken, statusOf, token } from '../helpers/security.js';

const gateways = new Gateways();
const tokens: string[] = [];
/** Gateways started over raw stdio (see rawServe). */
const rawGateways: ChildProcessWithoutNullStreams[] = [];
afterEach(async () => {
  await gateways.closeAll();
  for (const proc of rawGateways.splice(0)) if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  // Whatever a failed test left behind (found by its own token) is ended here.
  for (const t of tokens.splice(0)) killProcessesWithToken(t);
});

/** 32 characters, as an operator would set it. */
const AUDIT_KEY = 'audit-key-for-sandbox-tests-0032';

describe('a child reading /proc', () => {
  test("cannot read the gateway's API key, its audit key, or a sibling's secret, not even redacted", async () => {
    expect(AUDIT_KEY).toHaveLength(32);
    const siblingSecret = token('sibling-secret-', 24);
    const gw = await gateways.start({
      config: testConfig({
        audit: { hmacKeyEnv: 'MCP_GATEWAY_AUDIT_KEY' },
        servers: [
          { id: 'snoop', ...fixture('hostile-environ.js') },
          { id: 'sibling', ...fixture('echo.js'), env: { SIBLING_SECRET: siblingSecret } },
        ],
      }),
      env: { MCP_GATEWAY_AUDIT_KEY: AUDIT_KEY },
    });
    await waitListed(gw.client, ['snoop__snoop', 'sibling__echo']);

    const result = await call(gw.client, 'snoop__snoop', {});
    expect(result['isError'], JSON.stringify(result)).not.toBe(true);
    const text = textOf(result);
    const report = JSON.parse(text) as { pid: number; found: { pid: number; environ: string[] }[] };
    expect(typeof report.pid).toBe('number');

    for (const [what, value] of [
      ['the API key', TEST_KEY],
      ['the audit key', AUDIT_KEY],
      ['the sibling secret', siblingSecret],
    ] as const) {
      expect(text.includes(value), `${what} read from /proc`).toBe(false);
    }
    // Not even redacted: the point is that it cannot read them at all.
    const redacted = text.match(/\[REDACTED:[^\]]*\]/g) ?? [];
    expect(redacted, 'secrets the child read and the gateway redacted').toEqual([]);
  });
});

describe("a child reading the gateway's database", () => {
  test('finds it empty when sandboxed (hidden by the sandbox), and readable with sandbox: none', async () => {
    const gw = await gateways.start({
      config: testConfig({
        servers: [
          { id: 'boxed', ...fixture('hostile-environ.js') },
          { id: 'plain', ...fixture('hostile-environ.js'), sandbox: 'none' },
        ],
      }),
    });
    await waitListed(gw.client, ['boxed__peek', 'plain__peek']);
    // Something is audited first, so the database and its -wal hold rows.
    await call(gw.client, 'boxed__snoop', {});
    for (const file of ['gateway.db', 'gateway.db-wal']) {
      const target = path.join(gw.dir, file);
      const boxed = JSON.parse(textOf(await call(gw.client, 'boxed__peek', { path: target }))) as { size?: number };
      const plain = JSON.parse(textOf(await call(gw.client, 'plain__peek', { path: target }))) as { size?: number };
      expect(plain.size, `${file} as an unsandboxed child sees it`).toBeGreaterThan(0);
      expect(boxed.size, `${file} as a sandboxed child sees it`).toBe(0);
    }
  });
});

describe('isolation reported', () => {
  test('server_status: isolation.mode is "namespaces" with sandbox auto (the default); exit code 9 is still reported', async () => {
    const gw = await gateways.start({ config: testConfig({ servers: [{ id: 'crash', ...fixture('crash.js') }] }) });
    await waitListed(gw.client, 'crash__crash');
    const before = await statusOf(gw.client, 'crash');
    expect(before['isolation']).toMatchObject({ mode: 'namespaces' });

    expect(errorCode(await call(gw.client, 'crash__crash', { code: 9 }))).toBe('SERVER_UNAVAILABLE');
    const after = await waitFor(
      async () => {
        const s = await statusOf(gw.client, 'crash');
        return (s['lastExit'] as Obj | null) ? s : undefined;
      },
      15_000,
      'lastExit',
    );
    expect(after['lastExit']).toMatchObject({ code: 9, signal: null });
  });

  test('server_status: isolation is { mode: "none", reason } with sandbox: none', async () => {
    const gw = await gateways.start({
      config: testConfig({ servers: [{ id: 'plain', ...fixture('echo.js'), sandbox: 'none' }] }),
    });
    await waitListed(gw.client, 'plain__echo');
    const isolation = (await statusOf(gw.client, 'plain'))['isolation'] as Obj;
    expect(isolation['mode']).toBe('none');
    expect(typeof isolation['reason']).toBe('string');
    expect(String(isolation['reason']).length).toBeGreaterThan(0);
  });

  test('`check --json` gives each server the same isolation object', async () => {
    const boxed = writeConfig(tempDir('mcpgw-sec-check-'), { database: './gateway.db', servers: [{ id: 'boxed', ...fixture('echo.js') }] });
    const run = await cli(['check', '--json', '--config', boxed]);
    expect(run.code, run.stderr).toBe(0);
    const servers = (JSON.parse(run.stdout) as { servers: Obj[] }).servers;
    expect(servers.find((s) => s['id'] === 'boxed')?.['isolation']).toMatchObject({ mode: 'namespaces' });

    const plain = writeConfig(tempDir('mcpgw-sec-check-'), {
      database: './gateway.db',
      servers: [{ id: 'plain', ...fixture('echo.js'), sandbox: 'none' }],
    });
    const run2 = await cli(['check', '--json', '--config', plain]);
    expect(run2.code, run2.stderr).toBe(0);
    const isolation = (JSON.parse(run2.stdout) as { servers: Obj[] }).servers.find((s) => s['id'] === 'plain')?.['isolation'] as Obj;
    expect(isolation).toMatchObject({ mode: 'none', reason: expect.any(String) });
  });
});

/**
 * `serve` driven over raw stdio (not the SDK client, whose close escalates to SIGTERM and SIGKILL
 * by itself): initialize, so the children start, then stdin closed or SIGKILL, as the test says.
 */
function rawServe(configFile: string): { proc: ChildProcessWithoutNullStreams; exited: Promise<number | null> } {
  const proc = spawn(process.execPath, [BIN, 'serve', '--config', configFile], {
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/', TEST_KEY, MCP_GATEWAY_API_KEY: TEST_KEY },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  rawGateways.push(proc);
  proc.stdout.resume();
  proc.stderr.resume();
  proc.stdin.on('error', () => {});
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const send = (message: Obj) => proc.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', ...message })}\n`);
  send({
    id: 1,
    method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw-agent', version: '1.0.0' } },
  });
  send({ method: 'notifications/initialized' });
  return { proc, exited };
}

/** Waits up to 10 s for every process carrying `tok` to be gone; fails naming those left and their argv. */
async function noneLeft(tok: string): Promise<void> {
  try {
    await waitFor(() => processesWithToken(tok).length === 0, 10_000, 'no process carrying the token');
  } catch {
    const left = processesWithToken(tok).map((pid) => {
      try {
        return `${pid}: ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).slice(-2).join(' ')}`;
      } catch {
        return String(pid);
      }
    });
    expect(left, 'processes still running 10 s after the gateway exited').toEqual([]);
  }
}

describe('no process left behind', () => {
  /** A gateway with hostile-forker (3 processes) and echo, all carrying `tok` in their argv. */
  async function startForker(tok: string): Promise<ReturnType<typeof rawServe>> {
    const dir = tempDir('mcpgw-sec-forker-');
    const configFile = writeConfig(
      dir,
      testConfig({
        servers: [
          { id: 'forker', command: process.execPath, args: [path.join(FIXTURES, 'hostile-forker.js'), tok] },
          { id: 'echo', command: process.execPath, args: [path.join(FIXTURES, 'echo.js'), tok] },
        ],
      }),
    );
    const serve = rawServe(configFile);
    // The forker, its two grandchildren and echo.
    await waitFor(() => processesWithToken(tok).length >= 4, 30_000, 'the children and grandchildren to start');
    return serve;
  }

  test('after the gateway exits because its stdin closed: none within 10 s (a setsid grandchild ignoring SIGTERM included)', async () => {
    const tok = token('gw-leftover-stdin-');
    tokens.push(tok);
    const { proc, exited } = await startForker(tok);
    proc.stdin.end();
    await exited;
    await noneLeft(tok);
  });

  test('after kill -9 of the gateway: none within 10 s (a setsid grandchild ignoring SIGTERM included)', async () => {
    const tok = token('gw-leftover-kill-');
    tokens.push(tok);
    const { proc, exited } = await startForker(tok);
    proc.kill('SIGKILL');
    await exited;
    await noneLeft(tok);
  });
});
