/**
 * The Streamable HTTP front in end-to-end tests (test/e2e/http*.test.ts): a real
 * `mcp-gateway serve --http` process on a config written to a temp folder (port 0 unless told
 * otherwise, its URL read from the line it prints on stderr), stopped with SIGTERM then SIGKILL;
 * agents of both eras connected to it with a bearer of their own (a 2026-07-28 one with the v2
 * client, a 2025-era one with the v1 SDK, which opens a session); and raw HTTP for what an SDK
 * client would never send (a foreign Host, a huge body, a session id of someone else's).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import {
  Client as ModernClient,
  StreamableHTTPClientTransport as ModernTransport,
  type ClientCapabilities,
} from '@modelcontextprotocol/client';
import { Client as LegacyClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as LegacyTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { BIN, TEST_KEY, tempDir, writeConfig } from './gateway.js';

export { ModernClient, LegacyClient };

/** Protocol version a raw 2025-era `initialize` asks for. */
export const LEGACY_PROTOCOL = '2025-06-18';

export interface HttpGateway {
  /** The MCP URL the gateway printed (http.publicUrl when set). */
  readonly url: string;
  /** http://host:port of the listener, whatever publicUrl says. */
  readonly base: string;
  readonly port: number;
  readonly pid: number;
  readonly dir: string;
  readonly configFile: string;
  readonly process: ChildProcess;
  /** Settles when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Everything the gateway wrote to stderr so far. */
  stderr(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with how it exited. */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface StartHttpOptions {
  readonly config: Record<string, unknown>;
  /** `serve --http` argument (default 127.0.0.1:0). */
  readonly listen?: string;
  readonly dir?: string;
  /** The working folder of the process (default: the config's folder). */
  readonly cwd?: string;
  readonly env?: Record<string, string>;
  /** MCP_GATEWAY_LOG_LEVEL (default info: 1,000 sessions at debug would be a lot of stderr). */
  readonly logLevel?: 'debug' | 'info' | 'warn';
}

/** Gateways and clients a test file started; `closeAll` in afterEach/afterAll. */
export class HttpHarness {
  private readonly gateways: HttpGateway[] = [];
  private readonly closers: (() => Promise<unknown>)[] = [];

  async start(options: StartHttpOptions): Promise<HttpGateway> {
    const gw = await startHttpGateway(options);
    this.gateways.push(gw);
    return gw;
  }

  /** A 2026-07-28 agent (closed by closeAll). */
  async modern(gw: HttpGateway | string, bearer: string, options: ModernOptions = {}): Promise<ModernClient> {
    const client = await modernClient(typeof gw === 'string' ? gw : gw.url, bearer, options);
    this.closers.push(() => client.close());
    return client;
  }

  /** A 2025-era agent with a session (closed, not terminated, by closeAll). */
  async legacy(gw: HttpGateway | string, bearer: string, options: LegacyOptions = {}): Promise<LegacyAgent> {
    const agent = await legacyClient(typeof gw === 'string' ? gw : gw.url, bearer, options);
    this.closers.push(() => agent.client.close());
    return agent;
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.closers.splice(0).map((close) => close().catch(() => {})));
    await Promise.all(this.gateways.splice(0).map((gw) => gw.stop().catch(() => {})));
  }
}

const URL_LINE = /Streamable HTTP at (https?:\/\/[^\s,]+)/;

export async function startHttpGateway(options: StartHttpOptions): Promise<HttpGateway> {
  const dir = options.dir ?? tempDir('mcpgw-http-');
  const configFile = writeConfig(dir, options.config);
  const listen = options.listen ?? '127.0.0.1:0';
  const proc = spawn(process.execPath, [BIN, 'serve', '--http', listen, '--config', configFile], {
    cwd: options.cwd ?? dir,
    env: {
      PATH: process.env['PATH'] ?? '',
      HOME: process.env['HOME'] ?? dir,
      TEST_KEY,
      MCP_GATEWAY_LOG_LEVEL: options.logLevel ?? 'info',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  proc.stdout!.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const printed = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => fail('did not print its URL within 30 s'), 30_000);
    const onData = () => {
      const m = URL_LINE.exec(stderr);
      if (m) {
        cleanup();
        resolve(m[1]!);
      }
    };
    const onExit = (code: number | null) => fail(`exited (${code}) before it printed its URL`);
    function cleanup() {
      clearTimeout(timer);
      proc.stderr!.off('data', onData);
      proc.off('exit', onExit);
    }
    function fail(why: string) {
      cleanup();
      proc.kill('SIGKILL');
      reject(new Error(`the HTTP gateway ${why}\n--- its stderr ---\n${stderr.slice(-4_000)}`));
    }
    proc.stderr!.on('data', onData);
    proc.once('exit', onExit);
  });
  // With publicUrl the printed URL is the configured one: the port is then the one we listen on.
  const fixedPort = /:(\d+)$/.exec(listen)?.[1];
  const port = fixedPort && fixedPort !== '0' ? Number(fixedPort) : Number(new URL(printed).port);
  const host = listen.replace(/:\d+$/, '') || '127.0.0.1';
  const base = `http://${host}:${port}`;
  const stop = async (graceMs = 5_000) => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      const outcome = await exited;
      clearTimeout(timer);
      return outcome;
    }
    return exited;
  };
  return { url: printed, base, port, pid: proc.pid!, dir, configFile, process: proc, exited, stderr: () => stderr, stop };
}

/** A free TCP port on 127.0.0.1 (for configs that must name their own URL: http.publicUrl). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface ModernOptions {
  readonly capabilities?: ClientCapabilities;
  readonly headers?: Record<string, string>;
}

/** A v2 client pinned to 2026-07-28 (stateless requests, no session), each request with `bearer`. */
export async function modernClient(url: string, bearer: string, options: ModernOptions = {}): Promise<ModernClient> {
  const client = new ModernClient(
    { name: 'http-modern-agent', version: '1.0.0' },
    { capabilities: options.capabilities ?? {}, versionNegotiation: { mode: { pin: '2026-07-28' } } },
  );
  const transport = new ModernTransport(new URL(url), {
    requestInit: { headers: { authorization: `Bearer ${bearer}`, ...options.headers } },
  });
  await client.connect(transport);
  return client;
}

export interface LegacyOptions {
  readonly capabilities?: Record<string, unknown>;
  /** Called with the client before it connects (to register handlers). */
  readonly beforeConnect?: (client: LegacyClient) => void;
}

export interface LegacyAgent {
  readonly client: LegacyClient;
  readonly transport: LegacyTransport;
  /** The Mcp-Session-Id the gateway gave it. */
  readonly sessionId: string;
}

/** A v1 SDK (2025-era) client: `initialize` opens a session bound to `bearer`'s owner. */
export async function legacyClient(url: string, bearer: string, options: LegacyOptions = {}): Promise<LegacyAgent> {
  const client = new LegacyClient({ name: 'http-legacy-agent', version: '1.0.0' }, { capabilities: options.capabilities ?? {} });
  options.beforeConnect?.(client);
  const transport = new LegacyTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${bearer}` } } });
  await client.connect(transport);
  if (transport.sessionId === undefined) throw new Error('the gateway opened no session (no Mcp-Session-Id)');
  return { client, transport, sessionId: transport.sessionId };
}

export interface RawResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

export interface RawOptions {
  readonly method?: string;
  readonly headers?: Record<string, string | number>;
  readonly body?: string | Buffer;
  readonly timeoutMs?: number;
}

/**
 * One HTTP request on a connection of its own, headers exactly as given (Host too: a header named
 * `host` replaces the one node would send). Resolves once the response body has been read; an
 * error writing the body after the response came (a 413 closing the connection) does not matter.
 */
export function raw(url: string, options: RawOptions = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    let answered = false;
    const req = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        path: `${target.pathname}${target.search}`,
        method: options.method ?? 'GET',
        headers: options.headers,
        agent: false,
        setHost: !Object.keys(options.headers ?? {}).some((h) => h.toLowerCase() === 'host'),
      },
      (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        const done = () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.on('end', done);
        // A connection closed mid-body (Connection: close after a 413): what came is the answer.
        res.on('aborted', done);
        res.on('error', done);
      },
    );
    req.setTimeout(options.timeoutMs ?? 30_000, () => req.destroy(new Error(`no answer to ${options.method ?? 'GET'} ${url} in time`)));
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    if (options.body !== undefined) req.end(options.body);
    else req.end();
  });
}

/** Headers of an MCP POST with a bearer (and whatever else is given). */
export function mcpHeaders(bearer: string | undefined, extra: Record<string, string> = {}): Record<string, string> {
  return {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    ...(bearer !== undefined ? { authorization: `Bearer ${bearer}` } : {}),
    ...extra,
  };
}

/** A 2025-era `initialize`, as a raw request body. */
export function initializeBody(id: number | string = 1): string {
  return JSON.stringify({
    jsonrpc: '2.0',
    id,
    method: 'initialize',
    params: { protocolVersion: LEGACY_PROTOCOL, capabilities: {}, clientInfo: { name: 'raw-agent', version: '1.0.0' } },
  });
}

/** POSTs a JSON-RPC message to /mcp with `bearer` (and a session id, when given). */
export function postMcp(
  gw: HttpGateway,
  bearer: string | undefined,
  body: string | Buffer,
  extra: Record<string, string> = {},
  timeoutMs?: number,
): Promise<RawResponse> {
  return raw(`${gw.base}/mcp`, { method: 'POST', headers: mcpHeaders(bearer, extra), body, ...(timeoutMs ? { timeoutMs } : {}) });
}

/** Opens a 2025-era session with a raw `initialize`; resolves with its Mcp-Session-Id. */
export async function openRawSession(gw: HttpGateway, bearer: string): Promise<string> {
  const res = await postMcp(gw, bearer, initializeBody());
  const id = res.headers['mcp-session-id'];
  if (res.status !== 200 || typeof id !== 'string') throw new Error(`initialize: HTTP ${res.status} ${res.body.slice(0, 300)}`);
  return id;
}

/** A request in an open session (`tools/list` by default), raw. */
export function inSession(gw: HttpGateway, bearer: string, sessionId: string, method = 'tools/list'): Promise<RawResponse> {
  return postMcp(gw, bearer, JSON.stringify({ jsonrpc: '2.0', id: 2, method, params: {} }), {
    'mcp-session-id': sessionId,
    'mcp-protocol-version': LEGACY_PROTOCOL,
  });
}

/** The value of an unlabelled Prometheus sample on /metrics (with the metrics token), or undefined. */
export async function metric(gw: HttpGateway, token: string, name: string): Promise<number | undefined> {
  const res = await raw(`${gw.base}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  if (res.status !== 200) throw new Error(`/metrics: HTTP ${res.status}`);
  const m = new RegExp(`^${name}(?:\\{\\})? (\\S+)$`, 'm').exec(res.body);
  return m ? Number(m[1]) : undefined;
}

/** A static key of the gateway's form, `gw_<id>_<secret>`, for `auth.apiKeys.static`. */
export function staticKey(id: string): string {
  return `gw_${id}_${`${id}-secret-0123456789abcdefghijklmnopqrstuvwxyz`.replace(/[^A-Za-z0-9_-]/g, 'x')}`;
}

/** A static key entry of the config (plain `key:`, no bcrypt). */
export function staticKeyEntry(
  id: string,
  consumerId: string,
  roles: string[],
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { id, consumerId, roles, key: staticKey(id), ...extra };
}
