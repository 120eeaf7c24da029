/**
 * Child servers through a real `mcp-gateway serve` process (design §8): crashes fail in-flight
 * calls at once and restart the child, crash loops end in "failed", timeouts cancel the child's
 * request, progress keeps a call alive, a hanging child does not block the others, stderr floods
 * and stdout noise are survived, lazy servers start on first use, list_changed reaches the agent,
 * and no process outlives the gateway.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/client';
import { afterEach, describe, expect, test } from 'vitest';
import {
  alive,
  errorCode,
  fixture,
  startGateway,
  tempDir,
  testConfig,
  textOf,
  waitFor,
  type RunningGateway,
  type Obj,
  call,
  toolNames,
} from '../helpers/gateway.js';

/** server_status of one server. */
async function status(client: Client, server: string): Promise<Obj> {
  const result = await call(client, 'server_status', { server });
  expect(result.isError, JSON.stringify(result)).not.toBe(true);
  return ((result.structuredContent as Obj).servers as Obj[])[0]!;
}

async function allStatus(client: Client): Promise<Obj[]> {
  return ((await call(client, 'server_status')).structuredContent as Obj).servers as Obj[];
}

/**
 * True while a process exists and is not a zombie (a zombie has exited; it only waits to be reaped
 * by a parent that may not be watching, such as a container's init).
 */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

const markers = (dir: string, prefix: string) => readdirSync(dir).filter((f) => f.startsWith(prefix));
const startedMarkers = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.started'));

let gateways: RunningGateway[] = [];
async function gateway(config: Obj, env?: Record<string, string>): Promise<RunningGateway> {
  const gw = await startGateway({ config, ...(env ? { env } : {}) });
  gateways.push(gw);
  return gw;
}

/** Processes a test saw started; any still running after it (a failed test) are killed. */
let seenPids: number[] = [];

afterEach(async () => {
  await Promise.all(gateways.map((g) => g.close().catch(() => {})));
  gateways = [];
  for (const pid of seenPids) {
    if (running(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }
  seenPids = [];
});

describe('crashes', { timeout: 120_000 }, () => {
  test('a child that dies mid-call fails that call at once with SERVER_UNAVAILABLE, restarts, and serves again', async () => {
    const markerDir = tempDir('mcpgw-markers-');
    const TIMEOUT = 60_000;
    const gw = await gateway(
      testConfig({
        servers: [
          {
            id: 'crash',
            ...fixture('crash.js'),
            env: { FIXTURE_MARKER_DIR: markerDir },
            timeoutMs: TIMEOUT,
            restart: { maxRestarts: 5, windowMs: 60_000, backoffMs: 100, maxBackoffMs: 500 },
          },
        ],
      }),
    );
    expect(textOf(await call(gw.client, 'crash__ok'))).toBe('ok');
    const firstPid = (await status(gw.client, 'crash')).pid as number;

    const t0 = Date.now();
    const crashed = await call(gw.client, 'crash__crash', { code: 3 });
    const elapsed = Date.now() - t0;
    expect(crashed.isError).toBe(true);
    expect(errorCode(crashed)).toBe('SERVER_UNAVAILABLE');
    // At once, not at the request's timeout.
    expect(elapsed).toBeLessThan(TIMEOUT / 3);

    // Restarted: a later call succeeds, from a new process.
    const later = await waitFor(
      async () => {
        const r = await call(gw.client, 'crash__ok');
        return r.isError ? undefined : r;
      },
      30_000,
      'a call after the restart',
    );
    expect(textOf(later)).toBe('ok');
    const after = await status(gw.client, 'crash');
    expect(after.state).toBe('ready');
    expect(after.pid).not.toBe(firstPid);
    expect(after.totalRestarts).toBe(1);
    expect(after.lastExit).toMatchObject({ code: 3 });
    expect(startedMarkers(markerDir)).toHaveLength(2);
  });

  test('a crash loop ends in "failed"; calls then get SERVER_UNAVAILABLE at once, and no more restarts happen', async () => {
    const markerDir = tempDir('mcpgw-markers-');
    const gw = await gateway(
      testConfig({
        servers: [
          { id: 'echo', ...fixture('echo.js') },
          {
            id: 'loop',
            ...fixture('crash.js'),
            env: { CRASH_ON_START: '1', FIXTURE_MARKER_DIR: markerDir },
            restart: { maxRestarts: 2, windowMs: 60_000, backoffMs: 50, maxBackoffMs: 200 },
          },
        ],
      }),
    );
    const failed = await waitFor(
      async () => {
        const s = await status(gw.client, 'loop');
        return s.state === 'failed' ? s : undefined;
      },
      30_000,
      'state failed',
    );
    expect(failed).toMatchObject({ pid: null, restartsInWindow: 2, totalRestarts: 2, nextRestartAt: null });
    expect(failed.lastExit).toMatchObject({ code: 4 });
    expect(typeof failed.lastError).toBe('string');

    const t0 = Date.now();
    const result = await call(gw.client, 'loop__ok');
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(errorCode(result)).toBe('SERVER_UNAVAILABLE');
    expect(errorCode(await call(gw.client, 'call', { tool: 'loop__ok' }))).toBe('SERVER_UNAVAILABLE');

    // The first start and maxRestarts restarts, then nothing more.
    expect(startedMarkers(markerDir)).toHaveLength(3);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(startedMarkers(markerDir)).toHaveLength(3);
    // The other server is unaffected.
    expect(textOf(await call(gw.client, 'echo__echo', { message: 'fine' }))).toBe('fine');
    const listed = await toolNames(gw.client);
    expect(listed).toContain('echo__echo');
    expect(listed.some((n) => n.startsWith('loop__'))).toBe(false);
  });
});

describe('timeouts and progress', () => {
  test('a call past timeoutMs gets TIMEOUT, and the child is told to cancel', async () => {
    const markerDir = tempDir('mcpgw-markers-');
    const gw = await gateway(
      testConfig({ servers: [{ id: 'slow', ...fixture('slow.js'), env: { FIXTURE_MARKER_DIR: markerDir }, timeoutMs: 500 }] }),
    );
    const result = await call(gw.client, 'slow__hang');
    expect(result.isError).toBe(true);
    expect(errorCode(result)).toBe('TIMEOUT');
    await waitFor(() => markers(markerDir, 'cancelled-').length > 0, 15_000, 'the cancelled marker');
    // The child is still healthy (a timeout is not a crash).
    expect(textOf(await call(gw.client, 'slow__quick'))).toBe('ok');
    expect((await status(gw.client, 'slow')).totalRestarts).toBe(0);
  });

  test('progress from the child resets the timeout', async () => {
    const gw = await gateway(testConfig({ servers: [{ id: 'slow', ...fixture('slow.js'), timeoutMs: 600 }] }));
    await waitFor(async () => (await toolNames(gw.client)).includes('slow__sleep'), 30_000, 'slow listed');
    const progress: Obj[] = [];
    // 1500 ms in 10 steps: far over timeoutMs in total, far under it between two progress notifications.
    const result = await gw.client.callTool(
      { name: 'slow__sleep', arguments: { ms: 1500, steps: 10 } },
      {
        timeout: 60_000,
        onprogress: (p: unknown) => progress.push(p as Obj),
      },
    );
    expect(errorCode(result)).toBeUndefined();
    expect(result.isError).not.toBe(true);
    expect(textOf(result)).toBe('slept 1500');
    // The SDK client (this test's agent) may drop the last step when it arrives in the same read as
    // the result (its notifications are handled a microtask after responses); the gateway sends all.
    expect(progress.length).toBeGreaterThanOrEqual(8);
    expect(progress.at(-1)).toMatchObject({ total: 10 });
    expect((progress.at(-1) as { progress: number }).progress).toBeGreaterThanOrEqual(9);

    // Without a progress token the same call is not kept alive: the control case.
    const control = await call(gw.client, 'slow__sleep', { ms: 1500, steps: 10 });
    expect(errorCode(control)).toBe('TIMEOUT');
  });
});

describe('a child that never finishes starting', () => {
  test('does not hold up the others; it reports starting, and calls to it get SERVER_UNAVAILABLE', async () => {
    const gw = await gateway(
      testConfig({
        servers: [
          {
            id: 'hang',
            ...fixture('never-init.js'),
            startTimeoutMs: 2_000,
            restart: { maxRestarts: 1, windowMs: 60_000, backoffMs: 60_000, maxBackoffMs: 60_000 },
          },
          { id: 'echo', ...fixture('echo.js') },
        ],
      }),
    );
    expect(textOf(await call(gw.client, 'echo__echo', { message: 'works' }))).toBe('works');
    const names = await toolNames(gw.client);
    expect(names).toContain('echo__echo');
    expect(names.some((n) => n.startsWith('hang__'))).toBe(false);
    expect(['starting', 'restarting']).toContain((await status(gw.client, 'hang')).state);

    const result = await call(gw.client, 'hang__anything');
    expect(result.isError).toBe(true);
    expect(errorCode(result)).toBe('SERVER_UNAVAILABLE');
    const after = await status(gw.client, 'hang');
    expect(['restarting', 'failed']).toContain(after.state);
    expect(typeof after.lastError).toBe('string');
    // Meanwhile the working server kept working.
    expect(textOf(await call(gw.client, 'echo__echo', { message: 'still' }))).toBe('still');
  });
});

describe('misbehaving output', () => {
  test('a stderr flood: the gateway keeps answering, the tail is bounded and redacted, the secret never leaks', async () => {
    const SECRET = 'flood-secret-0123456789';
    const gw = await gateway(testConfig({ servers: [{ id: 'flood', ...fixture('stderr-flood.js'), env: { FLOOD_SECRET: SECRET } }] }));
    expect(textOf(await call(gw.client, 'flood__ping'))).toBe('pong');

    // The child writes its stderr asynchronously: wait until the line after the flood has arrived.
    const s = await waitFor(
      async () => {
        const st = await status(gw.client, 'flood');
        return (st.stderrTail as string[]).includes('secret=[REDACTED:FLOOD_SECRET]') ? st : undefined;
      },
      30_000,
      'the secret line, redacted, in the stderr tail',
    );
    const tail = s.stderrTail as string[];
    expect(tail.length).toBeGreaterThan(1);
    expect(tail.length).toBeLessThanOrEqual(100);
    for (const line of tail) expect(line.length).toBeLessThanOrEqual(1_000);
    expect(JSON.stringify(s)).not.toContain(SECRET);

    // Another 4 MB of stderr during a call.
    expect(textOf(await call(gw.client, 'flood__flood', { kb: 4096 }))).toBe('done');
    expect(textOf(await call(gw.client, 'flood__ping'))).toBe('pong');
    const after = await status(gw.client, 'flood');
    expect((after.stderrTail as string[]).length).toBeLessThanOrEqual(100);
    expect(after.state).toBe('ready');

    const log = gw.stderr();
    expect(log).not.toContain(SECRET);
    expect(log).toContain('[REDACTED:FLOOD_SECRET]');
    // The gateway's own log stays far smaller than the 6 MB the child wrote.
    expect(log.length).toBeLessThan(1024 * 1024);
  });

  test("non-JSON lines on a child's stdout are skipped and calls still work", async () => {
    const gw = await gateway(testConfig({ servers: [{ id: 'noise', ...fixture('noise.js') }] }));
    expect(textOf(await call(gw.client, 'noise__noisy'))).toBe('quiet');
    expect(textOf(await call(gw.client, 'noise__ping'))).toBe('pong');
    expect(textOf(await call(gw.client, 'noise__noisy'))).toBe('quiet');
    expect((await status(gw.client, 'noise')).totalRestarts).toBe(0);
  });
});

describe('start: lazy', () => {
  test('a lazy server is spawned on first use; its catalog is remembered, so the next run lists it without starting it', async () => {
    const markerDir = tempDir('mcpgw-markers-');
    const dir = tempDir('mcpgw-lazy-');
    const config = testConfig({
      servers: [
        { id: 'echo', ...fixture('echo.js') },
        // Unsandboxed: the test waits for its host pid to be gone between the runs.
        { id: 'lazy', ...fixture('crash.js'), start: 'lazy', env: { FIXTURE_MARKER_DIR: markerDir }, sandbox: 'none' },
      ],
    });

    // First run: nothing remembered yet, so the eager server starts alone; a call is a use.
    const first = await startGateway({ config, dir });
    gateways.push(first);
    await waitFor(async () => (await status(first.client, 'echo')).state === 'ready', 30_000, 'echo ready');
    // Give a wrongly eager start time to show itself.
    await new Promise((r) => setTimeout(r, 1_500));
    expect(startedMarkers(markerDir)).toEqual([]);
    expect(await status(first.client, 'lazy')).toMatchObject({ state: 'idle', pid: null });
    expect(textOf(await call(first.client, 'lazy__ok'))).toBe('ok');
    expect(startedMarkers(markerDir)).toHaveLength(1);
    expect(await status(first.client, 'lazy')).toMatchObject({ state: 'ready' });
    expect(await toolNames(first.client)).toContain('lazy__ok');
    await first.close();
    await waitFor(() => startedMarkers(markerDir).every((m) => !alive(Number(m.split('.')[0]))), 10_000, 'first run stopped');

    // Second run on the same database: listed from memory, not started until called.
    const second = await startGateway({ config, dir });
    gateways.push(second);
    await waitFor(async () => (await toolNames(second.client)).includes('echo__echo'), 30_000, 'echo listed');
    expect(await toolNames(second.client)).toEqual(expect.arrayContaining(['lazy__ok', 'lazy__crash']));
    await new Promise((r) => setTimeout(r, 1_000));
    expect(startedMarkers(markerDir)).toHaveLength(1);
    expect(await status(second.client, 'lazy')).toMatchObject({ state: 'idle', pid: null });
    expect(textOf(await call(second.client, 'lazy__ok'))).toBe('ok');
    expect(startedMarkers(markerDir)).toHaveLength(2);
  });

  test('with nothing remembered, a list starts a lazy server, since nothing else tells what it offers', async () => {
    const markerDir = tempDir('mcpgw-markers-');
    const gw = await gateway(
      testConfig({ servers: [{ id: 'lazy', ...fixture('crash.js'), start: 'lazy', env: { FIXTURE_MARKER_DIR: markerDir } }] }),
    );
    expect(await toolNames(gw.client)).toEqual(expect.arrayContaining(['lazy__ok']));
    expect(startedMarkers(markerDir)).toHaveLength(1);
  });
});

describe('list_changed', () => {
  test('a child that changes its tools: the agent is notified and the new tool is listed and callable', async () => {
    let changed = 0;
    const gw = await startGateway({
      config: testConfig({ servers: [{ id: 'changing', ...fixture('changing-tools.js') }] }),
      beforeConnect: (client) =>
        client.setNotificationHandler('notifications/tools/list_changed', async () => {
          changed++;
        }),
    });
    gateways.push(gw);
    await waitFor(async () => (await toolNames(gw.client)).includes('changing__add_tool'), 30_000, 'changing listed');
    expect(await toolNames(gw.client)).not.toContain('changing__fresh');
    const before = changed;

    expect(textOf(await call(gw.client, 'changing__add_tool', { name: 'fresh' }))).toBe('added fresh');
    await waitFor(() => changed > before, 15_000, 'notifications/tools/list_changed');
    await waitFor(async () => (await toolNames(gw.client)).includes('changing__fresh'), 15_000, 'changing__fresh listed');
    expect(textOf(await call(gw.client, 'changing__fresh'))).toBe('I am fresh');

    // And removal.
    const beforeRemove = changed;
    expect(textOf(await call(gw.client, 'changing__remove_tool', { name: 'fresh' }))).toBe('removed fresh');
    await waitFor(() => changed > beforeRemove, 15_000, 'a second list_changed');
    await waitFor(async () => !(await toolNames(gw.client)).includes('changing__fresh'), 15_000, 'changing__fresh gone');
    expect(errorCode(await call(gw.client, 'changing__fresh'))).toBe('UNKNOWN_TOOL');
  });
});

/**
 * These follow children and grandchildren by their host pids (server_status, marker files), so
 * they run them unsandboxed: process groups and the reaper are what `sandbox: none` and other
 * OSes rely on. The sandboxed equivalents are in security-sandbox.test.ts.
 */
describe('shutdown', { timeout: 120_000 }, () => {
  const unsandboxed = (server: Record<string, unknown>) => ({ ...server, sandbox: 'none' });

  /** Pids of every child (server_status) and of forker's grandchildren (its marker file). */
  async function processTree(gw: RunningGateway, markerDir: string): Promise<{ children: number[]; grandchildren: number[] }> {
    const statuses = await waitFor(
      async () => {
        const all = await allStatus(gw.client);
        return all.every((s) => s.state === 'ready') ? all : undefined;
      },
      30_000,
      'every server ready',
    );
    const children = statuses.map((s) => s.pid as number);
    const files = await waitFor(
      () => {
        const f = markers(markerDir, 'grandchildren-');
        return f.length > 0 ? f : undefined;
      },
      15_000,
      'the grandchildren marker',
    );
    const grandchildren = files.flatMap((f) => JSON.parse(readFileSync(path.join(markerDir, f), 'utf8')) as number[]);
    seenPids.push(...children, ...grandchildren);
    return { children, grandchildren };
  }

  /** A gateway over echo, forker (which leaves two grandchildren) and `third`; its process tree. */
  async function gatewayWithForker(third: Record<string, unknown>) {
    const markerDir = tempDir('mcpgw-markers-');
    const gw = await startGateway({
      config: testConfig({
        servers: [
          { id: 'echo', ...fixture('echo.js') },
          { id: 'forker', ...fixture('forker.js'), env: { FIXTURE_MARKER_DIR: markerDir } },
          third,
        ].map(unsandboxed),
      }),
    });
    gateways.push(gw);
    return { gw, ...(await processTree(gw, markerDir)) };
  }

  test("no process is left after the gateway's stdin closes", async () => {
    const { gw, children, grandchildren } = await gatewayWithForker({ id: 'slow', ...fixture('slow.js') });
    expect(children).toHaveLength(3);
    expect(grandchildren).toHaveLength(2);
    for (const pid of [gw.pid, ...children, ...grandchildren]) expect(running(pid), `pid ${pid} running before`).toBe(true);

    // End the gateway's stdin and nothing else (the SDK's close() would SIGTERM it after 2 s).
    const proc = (gw.transport as unknown as { _process?: { stdin: { end(): void } } })._process;
    expect(proc).toBeDefined();
    proc!.stdin.end();
    for (const pid of [gw.pid, ...children, ...grandchildren]) {
      await waitFor(() => !running(pid), 20_000, `pid ${pid} to be gone`);
    }
  });

  test('the gateway exits on SIGTERM and takes its children with it, even one that ignores SIGTERM', async () => {
    const { gw, children, grandchildren } = await gatewayWithForker({ id: 'stubborn', ...fixture('ignore-sigterm.js') });
    expect(children).toHaveLength(3);
    process.kill(gw.pid, 'SIGTERM');
    await waitFor(() => !running(gw.pid), 30_000, 'the gateway to exit');
    for (const pid of [...children, ...grandchildren]) {
      await waitFor(() => !running(pid), 20_000, `pid ${pid} to be gone`);
    }
  });

  test('a child killed from outside is restarted, and its orphaned grandchildren are ended', async () => {
    const markerDir = tempDir('mcpgw-markers-');
    const gw = await gateway(
      testConfig({
        servers: [
          unsandboxed({
            id: 'forker',
            ...fixture('forker.js'),
            env: { FIXTURE_MARKER_DIR: markerDir },
            restart: { maxRestarts: 3, windowMs: 60_000, backoffMs: 100, maxBackoffMs: 500 },
          }),
        ],
      }),
    );
    const { children, grandchildren } = await processTree(gw, markerDir);
    const died = await call(gw.client, 'forker__die');
    expect(errorCode(died)).toBe('SERVER_UNAVAILABLE');
    for (const pid of [children[0]!, ...grandchildren]) await waitFor(() => !running(pid), 20_000, `pid ${pid} to be gone`);
    await waitFor(async () => textOf(await call(gw.client, 'forker__ping')) === 'pong', 30_000, 'forker back');
    expect(existsSync(markerDir)).toBe(true);
  });
});
