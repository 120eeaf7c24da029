/**
 * Starts a real `mcp-gateway serve` process on a config written to a temp folder and connects the
 * SDK (v2) Client to it, as an agent would: a 2025-era agent (`initialize`), or a 2026-07-28 one.
 * The era is the `agent` option, else MCP_TEST_AGENT (the vitest project `e2e-modern` sets it to
 * "modern" and runs the agent-facing suites again), else legacy.
 */
import { Client, type ClientCapabilities } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { z } from 'zod';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = path.join(ROOT, 'bin/mcp-gateway.js');
export const FIXTURES = path.join(ROOT, 'test/fixtures');
export const EVERYTHING = path.join(ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');

/** A static test key accepted by `testConfig` (plain `key:` in config: no bcrypt in every test). */
export const TEST_KEY = 'gw_testkey1_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG';
export const TEST_KEY_ID = 'testkey1';

export function fixture(name: string): { command: string; args: string[] } {
  return { command: process.execPath, args: [path.join(FIXTURES, name)] };
}

/** A config with one static key (consumer "tester", given roles) and an allow-all policy for "admin". */
export function testConfig(overrides: Record<string, unknown> = {}, roles: string[] = ['admin']): Record<string, unknown> {
  return {
    database: './gateway.db',
    auth: { apiKeys: { static: [{ id: TEST_KEY_ID, consumerId: 'tester', roles, key: '${TEST_KEY}' }] } },
    policies: [
      {
        id: 'admin',
        roles: ['admin'],
        rules: [{ action: 'allow' }, { server: 'gateway', action: 'allow' }],
      },
    ],
    rateLimit: { enabled: false },
    ...overrides,
  };
}

export function tempDir(prefix = 'mcpgw-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/** The protocol era of the agents the tests play. */
export type AgentEra = 'legacy' | 'modern';

/** The era the agent-facing suites run in (MCP_TEST_AGENT), legacy unless told otherwise. */
export const AGENT_ERA: AgentEra = process.env['MCP_TEST_AGENT'] === 'modern' ? 'modern' : 'legacy';
/** Whether this run plays a 2026-07-28 agent (tests of 2025-only mechanisms are skipped then). */
export const MODERN = AGENT_ERA === 'modern';

/** Whether the gateway answers: `ping` for a 2025-era agent; 2026-07-28 has no ping, a list instead. */
export async function answers(gw: { client: Client; era: AgentEra }): Promise<void> {
  if (gw.era === 'legacy') await gw.client.ping();
  else await gw.client.request({ method: 'tools/list', params: {} } as never, z.looseObject({}), { timeout: 60_000 });
}

/**
 * The SDK's stdio transport, probing the era in place: the SDK runs the probe of its own base
 * class on a disposable second process (a test of that is in eras.test.ts), a subclass on the
 * connection itself.
 */
export class InPlaceStdioTransport extends StdioClientTransport {}

/** A v2 Client of the given era: 2025 (initialize) or pinned to 2026-07-28 (no fallback). */
export function agentClient(era: AgentEra, capabilities: ClientCapabilities = {}, options: { autoFulfill?: boolean } = {}): Client {
  return new Client(
    { name: 'test-agent', version: '1.0.0' },
    {
      capabilities,
      ...(era === 'modern' ? { versionNegotiation: { mode: { pin: '2026-07-28' } } } : {}),
      ...(options.autoFulfill === false ? { inputRequired: { autoFulfill: false } } : {}),
    },
  );
}

export interface RunningGateway {
  readonly client: Client;
  readonly era: AgentEra;
  readonly transport: StdioClientTransport;
  readonly dir: string;
  readonly configFile: string;
  readonly pid: number;
  /** Everything the gateway wrote to stderr so far. */
  stderr(): string;
  close(): Promise<void>;
}

export interface StartOptions {
  readonly config: Record<string, unknown> | string;
  readonly env?: Record<string, string>;
  readonly key?: string | null;
  readonly capabilities?: ClientCapabilities;
  readonly dir?: string;
  /** Called with the client before it connects (to register handlers). */
  readonly beforeConnect?: (client: Client) => void;
  /** Run `serve` under this umask (octal text such as "022"), through /bin/sh. */
  readonly umask?: string;
  /** The agent's protocol era (default AGENT_ERA). */
  readonly agent?: AgentEra;
  /** false: a 2026-07-28 agent gets input-required results itself instead of its handlers answering them. */
  readonly autoFulfill?: boolean;
}

export function writeConfig(dir: string, config: Record<string, unknown> | string): string {
  const file = path.join(dir, 'gateway.yaml');
  writeFileSync(file, typeof config === 'string' ? config : stringify(config));
  return file;
}

export async function startGateway(options: StartOptions): Promise<RunningGateway> {
  const dir = options.dir ?? tempDir();
  const configFile = writeConfig(dir, options.config);
  const key = options.key === undefined ? TEST_KEY : options.key;
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '',
    HOME: process.env['HOME'] ?? dir,
    TEST_KEY,
    MCP_GATEWAY_LOG_LEVEL: 'debug',
    ...(key ? { MCP_GATEWAY_API_KEY: key } : {}),
    ...options.env,
  };
  const serve = [BIN, 'serve', '--config', configFile];
  const transport = new InPlaceStdioTransport(
    options.umask === undefined
      ? { command: process.execPath, args: serve, env, stderr: 'pipe', cwd: dir }
      : {
          command: '/bin/sh',
          args: ['-c', `umask ${options.umask} && exec "$0" "$@"`, process.execPath, ...serve],
          env,
          stderr: 'pipe',
          cwd: dir,
        },
  );
  let stderr = '';
  transport.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const era = options.agent ?? AGENT_ERA;
  const client = agentClient(era, options.capabilities ?? {}, { autoFulfill: options.autoFulfill });
  options.beforeConnect?.(client);
  try {
    await client.connect(transport);
    // A 2026-07-28 agent gets list changes on a listen stream it opens (a 2025 one gets them anyway).
    if (era === 'modern') await client.listen({ toolsListChanged: true, promptsListChanged: true, resourcesListChanged: true });
  } catch (err) {
    // A gateway that exits before it answers initialize (a config it refuses, say): say why.
    await new Promise((r) => setTimeout(r, 300));
    await client.close().catch(() => {});
    throw new Error(`the gateway did not start: ${(err as Error).message}\n--- its stderr ---\n${stderr.slice(-4_000)}`);
  }
  return {
    client,
    era,
    transport,
    dir,
    configFile,
    pid: transport.pid!,
    stderr: () => stderr,
    close: () => client.close(),
  };
}

/** Polls `fn` until it returns a truthy value or the time runs out. */
export async function waitFor<T>(fn: () => T | Promise<T>, ms = 10_000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

/** True if a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The text of the first text content of a tool result. */
export function textOf(result: unknown): string {
  const content = (result as { content?: { type: string; text?: string }[] }).content ?? [];
  return content.find((c) => c.type === 'text')?.text ?? '';
}

/** The gateway's error code of a refused tool result, if any. */
export function errorCode(result: unknown): string | undefined {
  const meta = (result as { _meta?: Record<string, { code?: string }> })._meta;
  return meta?.['mcp-gateway/error']?.code;
}

export type Obj = Record<string, unknown>;

/**
 * Keeps every field: the SDK's own result schemas would drop unknown ones or re-validate results.
 * What the 2026-07-28 encoding adds to every result of the gateway (its own serverInfo, and the
 * cache hints "do not cache, private") is taken off, so results compare with a 2025 client's;
 * a child's serverInfo or cache hints would stay, and show.
 */
export const anyResult = z.looseObject({}).transform((result) => withoutGatewayHop(result));

/**
 * Tool definitions as an agent of `era` is given them: the 2026-07-28 revision has no tasks, so
 * its encoding leaves out `execution` (for a 2025-era agent they are unchanged).
 */
export function toolsAsListedTo(era: AgentEra, tools: readonly Obj[]): Obj[] {
  return era === 'legacy' ? [...tools] : tools.map(({ execution: _execution, ...tool }) => tool);
}

/** A result without the gateway's own 2026-07-28 stamps (see anyResult). */
export function withoutGatewayHop<T extends Record<string, unknown>>(result: T): T {
  const out: Record<string, unknown> = { ...result };
  const meta = out['_meta'] as Record<string, unknown> | undefined;
  const info = meta?.['io.modelcontextprotocol/serverInfo'] as { name?: string } | undefined;
  if (meta && info?.name === 'mcp-gateway') {
    const { ['io.modelcontextprotocol/serverInfo']: _info, ...rest } = meta;
    if (Object.keys(rest).length > 0) out['_meta'] = rest;
    else delete out['_meta'];
  }
  if (out['ttlMs'] === 0 && out['cacheScope'] === 'private') {
    delete out['ttlMs'];
    delete out['cacheScope'];
  }
  return out as T;
}

/** A tools/call whose result comes back exactly as the gateway sent it. */
export async function call(
  client: Client,
  name: string,
  args: Obj = {},
  options: { signal?: AbortSignal; timeout?: number } = {},
): Promise<Obj> {
  return (await client.request({ method: 'tools/call', params: { name, arguments: args } } as never, anyResult, {
    timeout: options.timeout ?? 60_000,
    ...(options.signal ? { signal: options.signal } : {}),
  })) as Obj;
}

/** The names of the tools listed to this client, sorted. */
export async function toolNames(client: Client): Promise<string[]> {
  const result = (await client.request({ method: 'tools/list', params: {} } as never, anyResult, { timeout: 60_000 })) as Obj;
  return (result['tools'] as { name: string }[]).map((t) => t.name).sort();
}

/** The tool names once every one of `names` is listed (children start after the agent initialized). */
export async function waitListed(client: Client, names: string | readonly string[], ms = 30_000): Promise<string[]> {
  const wanted = typeof names === 'string' ? [names] : names;
  return waitFor(
    async () => {
      const listed = await toolNames(client);
      return wanted.every((n) => listed.includes(n)) ? listed : undefined;
    },
    ms,
    `${wanted.join(', ')} to be listed`,
  );
}
