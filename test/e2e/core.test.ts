/**
 * The core of the MCP surface through a real `mcp-gateway serve` process (design §8, §9, §10):
 * initialize is answered at once, tools are listed as <server>__<tool> with the child's definition
 * unchanged, results pass unchanged, refusals carry error codes, the gateway's own tools work,
 * stdout carries only JSON-RPC, malformed input is answered, and server-everything works through
 * the gateway exactly as it does directly, without seeing the gateway's environment.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  BIN,
  EVERYTHING,
  FIXTURES,
  TEST_KEY,
  errorCode,
  fixture,
  startGateway,
  tempDir,
  testConfig,
  textOf,
  waitFor,
  writeConfig,
  toolsAsListedTo,
  type RunningGateway,
  type Obj,
  anyResult,
} from '../helpers/gateway.js';

/** A request whose result comes back exactly as sent (no SDK re-parsing). */
async function raw(client: Client, method: string, params: Obj = {}): Promise<Obj> {
  return (await client.request({ method, params } as never, anyResult, { timeout: 60_000 })) as Obj;
}

const callRaw = (client: Client, name: string, args?: Obj) =>
  raw(client, 'tools/call', args === undefined ? { name } : { name, arguments: args });

async function listRaw(client: Client): Promise<Obj[]> {
  return (await raw(client, 'tools/list')).tools as Obj[];
}

/** The gateway's error object of a refused call. */
function gatewayError(result: Obj): Obj | undefined {
  return (result._meta as Obj | undefined)?.['mcp-gateway/error'] as Obj | undefined;
}

/** An SDK client connected directly to a child, for comparison. */
async function direct(command: string, args: string[], env?: Record<string, string>): Promise<Client> {
  const client = new Client({ name: 'direct', version: '1.0.0' }, { capabilities: {} });
  await client.connect(new StdioClientTransport({ command, args, stderr: 'ignore', ...(env ? { env } : {}) }));
  return client;
}

/** The structuredContent of one of the gateway's own tools. */
async function gatewayTool(client: Client, name: string, args: Obj = {}): Promise<Obj> {
  const result = await callRaw(client, name, args);
  expect(result.isError, JSON.stringify(result)).not.toBe(true);
  return result.structuredContent as Obj;
}

describe('initialize', () => {
  test('is answered at once, while a child never finishes initializing', async () => {
    const START_TIMEOUT = 60_000;
    const t0 = Date.now();
    const gw = await startGateway({
      config: testConfig({
        servers: [
          { id: 'hang', ...fixture('never-init.js'), startTimeoutMs: START_TIMEOUT },
          { id: 'echo', ...fixture('echo.js') },
        ],
      }),
    });
    try {
      const connectMs = Date.now() - t0;
      // Well before the hanging child's startTimeoutMs (generous for a loaded machine).
      expect(connectMs).toBeLessThan(START_TIMEOUT / 3);
      // The working server joins; the hanging one is still starting.
      await waitFor(async () => (await listRaw(gw.client)).some((t) => t.name === 'echo__echo'), 30_000, 'echo__echo listed');
      const result = await callRaw(gw.client, 'echo__echo', { message: 'up' });
      expect(textOf(result)).toBe('up');
      const { servers } = await gatewayTool(gw.client, 'server_status');
      const states = Object.fromEntries((servers as Obj[]).map((s) => [s.id, s.state]));
      expect(states).toEqual({ hang: 'starting', echo: 'ready' });
    } finally {
      await gw.close();
    }
  });
});

describe('tools and results through the gateway', () => {
  let gw: RunningGateway;
  let echoDirect: Client;
  let slowDirect: Client;

  beforeAll(async () => {
    gw = await startGateway({
      config: testConfig({
        servers: [
          { id: 'echo', ...fixture('echo.js') },
          { id: 'twin', ...fixture('echo.js') },
          { id: 'slow', ...fixture('slow.js') },
        ],
      }),
    });
    const e = fixture('echo.js');
    const s = fixture('slow.js');
    [echoDirect, slowDirect] = await Promise.all([direct(e.command, e.args), direct(s.command, s.args)]);
    await waitFor(
      async () => (await listRaw(gw.client)).filter((t) => /^(echo|twin|slow)__/.test(String(t.name))).length > 10,
      30_000,
      'all servers listed',
    );
  }, 120_000);

  afterAll(async () => {
    await Promise.all([gw?.close(), echoDirect?.close(), slowDirect?.close()]);
  });

  test('tools are listed as <server>__<tool>, for every server', async () => {
    const names = (await listRaw(gw.client)).map((t) => t.name as string);
    const echoTools = (await listRaw(echoDirect)).map((t) => t.name as string);
    expect(echoTools).toContain('echo');
    for (const tool of echoTools) {
      expect(names).toContain(`echo__${tool}`);
      expect(names).toContain(`twin__${tool}`);
    }
    expect(names).toEqual(expect.arrayContaining(['slow__sleep', 'slow__hang', 'slow__quick']));
    // The gateway's own tools are there too (expose: both).
    expect(names).toEqual(expect.arrayContaining(['call', 'list_tools', 'list_servers', 'server_status']));
    // Nothing else: only gateway tools and prefixed child tools.
    for (const n of names) expect(n).toMatch(/^((echo|twin|slow)__.+|call|list_tools|list_servers|server_status|audit_\w+|usage)$/);
  });

  test("a tool's definition passes through unchanged, but for its name", async () => {
    const viaGateway = (await listRaw(gw.client)).find((t) => t.name === 'echo__annotated')!;
    const original = (await listRaw(echoDirect)).find((t) => t.name === 'annotated')!;
    expect(viaGateway).toBeDefined();
    // The fixture really carries every field, so the comparison means something.
    for (const field of ['title', 'description', 'inputSchema', 'annotations', 'icons', '_meta', 'execution']) {
      expect(original, `fixture lists ${field}`).toHaveProperty(field);
    }
    expect({ ...viaGateway, name: 'annotated' }).toEqual(toolsAsListedTo(gw.era, [original])[0]);
    // And a tool with an outputSchema.
    const add = (await listRaw(gw.client)).find((t) => t.name === 'echo__add')!;
    const addOriginal = (await listRaw(echoDirect)).find((t) => t.name === 'add')!;
    expect(addOriginal).toHaveProperty('outputSchema');
    expect({ ...add, name: 'add' }).toEqual(toolsAsListedTo(gw.era, [addOriginal])[0]);
  });

  test('results of every content type, with _meta, pass unchanged', async () => {
    const viaGateway = await callRaw(gw.client, 'echo__mixed');
    const original = await callRaw(echoDirect, 'mixed');
    expect((original.content as Obj[]).map((c) => c.type)).toEqual(['text', 'image', 'audio', 'resource_link', 'resource']);
    expect(original._meta).toEqual({ 'fixture/meta': 1 });
    expect(viaGateway).toEqual(original);
  });

  test('structuredContent passes unchanged', async () => {
    const viaGateway = await callRaw(gw.client, 'echo__add', { a: 2, b: 40 });
    expect(viaGateway.structuredContent).toEqual({ sum: 42 });
    expect(viaGateway).toEqual(await callRaw(echoDirect, 'add', { a: 2, b: 40 }));
  });

  test("a child's own isError result passes untouched, without a gateway error code", async () => {
    const viaGateway = await callRaw(gw.client, 'echo__fail', { message: 'it went wrong' });
    expect(viaGateway.isError).toBe(true);
    expect(errorCode(viaGateway)).toBeUndefined();
    expect(textOf(viaGateway)).toBe('it went wrong');
    expect(viaGateway).toEqual(await callRaw(echoDirect, 'fail', { message: 'it went wrong' }));
  });

  test('arguments that do not match the inputSchema: INVALID_ARGUMENTS naming the field', async () => {
    const missing = await callRaw(gw.client, 'echo__echo', {});
    expect(missing.isError).toBe(true);
    expect(errorCode(missing)).toBe('INVALID_ARGUMENTS');
    expect(gatewayError(missing)).toMatchObject({ field: 'message' });

    const wrongType = await callRaw(gw.client, 'echo__add', { a: 1, b: 'two' });
    expect(errorCode(wrongType)).toBe('INVALID_ARGUMENTS');
    expect(gatewayError(wrongType)).toMatchObject({ field: 'b' });

    const noArgs = await callRaw(gw.client, 'echo__echo');
    expect(errorCode(noArgs)).toBe('INVALID_ARGUMENTS');
    expect(gatewayError(noArgs)).toMatchObject({ field: 'message' });
  });

  test('UNKNOWN_TOOL for an unknown server and for an unknown tool of a known server', async () => {
    for (const name of ['nope__x', 'echo__nope', 'echo', 'echo__', '__echo']) {
      const result = await callRaw(gw.client, name, {});
      expect(result.isError, name).toBe(true);
      expect(errorCode(result), name).toBe('UNKNOWN_TOOL');
    }
  });

  test('`call` by full name gives the result of the direct call', async () => {
    const viaCall = await callRaw(gw.client, 'call', { tool: 'echo__mixed' });
    expect(viaCall).toEqual(await callRaw(gw.client, 'echo__mixed'));
    const add = await callRaw(gw.client, 'call', { tool: 'echo__add', arguments: { a: 1, b: 2 } });
    expect(add).toEqual(await callRaw(gw.client, 'echo__add', { a: 1, b: 2 }));
    expect(add.structuredContent).toEqual({ sum: 3 });
  });

  test('`call` by a bare name that only one server has', async () => {
    const viaCall = await callRaw(gw.client, 'call', { tool: 'quick' });
    expect(viaCall).toEqual(await callRaw(gw.client, 'slow__quick'));
    expect(viaCall).toEqual(await callRaw(slowDirect, 'quick'));
  });

  test('`call` with an ambiguous bare name: INVALID_ARGUMENTS; naming the server resolves it', async () => {
    const ambiguous = await callRaw(gw.client, 'call', { tool: 'echo', arguments: { message: 'x' } });
    expect(ambiguous.isError).toBe(true);
    expect(errorCode(ambiguous)).toBe('INVALID_ARGUMENTS');
    expect(gatewayError(ambiguous)).toMatchObject({ field: 'server' });

    const resolved = await callRaw(gw.client, 'call', { tool: 'echo', server: 'twin', arguments: { message: 'from twin' } });
    expect(resolved).toEqual(await callRaw(gw.client, 'twin__echo', { message: 'from twin' }));
    expect(textOf(resolved)).toBe('from twin');
  });

  test('`call` refusals carry the same codes as direct calls', async () => {
    expect(errorCode(await callRaw(gw.client, 'call', { tool: 'nope__x' }))).toBe('UNKNOWN_TOOL');
    expect(errorCode(await callRaw(gw.client, 'call', { tool: 'no_such_tool_anywhere' }))).toBe('UNKNOWN_TOOL');
    expect(errorCode(await callRaw(gw.client, 'call', { tool: 'echo__echo', arguments: {} }))).toBe('INVALID_ARGUMENTS');
    expect(errorCode(await callRaw(gw.client, 'call', {}))).toBe('INVALID_ARGUMENTS');
    expect(errorCode(await callRaw(gw.client, 'call', { tool: 'echo__echo', arguments: 'not an object' }))).toBe('INVALID_ARGUMENTS');
  });

  test('list_tools lists the direct tools with their schemas, filtered by server and query', async () => {
    const all = (await gatewayTool(gw.client, 'list_tools')).tools as Obj[];
    const echo = all.find((t) => t.name === 'echo__echo');
    expect(echo).toMatchObject({ server: 'echo', description: 'Echo the message back' });
    expect((echo!.inputSchema as Obj).required).toEqual(['message']);
    expect(all.some((t) => t.name === 'call')).toBe(false); // only the servers' tools

    const slowOnly = (await gatewayTool(gw.client, 'list_tools', { server: 'slow' })).tools as Obj[];
    expect(slowOnly.map((t) => t.name).sort()).toEqual(['slow__hang', 'slow__quick', 'slow__sleep']);

    const query = (await gatewayTool(gw.client, 'list_tools', { query: 'ANNOTATED' })).tools as Obj[];
    expect(query.map((t) => t.name).sort()).toEqual(['echo__annotated', 'twin__annotated']);
  });

  test('list_servers lists every server with its state and counts', async () => {
    const { servers } = await gatewayTool(gw.client, 'list_servers');
    const echoTools = (await listRaw(echoDirect)).length;
    expect(servers).toEqual([
      expect.objectContaining({ id: 'echo', state: 'ready', tools: echoTools }),
      expect.objectContaining({ id: 'twin', state: 'ready', tools: echoTools }),
      expect.objectContaining({ id: 'slow', state: 'ready', tools: 3 }),
    ]);
  });

  test('server_status shows pid, state and restarts of each server, or of one', async () => {
    const { servers } = await gatewayTool(gw.client, 'server_status');
    expect((servers as Obj[]).map((s) => s.id)).toEqual(['echo', 'twin', 'slow']);
    for (const s of servers as Obj[]) {
      expect(s).toMatchObject({ state: 'ready', restartsInWindow: 0, totalRestarts: 0, lastError: null });
      expect(typeof s.pid).toBe('number');
      expect(Array.isArray(s.stderrTail)).toBe(true);
    }
    // The pid is the child's own (the echo fixture reports it), or, sandboxed, that of the
    // process that holds its namespaces on this host (the leader of its process group).
    const who = JSON.parse(textOf(await callRaw(gw.client, 'echo__whoami'))) as { pid: number };
    const echo = (servers as Obj[])[0]!;
    if ((echo['isolation'] as { mode: string }).mode === 'none') expect(echo['pid']).toBe(who.pid);
    else expect(readFileSync(`/proc/${echo['pid'] as number}/cmdline`, 'utf8')).toContain(path.join(FIXTURES, 'echo.js'));

    const one = await gatewayTool(gw.client, 'server_status', { server: 'slow' });
    expect((one.servers as Obj[]).map((s) => s.id)).toEqual(['slow']);
    expect(errorCode(await callRaw(gw.client, 'server_status', { server: 'nope' }))).toBe('INVALID_ARGUMENTS');
  });
});

// ------------------------------------------------------------------ raw stdio

/** A gateway spawned with plain child_process, spoken to in raw JSON-RPC lines. */
class RawGateway {
  readonly lines: string[] = [];
  stderr = '';
  private buffer = '';
  private exited = false;

  private constructor(readonly proc: ChildProcessWithoutNullStreams) {
    proc.stdout.on('data', (chunk: Buffer) => {
      this.buffer += chunk.toString('utf8');
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) !== -1) {
        this.lines.push(this.buffer.slice(0, nl));
        this.buffer = this.buffer.slice(nl + 1);
      }
    });
    proc.stderr.on('data', (chunk: Buffer) => (this.stderr += chunk.toString('utf8')));
    proc.on('exit', () => (this.exited = true));
  }

  static start(config: Obj): RawGateway {
    const dir = tempDir();
    const file = writeConfig(dir, config);
    const proc = spawn(process.execPath, [BIN, 'serve', '--config', file], {
      cwd: dir,
      env: {
        PATH: process.env['PATH'] ?? '',
        HOME: process.env['HOME'] ?? dir,
        TEST_KEY,
        MCP_GATEWAY_API_KEY: TEST_KEY,
        MCP_GATEWAY_LOG_LEVEL: 'debug',
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    return new RawGateway(proc);
  }

  write(line: string | Obj): void {
    this.proc.stdin.write(`${typeof line === 'string' ? line : JSON.stringify(line)}\n`);
  }

  /** Every stdout line parsed (throws on the first that is not JSON). */
  messages(): Obj[] {
    return this.lines.map((l) => JSON.parse(l) as Obj);
  }

  /** Waits for the response with this id. */
  response(id: string | number | null, n = 1): Promise<Obj> {
    return waitFor(
      () => {
        const found = this.lines.map((l) => JSON.parse(l) as Obj).filter((m) => m.id === id && ('result' in m || 'error' in m));
        return found.length >= n ? found[n - 1] : undefined;
      },
      30_000,
      `response ${id}`,
    );
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const done = new Promise((r) => this.proc.once('exit', r));
    this.proc.stdin.end();
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 10_000);
    await done;
    clearTimeout(timer);
  }
}

describe('stdio hygiene', () => {
  let gw: RawGateway;

  beforeAll(async () => {
    gw = RawGateway.start(
      testConfig({
        servers: [
          { id: 'echo', ...fixture('echo.js') },
          // Prints a banner and garbage on its own stdout: none of it may reach the agent.
          { id: 'noise', ...fixture('noise.js') },
        ],
      }),
    );
    gw.write({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    });
    const init = await gw.response(1);
    expect((init.result as Obj).protocolVersion).toBe(LATEST_PROTOCOL_VERSION);
    gw.write({ jsonrpc: '2.0', method: 'notifications/initialized' });
  }, 120_000);

  afterAll(async () => {
    await gw?.stop();
  });

  test('stdout carries nothing but JSON-RPC 2.0 messages; logs go to stderr', async () => {
    gw.write({ jsonrpc: '2.0', id: 2, method: 'tools/list' });
    const list = await gw.response(2);
    expect(((list.result as Obj).tools as Obj[]).map((t) => t.name)).toContain('echo__echo');
    gw.write({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'echo__echo', arguments: { message: 'raw hello' } } });
    expect(textOf((await gw.response(3)).result)).toBe('raw hello');
    gw.write({ jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'noise__noisy', arguments: {} } });
    expect(textOf((await gw.response(4)).result)).toBe('quiet');
    gw.write({ jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'echo__nope', arguments: {} } });
    expect(errorCode((await gw.response(5)).result)).toBe('UNKNOWN_TOOL');
    gw.write({ jsonrpc: '2.0', id: 6, method: 'ping' });
    await gw.response(6);

    expect(gw.lines.length).toBeGreaterThanOrEqual(6);
    for (const line of gw.lines) {
      let message: Obj;
      expect(() => (message = JSON.parse(line) as Obj), `stdout line is JSON: ${line.slice(0, 200)}`).not.toThrow();
      expect(message!.jsonrpc, line.slice(0, 200)).toBe('2.0');
      expect('method' in message! || 'result' in message! || 'error' in message!, line.slice(0, 200)).toBe(true);
      expect(line).not.toContain('NOISE LINE');
      expect(line).not.toContain('Welcome to noise server');
    }
    // The gateway does log (at debug level), on stderr.
    expect(gw.stderr).toContain('mcp-gateway');
  });

  test('a line that is not JSON gets a -32700 Parse error with id null, and the gateway keeps serving', async () => {
    const nullReplies = gw.messages().filter((m) => m.id === null).length;
    gw.write('this is not json {');
    const reply = await gw.response(null, nullReplies + 1);
    expect((reply.error as Obj).code).toBe(-32700);
    gw.write({ jsonrpc: '2.0', id: 20, method: 'tools/call', params: { name: 'echo__echo', arguments: { message: 'still here' } } });
    expect(textOf((await gw.response(20)).result)).toBe('still here');
  });

  test('a request of the wrong shape gets -32600 Invalid Request with its id, and the gateway keeps serving', async () => {
    gw.write({ jsonrpc: '2.0', id: 30, method: 42 });
    expect(((await gw.response(30)).error as Obj).code).toBe(-32600);
    gw.write({ jsonrpc: '1.0', id: 31, method: 'ping' });
    expect(((await gw.response(31)).error as Obj).code).toBe(-32600);
    gw.write({ jsonrpc: '2.0', id: 32, method: 'tools/call', params: 'not an object' });
    expect(((await gw.response(32)).error as Obj).code).toBe(-32600);
    // No usable id: the reply has id null.
    const nullReplies = gw.messages().filter((m) => m.id === null).length;
    gw.write('[1, 2, 3]');
    expect(((await gw.response(null, nullReplies + 1)).error as Obj).code).toBe(-32600);
    // An unknown method is a proper JSON-RPC error, not silence.
    gw.write({ jsonrpc: '2.0', id: 33, method: 'no/such/method' });
    expect(((await gw.response(33)).error as Obj).code).toBe(-32601);

    gw.write({ jsonrpc: '2.0', id: 34, method: 'tools/call', params: { name: 'echo__add', arguments: { a: 1, b: 1 } } });
    expect(((await gw.response(34)).result as Obj).structuredContent).toEqual({ sum: 2 });
    // Still nothing but JSON-RPC on stdout.
    for (const m of gw.messages()) expect(m.jsonrpc).toBe('2.0');
  });
});

// ------------------------------------------------------------------ server-everything

describe('interop with @modelcontextprotocol/server-everything', () => {
  const SECRET = 'hunter2-very-secret';
  const CANARY = 'xyz123456';
  let gw: RunningGateway;
  let everything: Client;

  beforeAll(async () => {
    gw = await startGateway({
      config: testConfig({
        servers: [{ id: 'every', command: process.execPath, args: [EVERYTHING, 'stdio'], env: { MY_SECRET: SECRET } }],
      }),
      env: { LEAK_CANARY: CANARY },
    });
    everything = await direct(process.execPath, [EVERYTHING, 'stdio']);
    await waitFor(async () => (await listRaw(gw.client)).some((t) => t.name === 'every__echo'), 60_000, 'every__echo listed');
  }, 120_000);

  afterAll(async () => {
    await Promise.all([gw?.close(), everything?.close()]);
  });

  test.each([
    ['echo', { message: 'hello through the gateway' }],
    ['get-sum', { a: 19, b: 23 }],
    ['get-structured-content', { location: 'Chicago' }],
    ['get-tiny-image', {}],
    ['get-resource-links', { count: 4 }],
  ])('%s returns what it returns directly', async (tool, args) => {
    const viaGateway = await callRaw(gw.client, `every__${tool}`, args);
    const original = await callRaw(everything, tool, args);
    expect(original.isError).not.toBe(true);
    expect(viaGateway).toEqual(original);
  });

  test('tool definitions are those server-everything lists', async () => {
    const viaGateway = (await listRaw(gw.client)).filter((t) => String(t.name).startsWith('every__'));
    const original = await listRaw(everything);
    const runnable = original.filter((t) => (t.execution as Obj | undefined)?.taskSupport !== 'required');
    expect(viaGateway.map((t) => ({ ...t, name: String(t.name).slice('every__'.length) }))).toEqual(toolsAsListedTo(gw.era, runnable));
  });

  test('get-env: the child sees its injected secret, the agent sees it redacted, nothing of the gateway leaks', async () => {
    const result = await callRaw(gw.client, 'every__get-env');
    const text = textOf(result);
    const env = JSON.parse(text) as Record<string, string>;
    // The child had the value (the redactor replaces only that exact value) ...
    expect(env['MY_SECRET']).toBe('[REDACTED:MY_SECRET]');
    // ... and the agent never sees it.
    expect(JSON.stringify(result)).not.toContain(SECRET);
    // The gateway's own environment is not passed on: not its credential, not other variables.
    expect(Object.keys(env)).not.toContain('LEAK_CANARY');
    expect(Object.keys(env)).not.toContain('MCP_GATEWAY_API_KEY');
    expect(Object.keys(env)).not.toContain('TEST_KEY');
    expect(Object.keys(env)).not.toContain('MCP_GATEWAY_LOG_LEVEL');
    expect(text).not.toContain(CANARY);
    expect(text).not.toContain(TEST_KEY);
    // Only the basics of design §8 plus the server's own env.
    for (const name of Object.keys(env)) expect(['PATH', 'HOME', 'USER', 'LOGNAME', 'SHELL', 'TERM', 'MY_SECRET']).toContain(name);
    // And the secret does not reach the gateway's log in clear either.
    expect(gw.stderr()).not.toContain(SECRET);
  });
});
