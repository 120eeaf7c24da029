/**
 * Both protocol eras in both directions (design §9, issue 12): 2025-era and 2026-07-28 agents
 * against 2025-era and 2026-07-28 children. Sampling and elicitation in the four combinations,
 * several rounds, the sealed request state (bound, single use, unforgeable), roots from the config,
 * pushes outside a call or of an unknown call refused, list changes and resource updates on a
 * listen stream, log messages with the request, the envelope in the audit row and passed on to
 * 2026-07-28 children, `protocol: auto` probed once and remembered, and the SDK's sibling probe.
 */
import { LOG_LEVEL_META_KEY, type Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import Database from 'better-sqlite3';
import { mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, test } from 'vitest';
import {
  BIN,
  EVERYTHING,
  TEST_KEY,
  agentClient,
  anyResult,
  errorCode,
  fixture,
  startGateway,
  tempDir,
  testConfig,
  textOf,
  waitFor,
  waitListed,
  writeConfig,
  type AgentEra,
  type Obj,
  type RunningGateway,
} from '../helpers/gateway.js';
import { auditRows, statusOf } from '../helpers/security.js';

const CAPS = { sampling: {}, elicitation: {}, roots: {} };
const AGENT_ROOTS = [{ uri: 'file:///agent/root', name: 'agent' }];
const CONFIG_ROOTS = [{ uri: 'file:///srv/configured', name: 'configured' }];

/** What the agent was asked, by kind. */
interface Asked {
  elicitation: Obj[];
  sampling: Obj[];
  roots: number;
}

/** An agent's answers to sampling, elicitation and roots (a 2026-07-28 client uses them to fulfil input-required results). */
function answer(client: Client, asked: Asked): void {
  client.setRequestHandler('elicitation/create', async (request) => {
    asked.elicitation.push(request.params as Obj);
    return { action: 'accept', content: { sure: true, v: `v${asked.elicitation.length}` } };
  });
  client.setRequestHandler('sampling/createMessage', async (request) => {
    asked.sampling.push(request.params as Obj);
    return { role: 'assistant', model: 'test-model', content: { type: 'text', text: 'a model answer' } };
  });
  client.setRequestHandler('roots/list', async () => {
    asked.roots++;
    return { roots: AGENT_ROOTS };
  });
}

const fresh = (): Asked => ({ elicitation: [], sampling: [], roots: 0 });

const SERVERS = [
  // The same v2 server spoken to in each era: 2026-07-28 (input-required results) and 2025 (the
  // SDK's shim turns them into requests pushed to the gateway during the call).
  { id: 'modern', ...fixture('modern.js'), protocol: 'modern' },
  { id: 'old', ...fixture('modern.js'), protocol: 'legacy' },
  { id: 'rooted', ...fixture('modern.js'), protocol: 'modern', roots: CONFIG_ROOTS },
  { id: 'everything', command: process.execPath, args: [EVERYTHING, 'stdio'] },
  { id: 'everyroot', command: process.execPath, args: [EVERYTHING, 'stdio'], roots: CONFIG_ROOTS },
];

describe.each(['legacy', 'modern'] as const)('a %s agent', (era: AgentEra) => {
  let gw: RunningGateway;
  const asked = fresh();

  beforeAll(async () => {
    gw = await startGateway({
      agent: era,
      config: testConfig({ servers: SERVERS, limits: { listWaitMs: 30_000 } }),
      capabilities: CAPS,
      beforeConnect: (client) => answer(client, asked),
    });
    await waitListed(gw.client, ['modern__confirm', 'old__confirm', 'rooted__list-roots', 'everything__echo', 'everyroot__echo']);
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
  });

  const call = (name: string, args: Obj = {}, meta?: Obj) =>
    gw.client.callTool({ name, arguments: args, ...(meta ? { _meta: meta } : {}) }, { timeout: 60_000 }) as Promise<Obj>;

  for (const child of ['modern', 'old'] as const) {
    const childEra = child === 'modern' ? '2026-07-28' : '2025';
    it(`elicitation from a ${childEra} child reaches the agent and its answer the child`, async () => {
      const before = asked.elicitation.length;
      const result = await call(`${child}__confirm`, { action: 'deploy' });
      expect(textOf(result)).toBe(`deploy: accept {"sure":true,"v":"v${before + 1}"}`);
      expect(asked.elicitation.slice(before)).toEqual([expect.objectContaining({ message: 'Really deploy?' })]);
    });

    it(`sampling from a ${childEra} child reaches the agent and its answer the child`, async () => {
      const before = asked.sampling.length;
      const result = await call(`${child}__ask-model`, { prompt: 'what is 2+2?' });
      expect(textOf(result)).toBe('model said: a model answer');
      expect(asked.sampling.slice(before)).toEqual([
        expect.objectContaining({ messages: [{ role: 'user', content: { type: 'text', text: 'what is 2+2?' } }] }),
      ]);
    });

    it(`two rounds of input from a ${childEra} child, in order`, async () => {
      const before = asked.elicitation.length;
      const result = await call(`${child}__two-questions`);
      expect(textOf(result)).toBe(`v${before + 1}+v${before + 2}`);
      expect(asked.elicitation.slice(before).map((e) => e['message'])).toEqual(['first?', 'second?']);
    });

    it(`roots of a ${childEra} child come from the agent during a call`, async () => {
      const result = await call(`${child}__list-roots`);
      expect(JSON.parse(textOf(result))).toEqual(AGENT_ROOTS);
    });
  }

  it('roots the config gives a server are its roots, whoever calls (2026-07-28 and 2025 children): the agent is not asked', async () => {
    const before = asked.roots;
    expect(JSON.parse(textOf(await call('rooted__list-roots')))).toEqual(CONFIG_ROOTS);
    expect(textOf(await call('everyroot__get-roots-list'))).toContain('file:///srv/configured');
    expect(asked.roots).toBe(before);
  });

  it('server-everything: sampling and elicitation through the gateway', async () => {
    const sampled = await call('everything__trigger-sampling-request', { prompt: 'hello', maxTokens: 5 });
    expect(textOf(sampled)).toContain('a model answer');
    const elicited = await call('everything__trigger-elicitation-request');
    expect(textOf(elicited)).toContain('User provided the requested information');
    expect(asked.elicitation.at(-1)).toHaveProperty('requestedSchema');
  });

  it('every round is audited as a call of its own, with the agent and its protocol in meta', async () => {
    const rows = auditRows(gw.dir).filter((r) => r['server'] === 'modern' && r['name'] === 'two-questions');
    // 2025 agent: one call (the gateway asked the agent within it); 2026-07-28: one per round.
    expect(rows).toHaveLength(era === 'legacy' ? 1 : 3);
    expect(rows.every((r) => r['status'] === 'ok')).toBe(true);
    if (era === 'modern') {
      const meta = JSON.parse(String(rows[0]!['meta'])) as Obj;
      expect(meta).toMatchObject({
        'io.modelcontextprotocol/clientInfo': { name: 'test-agent' },
        'io.modelcontextprotocol/protocolVersion': '2026-07-28',
      });
    }
  });

  it("a 2026-07-28 child gets the agent's capabilities (those the gateway relays) and log level with each request", async () => {
    const result = await call('modern__envelope', {}, { [LOG_LEVEL_META_KEY]: 'warning' });
    const { envelope } = JSON.parse(textOf(result)) as { envelope: Obj };
    // `elicitation: {}` means form mode; the 2025 handshake may spell it out.
    const caps = envelope['io.modelcontextprotocol/clientCapabilities'] as Obj;
    expect({ ...caps, elicitation: {} }).toEqual(CAPS);
    expect([{}, { form: {} }]).toContainEqual(caps['elicitation']);
    expect(envelope['io.modelcontextprotocol/clientInfo']).toMatchObject({ name: 'mcp-gateway' });
    if (era === 'modern') expect(envelope['io.modelcontextprotocol/logLevel']).toBe('warning');
  });

  it("a child's tools/list_changed reaches the agent (a 2026-07-28 agent on its listen stream)", async () => {
    for (const child of ['modern', 'old']) {
      let changed = 0;
      gw.client.setNotificationHandler('notifications/tools/list_changed', async () => {
        changed++;
      });
      const added = textOf(await call(`${child}__add-tool`));
      await waitFor(() => changed > 0, 15_000, `tools/list_changed from ${child}`);
      await waitListed(gw.client, `${child}__${added}`);
      expect(textOf(await call(`${child}__${added}`))).toBe(added);
    }
  });
});

describe('a 2026-07-28 agent handling input-required results itself', () => {
  let gw: RunningGateway;

  beforeAll(async () => {
    gw = await startGateway({
      agent: 'modern',
      autoFulfill: false,
      config: testConfig({ servers: SERVERS.slice(0, 2) }),
      capabilities: CAPS,
    });
    await waitListed(gw.client, ['modern__confirm', 'old__confirm']);
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
  });

  const request = (params: Obj) =>
    gw.client.request({ method: 'tools/call', params } as never, anyResult, {
      timeout: 60_000,
      allowInputRequired: true,
    } as never) as Promise<Obj>;

  for (const child of ['modern', 'old']) {
    it(`${child}: the state is sealed, bound to the call, good once; the answer completes the call`, async () => {
      const params = { name: `${child}__confirm`, arguments: { action: 'pay' } };
      const first = await request(params);
      expect(first['resultType']).toBe('input_required');
      const requests = first['inputRequests'] as Record<string, Obj>;
      const [key] = Object.keys(requests);
      expect(requests[key!]).toMatchObject({ method: 'elicitation/create', params: { message: 'Really pay?' } });
      const state = String(first['requestState']);
      // The child's own state ("confirm:pay") is not readable in the gateway's.
      expect(state).not.toContain('confirm');
      expect(Buffer.from(state.split('.')[2] ?? '', 'base64url').toString('latin1')).not.toContain('confirm');
      const inputResponses = { [key!]: { action: 'accept', content: { sure: true } } };

      // Altered, or for another call: refused before the child sees anything.
      const altered = state.slice(0, -3) + (state.endsWith('AAA') ? 'BBB' : 'AAA');
      expect(errorCode(await request({ ...params, inputResponses, requestState: altered }))).toBe('INVALID_ARGUMENTS');
      const other = await request({ ...params, arguments: { action: 'steal' }, inputResponses, requestState: state });
      expect(errorCode(other)).toBe('INVALID_ARGUMENTS');
      expect(textOf(other)).toContain('another call');

      // A refused state was not spent: the right retry still works; then it is spent.
      const done = await request({ ...params, inputResponses, requestState: state });
      expect(textOf(done)).toBe('pay: accept {"sure":true}');
      const replay = await request({ ...params, inputResponses, requestState: state });
      expect(errorCode(replay)).toBe('INVALID_ARGUMENTS');
      expect(textOf(replay)).toContain('already used');

      // One row per round; a refused state is a row of its own, with the reason.
      const rows = auditRows(gw.dir).filter((r) => r['server'] === child && r['name'] === 'confirm');
      expect(rows.map((r) => r['status'])).toEqual(['ok', 'invalid', 'invalid', 'ok', 'invalid']);
      expect(String(rows[1]!['error'])).toContain('requestState is not valid for this call (altered');
      expect(String(rows[2]!['error'])).toContain('another call');
      expect(String(rows[4]!['error'])).toContain('already used');
    });
  }

  it('a state of another gateway (another key) is refused', async () => {
    const other = await startGateway({
      agent: 'modern',
      autoFulfill: false,
      config: testConfig({ servers: SERVERS.slice(0, 1) }),
      capabilities: CAPS,
    });
    try {
      await waitListed(other.client, 'modern__confirm');
      const params = { name: 'modern__confirm', arguments: { action: 'x' } };
      const first = (await other.client.request({ method: 'tools/call', params } as never, anyResult, {
        allowInputRequired: true,
      } as never)) as Obj;
      const refused = await request({ ...params, inputResponses: {}, requestState: first['requestState'] });
      expect(errorCode(refused)).toBe('INVALID_ARGUMENTS');
    } finally {
      await other.close();
    }
  });

  it('a 2025-era child whose push cannot be tied to one call: refused and logged, the calls answer', async () => {
    // A call in progress at the child, then one that asks for input: two calls, one push.
    const sleeping = request({ name: 'old__sleep', arguments: { ms: 1_500 } });
    await new Promise((r) => setTimeout(r, 200));
    const confirm = await request({ name: 'old__confirm', arguments: { action: 'both' } });
    expect(confirm['isError']).toBe(true);
    expect(textOf(await sleeping)).toBe('slept 1500');
    expect(gw.stderr()).toMatch(/refused elicitation\/create from server "old": 2 calls of the agent are in progress there/);
  });
});

describe('pushes outside any call', () => {
  test("a 2026-07-28 agent: server-everything's roots/list after it connects is refused and logged, or answered from the config", async () => {
    const asked = fresh();
    const gw = await startGateway({
      agent: 'modern',
      config: testConfig({ servers: SERVERS.slice(3) }),
      capabilities: CAPS,
      beforeConnect: (client) => answer(client, asked),
    });
    try {
      await waitListed(gw.client, ['everything__echo', 'everyroot__echo']);
      // server-everything asks for roots 350 ms after it is initialized, outside any call.
      await waitFor(
        () => /refused roots\/list from server "everything": no call of the agent is in progress there/.test(gw.stderr()),
        10_000,
        'refusal logged',
      );
      expect(gw.stderr()).not.toMatch(/refused roots\/list from server "everyroot"/);
      expect(asked.roots).toBe(0);
      // Within a call it reaches the agent.
      expect(textOf(await gw.client.callTool({ name: 'everything__get-roots-list', arguments: {} }))).toContain('file:///agent/root');
    } finally {
      await gw.close();
    }
  });
});

test('a 2026-07-28 agent that declares no input capability: a 2025 child cannot ask it anything, the call answers', async () => {
  const gw = await startGateway({ agent: 'modern', config: testConfig({ servers: SERVERS.slice(0, 2) }) });
  try {
    await waitListed(gw.client, 'old__confirm');
    const result = await gw.client.callTool({ name: 'old__confirm', arguments: { action: 'pay' } });
    expect(result['resultType']).not.toBe('input_required');
    expect(result.isError).toBe(true);
    // The child was told the agent cannot answer (its client declares what the agent's first request did).
    expect(textOf(result)).toMatch(/elicitation/i);
    expect(textOf(await gw.client.callTool({ name: 'old__echo', arguments: { message: 'still here' } }))).toContain('still here');
  } finally {
    await gw.close();
  }
});

describe('logs and resource updates for a 2026-07-28 agent', () => {
  test("a child's log message goes with the request that asked for its level; below the level it does not", async () => {
    const gw = await startGateway({ agent: 'modern', config: testConfig({ servers: SERVERS.slice(0, 2) }) });
    try {
      await waitListed(gw.client, ['modern__log', 'old__log']);
      const messages: Obj[] = [];
      gw.client.setNotificationHandler('notifications/message', async (n) => {
        messages.push(n.params as Obj);
      });
      for (const child of ['modern', 'old']) {
        await gw.client.callTool({
          name: `${child}__log`,
          arguments: { level: 'info', data: `${child} says hi` },
          _meta: { [LOG_LEVEL_META_KEY]: 'info' },
        });
        await gw.client.callTool({
          name: `${child}__log`,
          arguments: { level: 'info', data: `${child} too low` },
          _meta: { [LOG_LEVEL_META_KEY]: 'error' },
        });
      }
      await waitFor(() => messages.length >= 2, 10_000, 'two log messages');
      await new Promise((r) => setTimeout(r, 300));
      expect(messages.map((m) => [m['logger'], m['data']])).toEqual([
        ['modern/modern-logger', 'modern says hi'],
        ['old/modern-logger', 'old says hi'],
      ]);
    } finally {
      await gw.close();
    }
  });

  test('resources subscribed on a listen stream pass the pipeline (denied ones are not subscribed) and their updates arrive there', async () => {
    const gw = await startGateway({
      agent: 'modern',
      config: testConfig({
        servers: [{ id: 'everything', command: process.execPath, args: [EVERYTHING, 'stdio'] }],
        policies: [
          {
            id: 'admin',
            roles: ['admin'],
            rules: [
              { resource: 'demo://resource/dynamic/text/2', action: 'deny' },
              { action: 'allow' },
              { server: 'gateway', action: 'allow' },
            ],
          },
        ],
        limits: { listWaitMs: 30_000 },
      }),
    });
    try {
      await waitListed(gw.client, 'everything__toggle-subscriber-updates');
      const updated: string[] = [];
      gw.client.setNotificationHandler('notifications/resources/updated', async (n) => {
        updated.push(String((n.params as Obj)['uri']));
      });
      await gw.client.listen({ resourceSubscriptions: ['demo://resource/dynamic/text/1', 'demo://resource/dynamic/text/2'] });
      await gw.client.callTool({ name: 'everything__toggle-subscriber-updates', arguments: {} });
      await waitFor(() => updated.includes('demo://resource/dynamic/text/1'), 20_000, 'an update of text/1');
      expect(updated).not.toContain('demo://resource/dynamic/text/2');
      const rows = auditRows(gw.dir).filter((r) => r['method'] === 'resources/subscribe');
      expect(rows.map((r) => [r['name'], r['status']])).toEqual(
        expect.arrayContaining([
          ['demo://resource/dynamic/text/1', 'ok'],
          ['demo://resource/dynamic/text/2', 'denied'],
        ]),
      );
    } finally {
      await gw.close();
    }
  });
});

describe('the protocol of a child', () => {
  test('protocol: auto is probed once and remembered in the database: the next start does not probe', async () => {
    const dir = tempDir();
    const config = testConfig({
      servers: [
        { id: 'auto2026', ...fixture('modern.js'), protocol: 'auto' },
        { id: 'auto2025', ...fixture('echo.js'), protocol: 'auto' },
        { id: 'plain', ...fixture('echo.js') },
      ],
    });
    for (const run of [1, 2]) {
      const gw = await startGateway({ dir, config });
      try {
        await waitListed(gw.client, ['auto2026__echo', 'auto2025__echo', 'plain__echo']);
        expect((await statusOf(gw.client, 'auto2026'))['protocol']).toEqual({ configured: 'auto', era: 'modern' });
        expect((await statusOf(gw.client, 'auto2025'))['protocol']).toEqual({ configured: 'auto', era: 'legacy' });
        expect((await statusOf(gw.client, 'plain'))['protocol']).toEqual({ configured: 'legacy', era: 'legacy' });
        expect(textOf(await gw.client.callTool({ name: 'auto2026__echo', arguments: { message: 'm' } }))).toBe('m');
        const probed = gw.stderr().match(/protocol: .*remembered for the next starts/g) ?? [];
        expect(probed).toHaveLength(run === 1 ? 2 : 0);
      } finally {
        await gw.close();
      }
    }
    const db = new Database(path.join(dir, 'gateway.db'), { readonly: true });
    try {
      const rows = db.prepare('SELECT server, verdict FROM server_protocol ORDER BY server').all() as { server: string; verdict: string }[];
      expect(rows.map((r) => [r.server, (JSON.parse(r.verdict) as Obj)['kind']])).toEqual([
        ['auto2025', 'legacy'],
        ['auto2026', 'modern'],
      ]);
    } finally {
      db.close();
    }
  });

  test("an agent probing the era on a disposable second gateway process (the SDK's own stdio transport) starts each child once", async () => {
    const dir = tempDir();
    const markers = path.join(dir, 'markers');
    mkdirSync(markers);
    const configFile = writeConfig(
      dir,
      testConfig({ servers: [{ id: 'crash', ...fixture('crash.js'), env: { FIXTURE_MARKER_DIR: markers } }] }),
    );
    const client = agentClient('modern');
    await client.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: [BIN, 'serve', '--config', configFile],
        env: { PATH: process.env['PATH'] ?? '', HOME: dir, TEST_KEY, MCP_GATEWAY_API_KEY: TEST_KEY },
        stderr: 'ignore',
        cwd: dir,
      }),
    );
    try {
      expect(client.getProtocolEra()).toBe('modern');
      await waitListed(client, 'crash__ok');
      await new Promise((r) => setTimeout(r, 500));
      expect(readdirSync(markers).filter((f) => f.endsWith('.started'))).toHaveLength(1);
    } finally {
      await client.close();
    }
  });
});
