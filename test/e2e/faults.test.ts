/**
 * Malformed children, all at once beside a healthy one: garbage on stdout, wrong response ids, a
 * 100 MB result, a child that never answers initialize, one that exits during initialize, one
 * that forks grandchildren and dies, one that ignores SIGTERM and stdin. Each fault stays with its
 * server, shows in server_status, and no process is left behind when the gateway exits, also when
 * the gateway itself is killed with SIGKILL.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { alive, errorCode, fixture, startGateway, tempDir, testConfig, textOf, waitFor, type RunningGateway } from '../helpers/gateway.js';

interface Status {
  id: string;
  state: string;
  pid: number | null;
  lastError: string | null;
  lastExit: { code: number | null; signal: string | null } | null;
}

/**
 * These tests follow children by their host pids (server_status, marker files), so they run them
 * unsandboxed: what they hold (process groups, the reaper) is what `sandbox: none` and other OSes
 * rely on. The sandboxed equivalents are in security-sandbox.test.ts.
 */
const unsandboxed = (server: Record<string, unknown>) => ({ ...server, sandbox: 'none' });

function serverConfig(markers: string) {
  const quick = { restart: { maxRestarts: 1, windowMs: 60_000, backoffMs: 50, maxBackoffMs: 100 } };
  return testConfig({
    servers: [
      { id: 'good', ...fixture('echo.js') },
      { id: 'garbage', ...fixture('noise.js') },
      { id: 'wrongids', ...fixture('wrong-ids.js'), timeoutMs: 1_500 },
      { id: 'huge', ...fixture('huge-result.js'), timeoutMs: 30_000 },
      { id: 'neverinit', ...fixture('never-init.js'), startTimeoutMs: 1_000, ...quick, env: { FIXTURE_MARKER_DIR: markers } },
      { id: 'exitinit', ...fixture('exit-during-init.js'), ...quick },
      { id: 'forker', ...fixture('forker.js'), env: { FIXTURE_MARKER_DIR: markers } },
      { id: 'stubborn', ...fixture('ignore-sigterm.js'), env: { FIXTURE_MARKER_DIR: markers } },
    ].map(unsandboxed),
    limits: { listWaitMs: 5_000 },
  });
}

async function status(gw: RunningGateway): Promise<Status[]> {
  const r = await gw.client.callTool({ name: 'server_status', arguments: {} });
  return (r.structuredContent as { servers: Status[] }).servers;
}

function grandchildren(markers: string): number[] {
  return readdirSync(markers)
    .filter((f) => f.startsWith('grandchildren-'))
    .flatMap((f) => JSON.parse(readFileSync(path.join(markers, f), 'utf8')) as number[]);
}

function startedPids(markers: string): number[] {
  return readdirSync(markers)
    .filter((f) => f.endsWith('.started'))
    .map((f) => Number(f.split('.')[0]));
}

describe('malformed children are contained', () => {
  let gw: RunningGateway;
  let markers: string;

  beforeAll(async () => {
    markers = tempDir('mcpgw-markers-');
    gw = await startGateway({ config: serverConfig(markers) });
    await waitFor(async () => (await status(gw)).filter((s) => s.state === 'ready').length >= 5, 30_000, 'healthy children ready');
  }, 60_000);

  afterAll(async () => {
    await gw?.close();
    for (const pid of [...grandchildren(markers), ...startedPids(markers)]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone, as it should be
      }
    }
  });

  test('the healthy child works while the others misbehave', async () => {
    expect(textOf(await gw.client.callTool({ name: 'good__echo', arguments: { message: 'fine' } }))).toBe('fine');
  });

  test('garbage on stdout is skipped; the server keeps working', async () => {
    const r = await gw.client.callTool({ name: 'garbage__noisy', arguments: {} });
    expect(textOf(r)).toBe('quiet');
    expect(textOf(await gw.client.callTool({ name: 'garbage__ping', arguments: {} }))).toBe('pong');
  });

  test('a reply with a wrong id is ignored: the call times out, the server stays usable', async () => {
    const r = await gw.client.callTool({ name: 'wrongids__t', arguments: {} });
    expect(errorCode(r)).toBe('TIMEOUT');
    const fixed = await gw.client.callTool({ name: 'wrongids__t', arguments: { fix: true } });
    expect(errorCode(fixed)).toBeUndefined();
    expect((await status(gw)).find((s) => s.id === 'wrongids')?.state).toBe('ready');
  });

  test('a 100 MB result is refused at once (over limits.maxMessageBytes), not buffered', async () => {
    const started = Date.now();
    const r = await gw.client.callTool({ name: 'huge__huge', arguments: { mb: 100 } }, { timeout: 60_000 });
    expect(errorCode(r)).toBe('UPSTREAM_ERROR');
    expect(Date.now() - started).toBeLessThan(25_000);
    expect(textOf(await gw.client.callTool({ name: 'huge__ping', arguments: {} }))).toBe('pong');
    const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${gw.pid}/status`, 'utf8'))![1]) / 1024;
    expect(rss).toBeLessThan(400);
  });

  test('a child that never answers initialize, and one that exits during it, end up failed with the reason', async () => {
    await waitFor(
      async () => {
        const s = await status(gw);
        return s.find((x) => x.id === 'neverinit')?.state === 'failed' && s.find((x) => x.id === 'exitinit')?.state === 'failed';
      },
      30_000,
      'neverinit and exitinit failed',
    );
    const s = await status(gw);
    const never = s.find((x) => x.id === 'neverinit')!;
    const exit = s.find((x) => x.id === 'exitinit')!;
    expect(never.lastError).toMatch(/initialize/);
    expect(exit.lastExit?.code).toBe(7);
    expect(errorCode(await gw.client.callTool({ name: 'call', arguments: { tool: 'neverinit__x' } }))).toBe('SERVER_UNAVAILABLE');
    // Every process the never-initializing child started is gone (each attempt was killed).
    const stubbornPid = s.find((x) => x.id === 'stubborn')?.pid;
    await waitFor(
      () =>
        startedPids(markers)
          .filter((p) => p !== stubbornPid)
          .every((p) => !alive(p)),
      10_000,
      'neverinit processes gone',
    );
  });

  test('a child that forks grandchildren and dies: the call fails at once, the grandchildren go with it', async () => {
    await waitFor(() => grandchildren(markers).length >= 2, 10_000, 'grandchildren marker');
    const before = grandchildren(markers);
    expect(before.every(alive)).toBe(true);
    const r = await gw.client.callTool({ name: 'forker__die', arguments: {} });
    expect(errorCode(r)).toBe('SERVER_UNAVAILABLE');
    await waitFor(() => before.every((p) => !alive(p)), 10_000, 'grandchildren killed with their group');
    // It is restarted, and works again.
    await waitFor(async () => textOf(await gw.client.callTool({ name: 'forker__ping', arguments: {} })) === 'pong', 15_000, 'forker back');
  });

  test('when the gateway exits, every child goes, even one that ignores SIGTERM and stdin', async () => {
    const pids = (await status(gw)).map((s) => s.pid).filter((p): p is number => p !== null);
    const stubborn = (await status(gw)).find((s) => s.id === 'stubborn')!.pid!;
    expect(alive(stubborn)).toBe(true);
    const all = [...pids, ...grandchildren(markers)];
    await gw.close();
    await waitFor(() => all.every((p) => !alive(p)), 15_000, 'no process left');
  });
});

describe('after SIGKILL of the gateway', () => {
  test('children, including one that ignores stdin and SIGTERM, are ended by the reaper', async () => {
    const markers = tempDir('mcpgw-kill9-');
    const gw = await startGateway({
      config: testConfig({
        servers: [
          { id: 'good', ...fixture('echo.js') },
          { id: 'stubborn', ...fixture('ignore-sigterm.js'), env: { FIXTURE_MARKER_DIR: markers } },
          { id: 'forker', ...fixture('forker.js'), env: { FIXTURE_MARKER_DIR: markers } },
        ].map(unsandboxed),
      }),
    });
    await waitFor(async () => (await status(gw)).every((s) => s.state === 'ready'), 30_000, 'children ready');
    await waitFor(() => grandchildren(markers).length >= 2, 10_000, 'grandchildren');
    const pids = [...(await status(gw)).map((s) => s.pid!), ...grandchildren(markers)];
    expect(pids.every(alive)).toBe(true);
    process.kill(gw.pid, 'SIGKILL');
    try {
      await waitFor(() => pids.every((p) => !alive(p)), 15_000, 'every child gone after kill -9');
    } finally {
      for (const p of pids) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await gw.close().catch(() => {});
    }
  });
});
