/**
 * What flows besides request and answer, through a real gateway process (design §9): progress
 * (with the agent's own token, resetting the timeout), cancellation (reaching the child, recorded
 * as CANCELLED), log messages and logging/setLevel, resource subscriptions, roots list_changed,
 * and a child's tools/list_changed re-announced to the agent.
 */
import Database from 'better-sqlite3';
import { ProtocolError, type JSONRPCMessage, type JSONRPCNotification, type JSONRPCRequest } from '@modelcontextprotocol/client';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EVERYTHING,
  errorCode,
  fixture,
  startGateway,
  tempDir,
  testConfig,
  textOf,
  waitFor,
  type RunningGateway,
  type Obj,
  anyResult,
  MODERN,
} from '../helpers/gateway.js';

/** Lists (and requests that route by catalog) wait this long for children still starting: the machine may be slow. */
const PATIENT = { limits: { listWaitMs: 30_000 } };

/** Records every message the agent's transport receives and sends, next to the SDK client's own handling. */
function spy(gw: RunningGateway): { received: JSONRPCMessage[]; sent: JSONRPCMessage[] } {
  const received: JSONRPCMessage[] = [];
  const sent: JSONRPCMessage[] = [];
  // The stdio client transport takes one argument each; the Protocol set onmessage at connect.
  const onmessage = gw.transport.onmessage!;
  gw.transport.onmessage = (message, ...rest) => {
    received.push(message);
    onmessage(message, ...rest);
  };
  const send = gw.transport.send.bind(gw.transport);
  gw.transport.send = (message) => {
    sent.push(message);
    return send(message);
  };
  return { received, sent };
}

const notificationsOf = (messages: JSONRPCMessage[], method: string): JSONRPCNotification[] =>
  messages.filter((m): m is JSONRPCNotification => 'method' in m && !('id' in m) && m.method === method);

const paramsOf = (n: JSONRPCNotification): Obj => (n.params ?? {}) as Obj;

/** The audit statuses recorded for a child's tool, oldest first. */
function auditStatuses(gw: RunningGateway, server: string, name: string): string[] {
  const db = new Database(path.join(gw.dir, 'gateway.db'), { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare('SELECT status FROM audit_log WHERE server = ? AND name = ? ORDER BY seq').all(server, name) as {
      status: string;
    }[];
    return rows.map((r) => r.status);
  } finally {
    db.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function childStatus(gw: RunningGateway, server: string): Promise<Obj> {
  const result = await gw.client.callTool({ name: 'server_status', arguments: { server } });
  return (result.structuredContent as { servers: Obj[] }).servers[0]!;
}

/** Kills a child with SIGKILL and waits until the gateway has restarted it. */
async function killAndAwaitRestart(gw: RunningGateway, server: string): Promise<void> {
  const before = await childStatus(gw, server);
  expect(before['state']).toBe('ready');
  process.kill(before['pid'] as number, 'SIGKILL');
  await waitFor(
    async () => {
      const now = await childStatus(gw, server);
      return now['state'] === 'ready' && now['pid'] !== before['pid'];
    },
    30_000,
    `${server} restarted`,
  );
}

describe('notifications through the gateway', () => {
  let gw: RunningGateway;
  let received: JSONRPCMessage[];
  let sent: JSONRPCMessage[];
  const markers = tempDir('mcpgw-markers-');
  let roots = [{ uri: 'file:///first-root', name: 'first-root' }];
  let rootsAsked = 0;

  beforeAll(async () => {
    gw = await startGateway({
      config: testConfig({
        ...PATIENT,
        servers: [
          { id: 'everything', command: process.execPath, args: [EVERYTHING, 'stdio'] },
          { id: 'slow', ...fixture('slow.js'), env: { FIXTURE_MARKER_DIR: markers } },
          { id: 'slowt', ...fixture('slow.js'), timeoutMs: 2_000 },
          { id: 'changing', ...fixture('changing-tools.js') },
          { id: 'catalog', ...fixture('changing-catalog.js') },
        ],
      }),
      capabilities: { roots: { listChanged: true } },
      beforeConnect: (client) =>
        client.setRequestHandler('roots/list', async () => {
          rootsAsked++;
          return { roots };
        }),
    });
    ({ received, sent } = spy(gw));
    // Every child ready, so that no start of a child announces a list change during a test.
    await gw.client.listTools();
    await waitFor(
      async () => {
        const status = (await gw.client.callTool({ name: 'server_status', arguments: {} })).structuredContent as { servers: Obj[] };
        return status.servers.every((s) => s['state'] === 'ready');
      },
      30_000,
      'every child ready',
    );
  });

  afterAll(async () => {
    await gw?.close();
  });

  it("relays the child's progress to the agent under the token the agent sent", async () => {
    const progress: Obj[] = [];
    const result = await gw.client.callTool(
      { name: 'everything__trigger-long-running-operation', arguments: { duration: 1, steps: 4 } },
      { onprogress: (p: unknown) => progress.push(p as Obj), timeout: 30_000 },
    );
    expect(textOf(result)).toContain('Long running operation completed');
    // The tokens the agent sent with this call: one, or one per round when the call asked for the
    // agent's input (a 2026-07-28 agent's call that server-everything's roots/list joined).
    const tokens = sent
      .filter((m): m is JSONRPCRequest => 'method' in m && 'id' in m && m.method === 'tools/call')
      .filter((m) => m.params?.['name'] === 'everything__trigger-long-running-operation')
      .map((m) => (m.params?._meta as Obj)['progressToken']);
    expect(tokens.length).toBeGreaterThan(0);
    // Every step reached the agent's transport with a token the agent sent, the last one too.
    const relayed = notificationsOf(received, 'notifications/progress').filter((n) => tokens.includes(paramsOf(n)['progressToken']));
    expect(relayed.map((n) => ({ ...paramsOf(n), progressToken: undefined }))).toEqual(
      [1, 2, 3, 4].map((progress) => ({ progressToken: undefined, progress, total: 4 })),
    );
    // And to the client: the gateway's answer waits a moment after a progress, so the SDK client
    // (which drops a progress read in the same chunk as the result) sees the last step too.
    expect(progress.at(-1)?.['progress']).toBe(4);
  });

  it('returns a string progress token verbatim', async () => {
    const token = 'agent-token-Ω-1';
    const result = await gw.client.request(
      {
        method: 'tools/call',
        params: {
          name: 'everything__trigger-long-running-operation',
          arguments: { duration: 0.6, steps: 3 },
          _meta: { progressToken: token },
        },
      },
      anyResult,
    );
    expect(textOf(result)).toContain('Long running operation completed');
    const relayed = notificationsOf(received, 'notifications/progress').filter((n) => paramsOf(n)['progressToken'] === token);
    expect(relayed.map((n) => paramsOf(n)['progress'])).toEqual([1, 2, 3]);
  });

  it("resets the child's request timeout on progress; without progress the same call times out", async () => {
    // slowt has timeoutMs 2000: twelve steps of 500 ms finish only if each progress resets it.
    const progress: unknown[] = [];
    const withProgress = await gw.client.callTool(
      { name: 'slowt__sleep', arguments: { ms: 6_000, steps: 12 } },
      {
        onprogress: (p: unknown) => progress.push(p),
        timeout: 60_000,
      },
    );
    expect(withProgress.isError).not.toBe(true);
    expect(textOf(withProgress)).toBe('slept 6000');
    expect(progress.length).toBeGreaterThanOrEqual(11);

    const without = await gw.client.callTool({ name: 'slowt__sleep', arguments: { ms: 6_000, steps: 2 } }, { timeout: 60_000 });
    expect(without.isError).toBe(true);
    expect(errorCode(without)).toBe('TIMEOUT');
  });

  it("cancels the child's request when the agent cancels a `call` mid-way, recorded as CANCELLED", async () => {
    const controller = new AbortController();
    const progress: unknown[] = [];
    const call = gw.client.callTool(
      { name: 'call', arguments: { tool: 'slow__sleep', arguments: { ms: 60_000, steps: 120 } } },
      {
        signal: controller.signal,
        timeout: 60_000,
        onprogress: (p: unknown) => {
          progress.push(p);
          controller.abort('the test cancels');
        },
      },
    );
    await expect(call).rejects.toThrow();
    expect(progress.length).toBeGreaterThan(0);

    // The child saw the cancellation (the fixture writes cancelled-<requestId>).
    await waitFor(() => readdirSync(markers).some((f) => f.startsWith('cancelled-')), 15_000, 'the cancelled marker of slow');
    await waitFor(() => auditStatuses(gw, 'slow', 'sleep').at(-1) === 'cancelled', 15_000, 'an audit row with status cancelled');
    expect(auditStatuses(gw, 'slow', 'sleep')).not.toContain('timeout');

    // The gateway and the child still work.
    expect(textOf(await gw.client.callTool({ name: 'call', arguments: { tool: 'slow__quick' } }))).toBe('ok');
    const status = (await gw.client.callTool({ name: 'server_status', arguments: { server: 'slow' } })).structuredContent as {
      servers: Obj[];
    };
    expect(status.servers[0]).toMatchObject({ id: 'slow', state: 'ready', totalRestarts: 0 });
  });

  it("cancels server-everything's long-running operation mid-way: no more progress, CANCELLED", async () => {
    const controller = new AbortController();
    const call = gw.client.callTool(
      { name: 'everything__trigger-long-running-operation', arguments: { duration: 60, steps: 40 } },
      { signal: controller.signal, timeout: 60_000, onprogress: () => controller.abort('the test cancels') },
    );
    await expect(call).rejects.toThrow();
    const request = sent.filter((m): m is JSONRPCRequest => 'method' in m && 'id' in m && m.method === 'tools/call').at(-1)!;
    const token = (request.params?._meta as Obj)['progressToken'];
    const relayed = () => notificationsOf(received, 'notifications/progress').filter((n) => paramsOf(n)['progressToken'] === token).length;
    expect(relayed()).toBe(1);

    await waitFor(
      () => auditStatuses(gw, 'everything', 'trigger-long-running-operation').at(-1) === 'cancelled',
      15_000,
      'a cancelled audit row',
    );
    // The child keeps stepping every 1.5 s; none of its progress reaches the agent any more.
    await sleep(3_500);
    expect(relayed()).toBe(1);
    expect(textOf(await gw.client.callTool({ name: 'everything__echo', arguments: { message: 'still here' } }))).toContain('still here');
  });

  // A 2025-era mechanism (the 2026-07-28 one is tested in eras.test.ts).
  it.skipIf(MODERN)("forwards the child's log messages with the server id as logger", async () => {
    // At start server-everything asked for the roots and logged it under its own logger name.
    await waitFor(
      () => notificationsOf(received, 'notifications/message').find((n) => paramsOf(n)['logger'] === 'everything/everything-server'),
      10_000,
      'the roots log message',
    );
    const before = received.length;
    const toggled = await gw.client.callTool({ name: 'everything__toggle-simulated-logging', arguments: {} });
    expect(textOf(toggled)).toContain('Started simulated');
    try {
      const message = await waitFor(
        () =>
          notificationsOf(received.slice(before), 'notifications/message').find((n) => /level.?message/i.test(String(paramsOf(n)['data']))),
        15_000,
        'a simulated log message',
      );
      expect(paramsOf(message)).toMatchObject({ logger: 'everything', level: expect.any(String) });
    } finally {
      await gw.client.callTool({ name: 'everything__toggle-simulated-logging', arguments: {} });
    }
  });

  // A 2025-era mechanism (the 2026-07-28 one is tested in eras.test.ts).
  it.skipIf(MODERN)('relays notifications/resources/updated for a subscribed resource, and stops after unsubscribe', async () => {
    const uri = 'demo://resource/static/document/features.md';
    const updates = () => notificationsOf(received, 'notifications/resources/updated').filter((n) => paramsOf(n)['uri'] === uri).length;
    expect(updates()).toBe(0);
    await gw.client.subscribeResource({ uri });
    await gw.client.callTool({ name: 'everything__toggle-subscriber-updates', arguments: {} });
    try {
      await waitFor(() => updates() > 0, 15_000, 'notifications/resources/updated');
      await gw.client.unsubscribeResource({ uri });
      // The updates come every 5 s; after unsubscribing, none is relayed.
      const after = updates();
      await sleep(6_000);
      expect(updates()).toBe(after);
    } finally {
      await gw.client.callTool({ name: 'everything__toggle-subscriber-updates', arguments: {} });
    }

    const unknown = await gw.client.subscribeResource({ uri: 'nowhere://nothing' }).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(ProtocolError);
  });

  // A 2025-era mechanism (the 2026-07-28 one is tested in eras.test.ts).
  it.skipIf(MODERN)("passes the agent's roots/list_changed to the children, which ask for the new roots", async () => {
    const first = await gw.client.callTool({ name: 'everything__get-roots-list', arguments: {} });
    expect(textOf(first)).toContain('first-root');
    const asked = rootsAsked;
    roots = [{ uri: 'file:///second-root', name: 'second-root' }];
    await gw.client.sendRootsListChanged();
    await waitFor(() => rootsAsked > asked, 10_000, 'a new roots/list request');
    await waitFor(
      async () => textOf(await gw.client.callTool({ name: 'everything__get-roots-list', arguments: {} })).includes('second-root'),
      10_000,
      'the new roots',
    );
  });

  it("re-announces a child's tools/list_changed to the agent with the new catalog", async () => {
    const changes = () => notificationsOf(received, 'notifications/tools/list_changed').length;
    const names = async () => (await gw.client.listTools()).tools.map((t) => t.name);
    expect(await names()).not.toContain('changing__fresh');

    let before = changes();
    expect(textOf(await gw.client.callTool({ name: 'changing__add_tool', arguments: { name: 'fresh' } }))).toBe('added fresh');
    await waitFor(() => changes() > before, 10_000, 'tools/list_changed after add');
    expect(await names()).toContain('changing__fresh');
    expect(textOf(await gw.client.callTool({ name: 'changing__fresh', arguments: {} }))).toBe('I am fresh');

    before = changes();
    await gw.client.callTool({ name: 'changing__remove_tool', arguments: { name: 'fresh' } });
    await waitFor(() => changes() > before, 10_000, 'tools/list_changed after remove');
    expect(await names()).not.toContain('changing__fresh');
    const gone = await gw.client.callTool({ name: 'changing__fresh', arguments: {} });
    expect(errorCode(gone)).toBe('UNKNOWN_TOOL');
  });

  it("re-announces a child's prompts/list_changed and resources/list_changed with the new catalog", async () => {
    const prompts = () => notificationsOf(received, 'notifications/prompts/list_changed').length;
    const resources = () => notificationsOf(received, 'notifications/resources/list_changed').length;
    expect((await gw.client.listPrompts()).prompts.map((p) => p.name)).toContain('catalog__base');

    const beforePrompts = prompts();
    await gw.client.callTool({ name: 'catalog__add_prompt', arguments: { name: 'later' } });
    await waitFor(() => prompts() > beforePrompts, 10_000, 'prompts/list_changed');
    expect((await gw.client.listPrompts()).prompts.map((p) => p.name)).toContain('catalog__later');
    expect((await gw.client.getPrompt({ name: 'catalog__later' })).messages[0]!.content).toEqual({ type: 'text', text: 'prompt later' });

    const beforeResources = resources();
    await gw.client.callTool({ name: 'catalog__add_resource', arguments: { name: 'later' } });
    await waitFor(() => resources() > beforeResources, 10_000, 'resources/list_changed');
    expect((await gw.client.listResources()).resources.map((r) => r.uri)).toContain('catalog://later');
    expect((await gw.client.readResource({ uri: 'catalog://later' })).contents).toEqual([
      { uri: 'catalog://later', mimeType: 'text/plain', text: 'resource later' },
    ]);
  });

  it('ends a burst of list changes with the complete catalog', async () => {
    const burst = Array.from({ length: 8 }, (_, i) => `burst-${i}`);
    const before = notificationsOf(received, 'notifications/tools/list_changed').length;
    await Promise.all(burst.map((name) => gw.client.callTool({ name: 'changing__add_tool', arguments: { name } })));
    await waitFor(
      async () => {
        const listed = new Set((await gw.client.listTools()).tools.map((t) => t.name));
        return burst.every((n) => listed.has(`changing__${n}`));
      },
      15_000,
      'every tool of the burst listed',
    );
    const after = notificationsOf(received, 'notifications/tools/list_changed').length;
    expect(after).toBeGreaterThan(before);
    expect(after - before).toBeLessThanOrEqual(burst.length);
  });

  // Last: it restarts server-everything, whose start announces list changes.
  // A 2025-era mechanism (the 2026-07-28 one is tested in eras.test.ts).
  it.skipIf(MODERN)('subscribes a restarted child again to what the agent subscribed', async () => {
    const uri = 'demo://resource/static/document/startup.md';
    const updates = () => notificationsOf(received, 'notifications/resources/updated').filter((n) => paramsOf(n)['uri'] === uri).length;
    await gw.client.subscribeResource({ uri });
    await killAndAwaitRestart(gw, 'everything');
    // The new process knows nothing of the subscription unless the gateway renewed it.
    await gw.client.callTool({ name: 'everything__toggle-subscriber-updates', arguments: {} });
    try {
      await waitFor(() => updates() > 0, 15_000, 'notifications/resources/updated from the restarted child');
    } finally {
      await gw.client.callTool({ name: 'everything__toggle-subscriber-updates', arguments: {} });
      await gw.client.unsubscribeResource({ uri });
    }
  });
});

// A 2025-era mechanism (the 2026-07-28 one is tested in eras.test.ts).
describe.skipIf(MODERN)('logging/setLevel through the gateway', () => {
  let gw: RunningGateway;
  let received: JSONRPCMessage[];

  beforeAll(async () => {
    gw = await startGateway({
      config: testConfig({
        ...PATIENT,
        servers: [
          { id: 'logger', ...fixture('logger.js') },
          { id: 'late', ...fixture('logger.js'), start: 'lazy' },
        ],
      }),
    });
    ({ received } = spy(gw));
  });

  afterAll(async () => {
    await gw?.close();
  });

  const level = async (server: string) => textOf(await gw.client.callTool({ name: `${server}__get-level`, arguments: {} }));
  const log = (server: string, args: Obj) => gw.client.callTool({ name: `${server}__log`, arguments: args });
  const messages = () => notificationsOf(received, 'notifications/message').map(paramsOf);

  it('reaches the children, also one still starting and one started later', async () => {
    // Sent at once after initialize: the eager child may still be starting.
    await gw.client.setLoggingLevel('warning');
    expect(await level('logger')).toBe('warning');
    expect(await level('late')).toBe('warning');

    await gw.client.setLoggingLevel('debug');
    expect(await level('logger')).toBe('debug');
    expect(await level('late')).toBe('debug');
  });

  it('forwards messages at or above the level, with logger "<server>/<logger>" or "<server>"', async () => {
    await gw.client.setLoggingLevel('warning');
    await log('logger', { level: 'info', data: 'below the level', logger: 'fixture' });
    await log('logger', { level: 'error', data: { note: 'above the level' }, logger: 'fixture' });
    await log('late', { level: 'critical', data: 'from late' });
    await waitFor(() => messages().some((m) => m['data'] === 'from late'), 10_000, 'the critical message');
    expect(messages().find((m) => JSON.stringify(m['data']).includes('above the level'))).toEqual({
      level: 'error',
      logger: 'logger/fixture',
      data: { note: 'above the level' },
    });
    expect(messages().find((m) => m['data'] === 'from late')).toEqual({ level: 'critical', logger: 'late', data: 'from late' });
    // Messages keep their order: the info one, sent first, would have arrived by now.
    expect(messages().some((m) => m['data'] === 'below the level')).toBe(false);

    await gw.client.setLoggingLevel('info');
    await log('logger', { level: 'info', data: 'now at the level' });
    await waitFor(() => messages().find((m) => m['data'] === 'now at the level'), 10_000, 'the info message');
  });

  it('sends the level again to a child that restarted', async () => {
    await gw.client.setLoggingLevel('notice');
    expect(await level('logger')).toBe('notice');
    await killAndAwaitRestart(gw, 'logger');
    expect(await level('logger')).toBe('notice');
  });
});
