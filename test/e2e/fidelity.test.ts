/**
 * MCP fidelity through a real gateway process (design §9): an agent connected through the gateway
 * sees server-everything as a client connected to it directly sees it: resources, templates,
 * prompts, completions, tools, and the child's sampling, elicitation and roots requests answered
 * by the agent. Each comparison is made against a direct SDK client of server-everything.
 */
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { ProtocolError, type ClientCapabilities } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EVERYTHING,
  fixture,
  startGateway,
  testConfig,
  textOf,
  toolsAsListedTo,
  type RunningGateway,
  type Obj,
  anyResult,
} from '../helpers/gateway.js';

/** Lists (and requests that route by catalog) wait this long for children still starting: the machine may be slow. */
const PATIENT = { limits: { listWaitMs: 30_000 } };

const FULL_CAPS: ClientCapabilities = { sampling: {}, elicitation: {}, roots: { listChanged: true } };
const EVERYTHING_SERVER = { id: 'everything', command: process.execPath, args: [EVERYTHING, 'stdio'] };
const TWIN_SERVER = { id: 'twin', ...fixture('resource-twin.js') };
const CAPS_SERVER = { id: 'caps', ...fixture('client-caps.js') };
/** Listed by both server-everything and the twin fixture. */
const SHARED_URI = 'demo://resource/static/document/features.md';
const TEXT_TEMPLATE = 'demo://resource/dynamic/text/{resourceId}';
const BLOB_TEMPLATE = 'demo://resource/dynamic/blob/{resourceId}';
/** server-everything's tool that needs task-augmented calls. */
const TASK_TOOL = 'simulate-research-query';

const SAMPLED = {
  role: 'assistant',
  model: 'agent-model-7',
  content: { type: 'text', text: 'sampled by the agent' },
  stopReason: 'endTurn',
};
const ROOTS = [{ uri: 'file:///work/agent-root', name: 'agent-root' }];

/** What the agent's handlers were asked. */
interface Asked {
  sampling: Obj[];
  elicitation: Obj[];
  roots: number;
}

/** Registers the agent's answers to sampling, elicitation and roots (as a real client would). */
function answerServerRequests(client: Client, asked: Asked, capabilities: ClientCapabilities): void {
  if (capabilities.sampling) {
    client.setRequestHandler('sampling/createMessage', async (request) => {
      asked.sampling.push(request.params as Obj);
      return SAMPLED as never;
    });
  }
  if (capabilities.elicitation) {
    client.setRequestHandler('elicitation/create', async (request) => {
      asked.elicitation.push(request.params as Obj);
      return { action: 'accept', content: { name: 'Ada Lovelace', check: true, integer: 7 } };
    });
  }
  if (capabilities.roots) {
    client.setRequestHandler('roots/list', async () => {
      asked.roots++;
      return { roots: ROOTS };
    });
  }
}

/** A client connected to server-everything directly, with the same capabilities as the agent. */
async function connectDirect(capabilities: ClientCapabilities): Promise<Client> {
  const transport = new StdioClientTransport({ command: process.execPath, args: [EVERYTHING, 'stdio'], stderr: 'ignore' });
  const client = new Client({ name: 'direct', version: '1.0.0' }, { capabilities });
  answerServerRequests(client, { sampling: [], elicitation: [], roots: 0 }, capabilities);
  await client.connect(transport);
  return client;
}

/** The capabilities the client-caps fixture sees from a client connected to it directly. */
async function declaredDirectly(capabilities: ClientCapabilities): Promise<unknown> {
  const transport = new StdioClientTransport({ ...fixture('client-caps.js'), stderr: 'ignore' });
  const client = new Client({ name: 'direct', version: '1.0.0' }, { capabilities });
  await client.connect(transport);
  try {
    return JSON.parse(textOf(await client.callTool({ name: 'client-capabilities', arguments: {} })));
  } finally {
    await client.close();
  }
}

const list = async (client: Client, method: string, key: string): Promise<Obj[]> => {
  const result = await client.request({ method, params: {} } as never, anyResult);
  return result[key] as Obj[];
};
const raw = (client: Client, method: string, params: Obj): Promise<Obj> => client.request({ method, params } as never, anyResult);

/** server-everything stamps dynamic content with the time of day; the rest must match exactly. */
function withoutTimestamps(value: unknown): unknown {
  return JSON.parse(
    JSON.stringify(value, (key, v) => {
      if (typeof v !== 'string') return v;
      if (key === 'blob')
        return Buffer.from(v, 'base64')
          .toString('utf8')
          .replace(/created at .*$/, 'created at <time>');
      return v.replace(/created at .*$/, 'created at <time>');
    }),
  );
}

const withoutPrefix = (entries: Obj[], server: string): Obj[] =>
  entries
    .filter((e) => String(e['name']).startsWith(`${server}__`))
    .map((e) => ({ ...e, name: String(e['name']).slice(server.length + 2) }));

async function serverStatus(
  client: Client,
): Promise<{ servers: Obj[]; uriConflicts: { uri: string; servers: string[]; servedBy: string }[] }> {
  const result = await client.callTool({ name: 'server_status', arguments: {} });
  expect(result.isError).not.toBe(true);
  return result.structuredContent as never;
}

describe('server-everything through the gateway, to an agent with sampling, elicitation and roots', () => {
  let gw: RunningGateway;
  let direct: Client;
  const asked: Asked = { sampling: [], elicitation: [], roots: 0 };

  beforeAll(async () => {
    [gw, direct] = await Promise.all([
      startGateway({
        config: testConfig({ ...PATIENT, servers: [EVERYTHING_SERVER, TWIN_SERVER, CAPS_SERVER] }),
        capabilities: FULL_CAPS,
        beforeConnect: (client) => answerServerRequests(client, asked, FULL_CAPS),
      }),
      connectDirect(FULL_CAPS),
    ]);
  });

  afterAll(async () => {
    await Promise.all([gw?.close(), direct?.close()]);
  });

  it('lists all 7 static resources of server-everything exactly as a direct client sees them', async () => {
    const [through, own] = await Promise.all([list(gw.client, 'resources/list', 'resources'), list(direct, 'resources/list', 'resources')]);
    expect(own).toHaveLength(7);
    expect(through.filter((r) => String(r['uri']).startsWith('demo://'))).toEqual(own);
    // The twin's own resource is there too, its unknown field kept; the shared URI only once.
    expect(through.find((r) => r['uri'] === 'twin://only/readme')).toMatchObject({ name: 'twin-readme', 'x-twin': 'own' });
    expect(through.filter((r) => r['uri'] === SHARED_URI)).toHaveLength(1);
    expect(through).toHaveLength(8);
  });

  it('reads every static resource with the same contents as a direct read', async () => {
    const resources = await list(direct, 'resources/list', 'resources');
    for (const { uri } of resources) {
      const [through, own] = await Promise.all([raw(gw.client, 'resources/read', { uri }), raw(direct, 'resources/read', { uri })]);
      expect(through, String(uri)).toEqual(own);
      expect((through['contents'] as Obj[])[0]!['text']).toEqual(expect.any(String));
    }
  });

  it('lists both templates unchanged and routes template URIs to the server that owns them', async () => {
    const [through, own] = await Promise.all([
      list(gw.client, 'resources/templates/list', 'resourceTemplates'),
      list(direct, 'resources/templates/list', 'resourceTemplates'),
    ]);
    expect(own.map((t) => t['uriTemplate'])).toEqual([TEXT_TEMPLATE, BLOB_TEMPLATE]);
    expect(through.filter((t) => String(t['uriTemplate']).startsWith('demo://'))).toEqual(own);
    expect(through.find((t) => t['uriTemplate'] === 'twin://item/{id}')).toMatchObject({ name: 'twin-item', 'x-twin': 'template' });

    for (const uri of ['demo://resource/dynamic/text/1', 'demo://resource/dynamic/blob/2', 'demo://resource/dynamic/text/345']) {
      const [viaGateway, viaDirect] = await Promise.all([
        raw(gw.client, 'resources/read', { uri }),
        raw(direct, 'resources/read', { uri }),
      ]);
      expect(withoutTimestamps(viaGateway), uri).toEqual(withoutTimestamps(viaDirect));
      expect((viaGateway['contents'] as Obj[])[0]!['uri']).toBe(uri);
    }
    // The twin's template URI goes to the twin, and its result's unknown field survives.
    expect(await raw(gw.client, 'resources/read', { uri: 'twin://item/42' })).toEqual({
      contents: [{ uri: 'twin://item/42', mimeType: 'text/plain', text: 'twin serves twin://item/42' }],
      'x-read-extra': 'twin',
    });
  });

  it("passes a child's own resource error through, and refuses a URI no server offers as not found", async () => {
    // server-everything rejects a template match whose id is not a positive integer.
    const bad = await raw(gw.client, 'resources/read', { uri: 'demo://resource/dynamic/text/zero' }).catch((e: unknown) => e);
    const badDirect = await raw(direct, 'resources/read', { uri: 'demo://resource/dynamic/text/zero' }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(ProtocolError);
    expect((bad as ProtocolError).code).toBe((badDirect as ProtocolError).code);

    const unknown = await raw(gw.client, 'resources/read', { uri: 'nowhere://nothing' }).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(ProtocolError);
    // Resource not found is -32602 (SEP-2164; the SDK v2 writes -32002 as -32602 on the wire).
    expect((unknown as ProtocolError).code).toBe(-32602);
    expect(((unknown as ProtocolError).data as Obj)['code']).toBe('UNKNOWN_TOOL');
  });

  it('serves a URI two servers list from the first in config order, lists it once, and reports it in uriConflicts', async () => {
    const resources = await list(gw.client, 'resources/list', 'resources');
    expect(resources.filter((r) => r['uri'] === SHARED_URI)).toEqual([
      expect.objectContaining({ name: 'features.md', mimeType: 'text/markdown' }),
    ]);
    const [through, own] = await Promise.all([
      raw(gw.client, 'resources/read', { uri: SHARED_URI }),
      raw(direct, 'resources/read', { uri: SHARED_URI }),
    ]);
    expect(through).toEqual(own);

    const status = await serverStatus(gw.client);
    expect(status.uriConflicts).toContainEqual({ uri: SHARED_URI, servers: ['everything', 'twin'], servedBy: 'everything' });
    expect(status.uriConflicts.some((c) => c.uri === 'twin://only/readme')).toBe(false);

    // The other way round, the twin is first and serves it.
    const reversed = await startGateway({ config: testConfig({ ...PATIENT, servers: [TWIN_SERVER, EVERYTHING_SERVER] }) });
    try {
      const listed = await list(reversed.client, 'resources/list', 'resources');
      expect(listed.filter((r) => r['uri'] === SHARED_URI)).toEqual([
        expect.objectContaining({ name: 'twin-features', 'x-twin': 'shared' }),
      ]);
      expect(listed).toHaveLength(8);
      expect(await raw(reversed.client, 'resources/read', { uri: SHARED_URI })).toMatchObject({
        contents: [{ uri: SHARED_URI, text: `twin serves ${SHARED_URI}` }],
      });
      // Other URIs of server-everything still go to it.
      const other = await raw(reversed.client, 'resources/read', { uri: 'demo://resource/static/document/startup.md' });
      expect(other).toEqual(await raw(direct, 'resources/read', { uri: 'demo://resource/static/document/startup.md' }));
      expect((await serverStatus(reversed.client)).uriConflicts).toContainEqual({
        uri: SHARED_URI,
        servers: ['twin', 'everything'],
        servedBy: 'twin',
      });
    } finally {
      await reversed.close();
    }
  });

  it('lists the 4 prompts as <server>__<prompt> with their arguments unchanged', async () => {
    const [through, own] = await Promise.all([list(gw.client, 'prompts/list', 'prompts'), list(direct, 'prompts/list', 'prompts')]);
    expect(own.map((p) => p['name'])).toEqual(['simple-prompt', 'args-prompt', 'completable-prompt', 'resource-prompt']);
    expect(through.map((p) => p['name'])).toEqual(own.map((p) => `everything__${String(p['name'])}`));
    expect(withoutPrefix(through, 'everything')).toEqual(own);
  });

  it('gets each prompt, with its arguments, as a direct client does', async () => {
    const cases: { name: string; arguments?: Record<string, string> }[] = [
      { name: 'simple-prompt' },
      { name: 'args-prompt', arguments: { city: 'Lyon', state: 'Rhône' } },
      { name: 'args-prompt', arguments: { city: 'Oslo' } },
      { name: 'completable-prompt', arguments: { department: 'Sales', name: 'Eve' } },
      { name: 'resource-prompt', arguments: { resourceType: 'Text', resourceId: '3' } },
      { name: 'resource-prompt', arguments: { resourceType: 'Blob', resourceId: '4' } },
    ];
    for (const c of cases) {
      const [through, own] = await Promise.all([
        raw(gw.client, 'prompts/get', { ...c, name: `everything__${c.name}` }),
        raw(direct, 'prompts/get', c),
      ]);
      expect(withoutTimestamps(through), JSON.stringify(c)).toEqual(withoutTimestamps(own));
    }
    const args = await gw.client.getPrompt({ name: 'everything__args-prompt', arguments: { city: 'Lyon', state: 'Rhône' } });
    expect(args.messages[0]!.content).toEqual({ type: 'text', text: "What's weather in Lyon, Rhône?" });
  });

  it("passes a prompt's own error through and refuses an unknown prompt", async () => {
    const bad = await gw.client
      .getPrompt({ name: 'everything__resource-prompt', arguments: { resourceType: 'Nope', resourceId: '1' } })
      .catch((e: unknown) => e);
    const badDirect = await direct
      .getPrompt({ name: 'resource-prompt', arguments: { resourceType: 'Nope', resourceId: '1' } })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(ProtocolError);
    expect((bad as ProtocolError).code).toBe((badDirect as ProtocolError).code);

    const unknown = await gw.client.getPrompt({ name: 'everything__no-such-prompt' }).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(ProtocolError);
    expect(((unknown as ProtocolError).data as Obj)['code']).toBe('UNKNOWN_TOOL');
  });

  it('completes prompt arguments and template variables at the server that owns them', async () => {
    const department = await gw.client.complete({
      ref: { type: 'ref/prompt', name: 'everything__completable-prompt' },
      argument: { name: 'department', value: 'E' },
    });
    expect(department.completion.values).toEqual(['Engineering']);

    const name = await gw.client.complete({
      ref: { type: 'ref/prompt', name: 'everything__completable-prompt' },
      argument: { name: 'name', value: '' },
      context: { arguments: { department: 'Sales' } },
    });
    expect(name.completion).toEqual(
      (
        await direct.complete({
          ref: { type: 'ref/prompt', name: 'completable-prompt' },
          argument: { name: 'name', value: '' },
          context: { arguments: { department: 'Sales' } },
        })
      ).completion,
    );
    expect(name.completion.values).toEqual(['David', 'Eve', 'Frank']);

    const resourceId = await gw.client.complete({
      ref: { type: 'ref/resource', uri: TEXT_TEMPLATE },
      argument: { name: 'resourceId', value: '17' },
    });
    expect(resourceId.completion.values).toEqual(['17']);

    const twin = await gw.client.complete({
      ref: { type: 'ref/resource', uri: 'twin://item/{id}' },
      argument: { name: 'id', value: 'twin' },
    });
    expect(twin.completion.values).toEqual(['twin-1', 'twin-2']);
  });

  it('lists every tool of server-everything as a direct client sees it, except one that requires tasks', async () => {
    const [through, own] = await Promise.all([list(gw.client, 'tools/list', 'tools'), list(direct, 'tools/list', 'tools')]);
    const ownNames = own.map((t) => String(t['name']));
    // The capabilities the agent declared reach the child: these exist only for such a client.
    expect(ownNames).toEqual(
      expect.arrayContaining(['trigger-sampling-request', 'trigger-elicitation-request', 'get-roots-list', TASK_TOOL]),
    );
    expect(withoutPrefix(through, 'everything')).toEqual(
      toolsAsListedTo(
        gw.era,
        own.filter((t) => t['name'] !== TASK_TOOL),
      ),
    );
  });

  it('leaves out a tool with execution.taskSupport "required" and shows why in server_status', async () => {
    const tools = await list(gw.client, 'tools/list', 'tools');
    expect(tools.some((t) => String(t['name']).includes(TASK_TOOL))).toBe(false);
    const status = await serverStatus(gw.client);
    const everything = status.servers.find((s) => s['id'] === 'everything')!;
    const excluded = everything['excludedTools'] as { name: string; reason: string }[];
    expect(excluded).toEqual([{ name: TASK_TOOL, reason: expect.stringContaining('taskSupport') }]);

    const called = await gw.client.callTool({ name: `everything__${TASK_TOOL}`, arguments: { topic: 'x' } });
    expect(called.isError).toBe(true);
    expect((called._meta?.['mcp-gateway/error'] as Obj | undefined)?.['code']).toBe('UNKNOWN_TOOL');
  });

  it('declares to the children exactly the capabilities the agent declared', async () => {
    const declared = JSON.parse(textOf(await gw.client.callTool({ name: 'caps__client-capabilities', arguments: {} })));
    expect(declared).toEqual(await declaredDirectly(FULL_CAPS));
    expect(declared).toMatchObject(FULL_CAPS);
  });

  it("relays the child's sampling request to the agent and the agent's answer back", async () => {
    const before = asked.sampling.length;
    const result = await gw.client.callTool({
      name: 'everything__trigger-sampling-request',
      arguments: { prompt: 'hello from the test', maxTokens: 33 },
    });
    expect(result.isError).not.toBe(true);
    expect(asked.sampling.length).toBe(before + 1);
    const params = asked.sampling[before]!;
    expect(params).toMatchObject({ maxTokens: 33, systemPrompt: 'You are a helpful test server.' });
    expect(JSON.stringify(params['messages'])).toContain('hello from the test');
    const text = textOf(result);
    expect(text).toContain('agent-model-7');
    expect(text).toContain('sampled by the agent');
  });

  it("relays the child's elicitation request to the agent and the agent's answer back", async () => {
    const before = asked.elicitation.length;
    const result = await gw.client.callTool({ name: 'everything__trigger-elicitation-request', arguments: {} });
    expect(result.isError).not.toBe(true);
    expect(asked.elicitation.length).toBe(before + 1);
    expect(asked.elicitation[before]).toMatchObject({ message: expect.any(String), requestedSchema: { required: ['name'] } });
    const all = (result.content as { type: string; text: string }[]).map((c) => c.text).join('\n');
    expect(all).toContain('- Name: Ada Lovelace');
    expect(all).toContain('- Favorite Integer: 7');
  });

  it("relays the child's roots/list to the agent and returns the agent's roots", async () => {
    const result = await gw.client.callTool({ name: 'everything__get-roots-list', arguments: {} });
    expect(asked.roots).toBeGreaterThan(0);
    expect(textOf(result)).toContain('agent-root');
    expect(textOf(result)).toContain('file:///work/agent-root');
  });
});

describe('an agent that declares elicitation and roots (without listChanged) but no sampling', () => {
  const CAPS: ClientCapabilities = { elicitation: {}, roots: {} };
  let gw: RunningGateway;
  let direct: Client;
  const asked: Asked = { sampling: [], elicitation: [], roots: 0 };

  beforeAll(async () => {
    [gw, direct] = await Promise.all([
      startGateway({
        config: testConfig({ ...PATIENT, servers: [EVERYTHING_SERVER, CAPS_SERVER] }),
        capabilities: CAPS,
        beforeConnect: (client) => {
          client.setRequestHandler('elicitation/create', async (request) => {
            asked.elicitation.push(request.params as Obj);
            return { action: 'decline' };
          });
          client.setRequestHandler('roots/list', async () => ({ roots: [] }));
        },
      }),
      connectDirect(CAPS),
    ]);
  });

  afterAll(async () => {
    await Promise.all([gw?.close(), direct?.close()]);
  });

  it('gets no sampling tool from the child, as a direct client with the same capabilities', async () => {
    const [through, own] = await Promise.all([list(gw.client, 'tools/list', 'tools'), list(direct, 'tools/list', 'tools')]);
    const names = withoutPrefix(through, 'everything').map((t) => t['name']);
    expect(names).not.toContain('trigger-sampling-request');
    expect(names).toContain('trigger-elicitation-request');
    expect(names).toContain('get-roots-list');
    expect(names).toContain('echo');
    expect(withoutPrefix(through, 'everything')).toEqual(
      toolsAsListedTo(
        gw.era,
        own.filter((t) => t['name'] !== TASK_TOOL),
      ),
    );
  });

  it('declares to the children exactly these capabilities', async () => {
    const declared = JSON.parse(textOf(await gw.client.callTool({ name: 'caps__client-capabilities', arguments: {} })));
    expect(declared).toEqual(await declaredDirectly(CAPS));
    expect(declared).not.toHaveProperty('sampling');
    expect(declared).toMatchObject({ roots: {} });
    expect(declared.roots).not.toHaveProperty('listChanged');
  });

  it('still relays elicitation, the capability it declared', async () => {
    const result = await gw.client.callTool({ name: 'everything__trigger-elicitation-request', arguments: {} });
    expect(asked.elicitation).toHaveLength(1);
    expect((result.content as { text: string }[]).map((c) => c.text).join('\n')).toContain('declined');
  });
});

describe('requests that come before any list, while the children are still starting', () => {
  let gw: RunningGateway;
  let direct: Client;

  beforeAll(async () => {
    [gw, direct] = await Promise.all([
      startGateway({
        config: testConfig({ ...PATIENT, servers: [EVERYTHING_SERVER, TWIN_SERVER, { id: 'many', ...fixture('many-tools.js') }] }),
      }),
      connectDirect({}),
    ]);
  });

  afterAll(async () => {
    await Promise.all([gw?.close(), direct?.close()]);
  });

  it('routes resource reads, a subscription, completions and a bare tool name once the servers are in', async () => {
    // All sent at once as the agent's first requests: no list has waited for the servers yet.
    const [read, templateRead, subscribed, completed, promptCompleted, called] = await Promise.all([
      raw(gw.client, 'resources/read', { uri: 'demo://resource/static/document/startup.md' }),
      raw(gw.client, 'resources/read', { uri: 'twin://item/7' }),
      // A 2026-07-28 agent subscribes on a listen stream (its subscription passes the pipeline the same way).
      gw.era === 'modern'
        ? gw.client.listen({ resourceSubscriptions: ['demo://resource/static/document/startup.md'] }).then(() => ({}))
        : raw(gw.client, 'resources/subscribe', { uri: 'demo://resource/static/document/startup.md' }),
      gw.client.complete({ ref: { type: 'ref/resource', uri: TEXT_TEMPLATE }, argument: { name: 'resourceId', value: '5' } }),
      gw.client.complete({
        ref: { type: 'ref/prompt', name: 'everything__completable-prompt' },
        argument: { name: 'department', value: 'Ma' },
      }),
      raw(gw.client, 'tools/call', { name: 'call', arguments: { tool: 'tool_042' } }),
    ]);
    expect(promptCompleted.completion.values).toEqual(['Marketing']);
    expect(read).toEqual(await raw(direct, 'resources/read', { uri: 'demo://resource/static/document/startup.md' }));
    expect(templateRead).toMatchObject({ contents: [{ text: 'twin serves twin://item/7' }] });
    expect(subscribed).toEqual({});
    expect(completed.completion.values).toEqual(['5']);
    expect(called).toEqual({ content: [{ type: 'text', text: '042' }], 'x-result-extra': true });
  });
});
