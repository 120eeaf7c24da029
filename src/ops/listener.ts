/**
 * The operations listener (`metrics.listen`): `/metrics` (Prometheus text format), `/healthz` (the
 * process answers) and `/readyz` (the store can be written and every eager server has settled:
 * it is ready or has failed). It is separate from the agents' side, bound to 127.0.0.1 unless told
 * otherwise, and `/metrics` may require its own bearer token (`metrics.token`), compared in
 * constant time. It reads no request body and answers only GET and HEAD.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from '../log.js';
import type { Metrics } from './metrics.js';

/** Whether the gateway is ready, with each check's outcome ("ok", or why not). */
export type Readiness = () => { ready: boolean; checks: Record<string, string> };

export interface OpsListenerOptions {
  readonly listen: string;
  readonly token: string | undefined;
  readonly metrics: Metrics;
  readonly readiness: Readiness;
  readonly log: Logger;
}

/** `host:port`, `[v6]:port` or a port alone (127.0.0.1). */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(listen) ?? /^()()(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65_535)) throw new Error(`"${listen}" is not host:port or a port`);
  return { host: m[1] || m[2] || '127.0.0.1', port };
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Answers /healthz, /readyz and /metrics; resolves false for any other path (the HTTP front
 * serves MCP beside them). /metrics needs `token` when one is given; without `metrics` it is 404.
 */
export class OpsRoutes {
  private readonly tokenDigest: Buffer | undefined;

  constructor(private readonly o: Omit<OpsListenerOptions, 'listen' | 'metrics'> & { readonly metrics: Metrics | null }) {
    this.tokenDigest = o.token === undefined ? undefined : digest(o.token);
  }

  async handle(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    if (path !== '/healthz' && path !== '/readyz' && (path !== '/metrics' || !this.o.metrics)) return false;
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') reply(res, 405, { error: 'only GET and HEAD' }, { allow: 'GET, HEAD' });
      else if (path === '/healthz') reply(res, 200, { status: 'ok' });
      else if (path === '/readyz') {
        const { ready, checks } = this.o.readiness();
        reply(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', checks });
      } else if (!this.authorized(req.headers.authorization)) {
        reply(res, 401, { error: 'a bearer token is required (metrics.token)' }, { 'www-authenticate': 'Bearer' });
      } else {
        const registry = this.o.metrics!.registry;
        const body = await registry.metrics();
        res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      }
    } catch (err) {
      this.o.log.warn(`${path}: ${(err as Error).message}`);
      if (!res.headersSent) reply(res, 500, { error: 'internal error' });
      else res.destroy();
    }
    return true;
  }

  private authorized(header: string | undefined): boolean {
    if (this.tokenDigest === undefined) return true;
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '');
    return m !== null && timingSafeEqual(digest(m[1]!), this.tokenDigest);
  }
}

export class OpsListener {
  private readonly server: Server;
  private readonly routes: OpsRoutes;

  private constructor(o: OpsListenerOptions) {
    this.routes = new OpsRoutes(o);
    this.server = createServer((req, res) => void this.handle(req, res));
    // Slow or idle clients cannot hold the listener.
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 15_000;
    this.server.keepAliveTimeout = 5_000;
    this.server.maxHeadersCount = 50;
    this.server.maxConnections = 64;
  }

  /** Starts listening; resolves with the bound address (port 0 picks a free port). */
  static async start(o: OpsListenerOptions): Promise<{ listener: OpsListener; address: string }> {
    const listener = new OpsListener(o);
    const address = await listenOn(listener.server, o.listen);
    return { listener, address };
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    if (!(await this.routes.handle(req, res, path))) reply(res, 404, { error: 'not found: /metrics, /healthz, /readyz' });
  }
}

/** Listens on `listen` (see parseListen); resolves with the bound address as host:port. */
export async function listenOn(server: Server, listen: string): Promise<string> {
  const { host, port } = parseListen(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  return typeof bound === 'object' && bound
    ? `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`
    : String(bound);
}

export function reply(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(`${JSON.stringify(body)}\n`);
}
