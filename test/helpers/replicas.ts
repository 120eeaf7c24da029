/**
 * Several gateway replicas on one machine, as a load balancer without affinity would see them: a
 * round-robin HTTP proxy that sends each request to the next live replica (`RoundRobin`), and a
 * TCP proxy in front of a service (PostgreSQL, Redis) that a test can cut and restore
 * (`TcpGate`), so "the database went away" happens to these processes only, not to the machine's
 * server that other suites share.
 */
import { request, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import type { HttpGateway } from './http.js';

/** Round-robin over replicas' listeners; a replica that refuses the connection is skipped. */
export class RoundRobin {
  private next = 0;
  /** Which replica (index) served each request, in order. */
  readonly served: number[] = [];

  private constructor(
    private readonly server: Server,
    readonly url: string,
    private readonly replicas: () => readonly HttpGateway[],
  ) {}

  static async start(replicas: () => readonly HttpGateway[]): Promise<RoundRobin> {
    let self: RoundRobin | undefined;
    const server = createServer((req, res) => self!.forward(req, res, 0));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    self = new RoundRobin(server, `http://127.0.0.1:${port}/mcp`, replicas);
    return self;
  }

  private forward(req: IncomingMessage, res: ServerResponse, tried: number, body?: Buffer): void {
    const all = this.replicas();
    if (tried >= all.length) {
      res.writeHead(502).end('no replica answered');
      return;
    }
    const index = this.next++ % all.length;
    const target = all[index]!;
    // The body is read whole first, so it can be sent again to the next replica on a refused connection.
    if (body === undefined) {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => this.forward(req, res, tried, Buffer.concat(chunks)));
      return;
    }
    const upstream = request(
      `${target.base}${req.url}`,
      { method: req.method, headers: { ...req.headers, host: new URL(target.base).host } },
      (reply) => {
        this.served.push(index);
        res.writeHead(reply.statusCode ?? 502, reply.headers);
        reply.pipe(res);
        res.on('close', () => reply.destroy());
      },
    );
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // Refused: the replica is gone; the next one gets the request (what a load balancer's retry does).
      if (err.code === 'ECONNREFUSED') this.forward(req, res, tried + 1, body);
      else res.writeHead(502).end(`replica ${index}: ${err.message}`);
    });
    upstream.end(body);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** A TCP proxy to `target` (host:port) that a test can cut (every connection reset, new ones refused) and restore. */
export class TcpGate {
  private readonly sockets = new Set<Socket>();
  private open = true;

  private constructor(
    private readonly server: TcpServer,
    readonly port: number,
  ) {}

  static async start(targetHost: string, targetPort: number): Promise<TcpGate> {
    let self: TcpGate | undefined;
    const server = createTcpServer((client) => {
      if (!self!.open) {
        client.destroy();
        return;
      }
      const upstream = connect(targetPort, targetHost);
      self!.sockets.add(client).add(upstream);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        self!.sockets.delete(client);
        self!.sockets.delete(upstream);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    self = new TcpGate(server, (server.address() as { port: number }).port);
    return self;
  }

  /** Resets every connection through the gate and refuses new ones until `restore`. */
  cut(): void {
    this.open = false;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  restore(): void {
    this.open = true;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
