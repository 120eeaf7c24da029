/**
 * The Streamable HTTP front (design §12): many agents share one gateway, each request bringing its
 * own bearer credential. MCP is at /mcp in both protocol eras: a 2026-07-28 request is stateless
 * (a front for the request, through the SDK's `createMcpHandler`); a 2025-era agent gets a session
 * (`Mcp-Session-Id`, GET stream, DELETE) bound to the identity that opened it, so it keeps
 * notifications, sampling, elicitation and roots. Beside it: /healthz, /readyz, /metrics (behind
 * metrics.token) and the OAuth protected-resource metadata (RFC 9728).
 *
 * Before a request reaches MCP it passes, in order: Host (DNS rebinding), Origin, the per-IP limit
 * on requests without a valid credential, the credential, required scopes, the per-consumer cap on
 * requests in progress, and the body size. Nothing of the credential is kept but its digest.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { hostname } from 'node:os';
import {
  OAuthError,
  OAuthErrorCode,
  bearerAuthChallengeResponse,
  createMcpHandler,
  getOAuthProtectedResourceMetadataUrl,
  isLegacyRequest,
  localhostAllowedHostnames,
  validateHostHeader,
  validateOriginHeader,
  type AuthInfo,
  type JSONRPCMessage,
  type JSONRPCRequest,
  type McpHttpHandler,
  WebStandardStreamableHTTPServerTransport,
} from '@modelcontextprotocol/server';
import { toNodeHandler } from '@modelcontextprotocol/node';
import type { HttpConfig } from '../config/schema.js';
import type { Gateway } from '../gateway.js';
import { AuthError } from '../identity/authenticate.js';
import { BearerVerifier } from '../identity/bearer.js';
import { ANONYMOUS, type Identity } from '../identity/identity.js';
import { Session } from '../identity/session.js';
import type { Logger } from '../log.js';
import { listenOn, reply, type OpsRoutes } from '../ops/listener.js';
import type { SessionRef } from '../pipeline/context.js';
import type { RequestStates } from '../pipeline/request-state.js';
import type { ChildServer } from '../registry/child.js';
import type { Store } from '../store/store.js';
import type { Front } from './server.js';
import { SessionBus } from './session-bus.js';
import { SessionSeal, sessionIdHash } from './session-seal.js';

export interface HttpFrontOptions {
  readonly gateway: Gateway;
  readonly http: HttpConfig;
  /** Where to listen (`serve --http`, else http.listen). */
  readonly listen: string;
  readonly ops: OpsRoutes;
  readonly log: Logger;
}

/** The caller of requests without credentials, with auth.anonymous. */
const ANONYMOUS_SESSION = new Session(ANONYMOUS, () => {});

/** The path MCP is served at. */
export const MCP_PATH = '/mcp';
const METADATA_PATH = '/.well-known/oauth-protected-resource';

export class HttpFront {
  private readonly server: Server;
  private readonly bearer: BearerVerifier;
  private readonly modern: McpHttpHandler;
  private readonly modernNode: ReturnType<typeof toNodeHandler>;
  private readonly sessions: LegacySessions;
  /** With `redis`: notifications for legacy agents' GET streams, whichever replica holds them. */
  private readonly bus: SessionBus | undefined;
  private readonly unauthenticated: PerIpWindow;
  private readonly hosts: string[];
  private readonly origins: string[];
  /** Requests in progress per consumer. */
  private readonly inProgress = new Map<string, number>();
  /** Responses (not standing streams) being answered, and who waits for there to be none (flushed). */
  private answering = 0;
  private readonly whenAnswered: (() => void)[] = [];
  /** Resource updates to publish at the end of this turn (see publishUpdate). */
  private readonly updates = new Set<string>();
  private readonly resourceUrl: URL | undefined;
  private readonly unhook: () => void;
  private address = '';
  /** This replica's MCP URL for the others (http.replicaUrl, or the bound address). */
  private replicaUrl = '';
  /** Authenticates requests one replica forwards to another (shared through the store). */
  private forwardKey: Buffer = Buffer.alloc(0);

  private constructor(
    private readonly o: HttpFrontOptions,
    private readonly seal: SessionSeal,
  ) {
    const { http, gateway } = o;
    this.resourceUrl = http.publicUrl ? new URL(http.publicUrl) : undefined;
    this.bearer = new BearerVerifier(gateway.config, gateway.keys, gateway.jwtVerifier, { resource: http.publicUrl });
    const host = parseHost(o.listen);
    // Localhost names only when bound to loopback; otherwise only what the config names.
    const loopback = host === 'localhost' || host.startsWith('127.') || host === '::1' || host === '[::1]';
    const named = [
      ...(http.allowedHosts ?? []),
      ...(this.resourceUrl ? [bracketed(this.resourceUrl.hostname)] : []),
      // The name the other replicas use for this one (their forwarded retries carry it as Host).
      ...(http.replicaUrl ? [bracketed(new URL(http.replicaUrl).hostname)] : []),
    ];
    this.hosts = [...(loopback ? localhostAllowedHostnames() : []), ...named];
    this.origins = http.allowedOrigins ?? this.hosts;
    this.unauthenticated = new PerIpWindow(http.unauthenticatedPerMinute, 60_000);
    this.modern = createMcpHandler(
      (ctx) => {
        const session = (ctx.authInfo?.extra as { session?: Session } | undefined)?.session;
        // Only reached through serveMcp, which verified the credential and put its session here.
        if (!session) throw new Error('no verified session for this request');
        return gateway.newFront(session, 'modern').server;
      },
      {
        legacy: 'reject',
        maxRequestBodySize: http.maxBodyBytes,
        onerror: (err) => o.log.debug(`modern: ${err.message}`),
      },
    );
    this.modernNode = toNodeHandler(this.modern, {
      maxRequestBodySize: http.maxBodyBytes,
      onerror: (err) => o.log.debug(`modern: ${err.message}`),
    });
    // A 2026-07-28 agent's listen stream hears of catalog changes through the handler's bus.
    this.unhook = gateway.hub.listen({ catalogChanged: (child) => this.announce(child) });
    this.bus = gateway.config.redis ? new SessionBus(gateway.config.redis, o.log.scoped('sessions')) : undefined;
    this.sessions = new LegacySessions(http.sessions, gateway.store, o.log.scoped('sessions'));

    const serverOptions = {
      // Slow clients cannot hold a connection: headers and the whole request have deadlines.
      headersTimeout: http.headersTimeoutMs,
      requestTimeout: http.requestTimeoutMs,
      keepAliveTimeout: http.idleTimeoutMs,
      connectionsCheckingInterval: Math.min(1_000, http.headersTimeoutMs),
      maxHeaderSize: 16 * 1024,
    };
    const handler = (req: IncomingMessage, res: ServerResponse) => void this.handle(req, res);
    this.server = http.tls
      ? createHttpsServer({ ...serverOptions, cert: readFileSync(http.tls.cert), key: readFileSync(http.tls.key) }, handler)
      : createHttpServer(serverOptions, handler);
    this.server.maxHeadersCount = 100;
  }

  /** Starts listening; resolves with the front and the address it is bound to (port 0: a free one). */
  static async start(o: HttpFrontOptions): Promise<{ front: HttpFront; address: string }> {
    // The key that seals session ids is the store's: every replica on it serves every session.
    const front = new HttpFront(o, new SessionSeal(await o.gateway.store.sharedSecret('http-session-seal')));
    front.forwardKey = await o.gateway.store.sharedSecret('replica-forward');
    front.address = await listenOn(front.server, o.listen);
    front.replicaUrl = o.http.replicaUrl ?? replicaUrlOf(front.address, o.http.tls !== undefined);
    o.gateway.requestStates.replica = front.replicaUrl;
    // Fail closed, but say so: off loopback only the names the config gives are accepted.
    if (front.hosts.length === 0)
      o.log.warn(
        `listening on ${front.address}, not a loopback address, with no http.allowedHosts (or publicUrl): every request is refused (403) until they name the host agents use`,
      );
    return { front, address: front.address };
  }

  /** The URL agents use, as configured (publicUrl) or as bound. */
  get url(): string {
    return this.o.http.publicUrl ?? `${this.o.http.tls ? 'https' : 'http'}://${this.address}${MCP_PATH}`;
  }

  /** Stops accepting connections and ends every session (their agents are told by the closed stream). */
  async close(): Promise<void> {
    this.unhook();
    await this.sessions.closeAll();
    await this.bus?.close();
    await this.modern.close().catch(() => {});
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  /** Stops accepting new connections (SIGTERM); requests in progress go on (the hub drains them). */
  stopAccepting(): void {
    this.server.close();
    this.server.closeIdleConnections();
  }

  /**
   * Waits until every response being written has been sent (or `ms` has passed): an answer the
   * pipeline has produced is on the wire before the connections close.
   */
  async flushed(ms: number): Promise<void> {
    if (this.answering === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.whenAnswered.push(resolve)),
      new Promise((resolve) => (timer = setTimeout(resolve, ms))),
    ]);
    clearTimeout(timer);
  }

  private announce(child: ChildServer): void {
    const notify = this.modern.notify;
    void notify.toolsChanged?.();
    const caps = child.serverCapabilities;
    if (caps?.prompts || child.catalog.prompts.length > 0) void notify.promptsChanged?.();
    if (caps?.resources || child.catalog.resources.length > 0) void notify.resourcesChanged?.();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const path = (req.url ?? '/').split('?')[0]!;
      // DNS rebinding: a page in a browser may reach a loopback gateway under a name it controls.
      const host = validateHostHeader(req.headers.host ?? null, this.hosts);
      if (!host.ok) return rpcReply(res, 403, `Forbidden: ${host.message}`);
      if (path === MCP_PATH) return await this.serveMcp(req, res);
      if (path === METADATA_PATH || path === `${METADATA_PATH}${MCP_PATH}`) return this.serveMetadata(req, res);
      if (await this.o.ops.handle(req, res, path)) return;
      reply(res, 404, { error: `not found: MCP is at ${MCP_PATH}` });
    } catch (err) {
      this.o.log.warn(`http: ${(err as Error).message}`);
      if (!res.headersSent) rpcReply(res, 500, 'Internal error');
      else res.destroy();
    }
  }

  /** RFC 9728: who issues tokens for this resource, and how to send them. */
  private serveMetadata(req: IncomingMessage, res: ServerResponse): void {
    const oauth = this.o.http.oauth;
    if (!oauth) return reply(res, 404, { error: 'this gateway names no authorization server (http.oauth)' });
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, { error: 'only GET and HEAD' }, { allow: 'GET, HEAD' });
    reply(res, 200, {
      resource: this.url,
      authorization_servers: oauth.authorizationServers,
      bearer_methods_supported: ['header'],
      scopes_supported: oauth.scopesSupported ?? oauth.requiredScopes,
      resource_name: 'mcp-gateway',
    });
  }

  private async serveMcp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const origin = validateOriginHeader(req.headers.origin ?? null, this.origins);
    if (!origin.ok) return rpcReply(res, 403, `Forbidden: ${origin.message}`);
    if (this.o.gateway.hub.draining)
      return rpcReply(res, 503, 'the gateway is stopping: send the request again once it is back', { 'retry-after': '5' });

    const ip = clientIp(req, this.o.http.trustProxy);
    if (this.unauthenticated.exceeded(ip))
      return rpcReply(res, 429, 'too many requests without a valid credential from this address', { 'retry-after': '60' });
    const header = req.headers.authorization;
    const credential = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '')?.[1];
    let session: Session;
    // auth.anonymous: a request with no Authorization header at all is the anonymous caller (a
    // header that is there must hold a valid credential).
    if (header === undefined && this.o.gateway.config.auth.anonymous) session = ANONYMOUS_SESSION;
    else if (credential === undefined) {
      this.unauthenticated.count(ip);
      return this.challenge(res, new OAuthError(OAuthErrorCode.InvalidToken, 'a bearer token is required'));
    } else
      try {
        session = await this.bearer.verify(credential);
      } catch (err) {
        if ((err as { code?: unknown }).code === 'SERVER_UNAVAILABLE')
          return rpcReply(res, 503, (err as Error).message, { 'retry-after': '5' });
        if (!(err instanceof AuthError)) throw err;
        this.unauthenticated.count(ip);
        return this.challenge(res, new OAuthError(OAuthErrorCode.InvalidToken, err.message));
      }
    const scopes = grantedScopes(session.identity);
    const required = this.o.http.oauth?.requiredScopes ?? [];
    if (session.identity.method === 'jwt' && required.some((s) => !scopes.includes(s)))
      return this.challenge(res, new OAuthError(OAuthErrorCode.InsufficientScope, `the token needs the scopes: ${required.join(' ')}`));

    const consumer = session.identity.consumerId;
    let body: unknown;
    if (req.method === 'POST') {
      const read = await readBody(req, this.o.http.maxBodyBytes);
      if (read === 'too large') {
        // Answered once the client has sent it all (up to a bound), so it reads the 413 rather
        // than a reset; a larger body is cut off.
        res.setHeader('connection', 'close');
        return rpcReply(res, 413, `the request body is over ${this.o.http.maxBodyBytes} bytes (http.maxBodyBytes)`);
      }
      try {
        body = JSON.parse(read.toString('utf8'));
      } catch {
        return rpcReply(res, 400, 'Parse error: the body is not JSON', {}, -32700);
      }
      // A retry whose call waits on another replica goes there (once: a forwarded request is served here).
      const forwarded = req.headers[FORWARDED_HEADER];
      if (forwarded !== undefined) {
        if (typeof forwarded !== 'string' || !this.forwardedBy(forwarded, read))
          return rpcReply(res, 403, 'a replica-to-replica request that does not authenticate');
      } else {
        const owner = retryOwner(body, this.o.gateway.requestStates);
        if (owner !== undefined && owner !== this.replicaUrl) return this.forward(owner, req, res, read);
      }
    }
    // Streams that stay open while nothing runs (a 2025-era session's GET stream, a 2026-07-28
    // listen) do not count as requests in progress.
    const stream = req.method === 'GET' || isMethod(body, 'subscriptions/listen');
    const busy = this.inProgress.get(consumer) ?? 0;
    if (!stream && busy >= this.o.http.maxConcurrentPerConsumer)
      return rpcReply(
        res,
        429,
        `consumer "${consumer}" has ${busy} requests in progress, the most allowed (http.maxConcurrentPerConsumer)`,
        {
          'retry-after': '1',
        },
      );
    let released = stream;
    if (!stream) {
      this.inProgress.set(consumer, busy + 1);
      this.answering++;
    }
    const release = () => {
      if (released) return;
      released = true;
      const n = (this.inProgress.get(consumer) ?? 1) - 1;
      if (n <= 0) this.inProgress.delete(consumer);
      else this.inProgress.set(consumer, n);
      if (--this.answering === 0) for (const done of this.whenAnswered.splice(0)) done();
    };
    res.once('close', release);
    try {
      const authInfo: AuthInfo = {
        // The credential stays here: the SDK hands authInfo to our own factory only.
        token: '',
        clientId: consumer,
        scopes,
        extra: { session },
      };
      const request = Object.assign(req, { auth: authInfo });
      // A 2026-07-28 listen for resource updates: subscribed through the pipeline first; what the
      // caller may not have is left out of the listen the SDK serves.
      if (isListenForResources(body)) body = await this.openListen(body, session, res);
      // Classified by the SDK from the parsed body and the headers: no second copy of the body.
      const probe = new Request(`http://localhost${MCP_PATH}`, { method: req.method ?? 'GET', headers: headerPairs(req.rawHeaders) });
      if (await isLegacyRequest(probe, body)) return await this.serveLegacy(request, res, body, session);
      await this.modernNode(request, res, body);
    } finally {
      if (res.writableEnded) release();
    }
  }

  /** Subscribes a listen's resources for its caller; they end when its stream closes. */
  private async openListen(body: ListenRequest, session: Session, res: ServerResponse): Promise<ListenRequest> {
    const front = this.o.gateway.newFront(session, 'modern');
    const kept = await front.listenOverHttp(body as unknown as JSONRPCRequest, (uri) => this.publishUpdate(uri));
    res.once('close', () => void front.endListens());
    const notifications = { ...body.params.notifications, resourceSubscriptions: kept };
    return { ...body, params: { ...body.params, notifications } };
  }

  /** Publishes a resource update once to the listen streams that subscribed to it (fronts call it once each). */
  private publishUpdate(uri: string): void {
    if (this.updates.size === 0)
      queueMicrotask(() => {
        for (const u of this.updates) this.modern.notify.resourceUpdated(u);
        this.updates.clear();
      });
    this.updates.add(uri);
  }

  /**
   * Sends a request to the replica whose process holds its call, and its answer back. The request
   * keeps the agent's credential (checked there as here) and gains a MAC of the body under the
   * replicas' shared key, with the time: the receiver serves it without forwarding it again.
   */
  private forward(target: string, req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value === undefined || HOP_HEADERS.has(name)) continue;
      headers[name] = value;
    }
    headers[FORWARDED_HEADER] = forwardTag(this.forwardKey, body, Date.now());
    headers['content-length'] = String(body.length);
    const url = new URL(target);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const upstream = send(url, { method: 'POST', headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
      res.once('close', () => answer.destroy());
    });
    upstream.on('error', (err) => {
      this.o.log.warn(`could not forward a retry to the replica holding its call (${target}): ${err.message}`);
      if (res.headersSent) return void res.destroy();
      rpcReply(
        res,
        503,
        'the gateway replica that holds this call cannot be reached (it may have stopped); make the call again without requestState',
        { 'retry-after': '1' },
      );
    });
    res.once('close', () => upstream.destroy());
    upstream.end(body);
  }

  /** Whether a forwarded request's tag is a recent one of a replica of this store for this body. */
  private forwardedBy(tag: string, body: Buffer): boolean {
    const at = Number(tag.split('.')[0]);
    if (!Number.isSafeInteger(at) || Math.abs(Date.now() - at) > FORWARD_TTL_MS) return false;
    const expected = Buffer.from(forwardTag(this.forwardKey, body, at));
    const given = Buffer.from(tag);
    return expected.length === given.length && timingSafeEqual(expected, given);
  }

  private challenge(res: ServerResponse, error: OAuthError): void {
    const resourceMetadataUrl = this.o.http.oauth ? getOAuthProtectedResourceMetadataUrl(new URL(this.url)) : undefined;
    const answer = bearerAuthChallengeResponse(error, {
      requiredScopes: this.o.http.oauth?.requiredScopes ?? [],
      ...(resourceMetadataUrl ? { resourceMetadataUrl } : {}),
    });
    void sendResponse(res, answer);
  }

  /** A 2025-era agent's request: its session's, or an `initialize` that opens one. */
  private async serveLegacy(
    req: IncomingMessage & { auth: AuthInfo },
    res: ServerResponse,
    body: unknown,
    session: Session,
  ): Promise<void> {
    const id = req.headers['mcp-session-id'];
    if (typeof id === 'string') {
      const owner = ownerOf(session.identity);
      const open = this.sessions.get(id) ?? (await this.sessions.restore(id, owner, () => this.reopen(id, session)));
      // Another caller's session id reads as an unknown one: no oracle for who holds which.
      if (open === 'refused')
        return rpcReply(res, 429, 'the gateway has the most sessions it allows; try again later', { 'retry-after': '60' });
      if (!open || open.owner !== owner || (await this.sessions.endedElsewhere(id)))
        return rpcReply(res, 404, 'Session not found', {}, -32001);
      open.binding.current = session;
      // Ended for every replica before the answer says so: a request right after it is refused on all.
      if (req.method === 'DELETE') await this.sessions.markEnded(open);
      return open.serve(req, res, body);
    }
    if (req.method !== 'POST' || !isInitialize(body))
      return rpcReply(res, 400, 'Bad Request: Mcp-Session-Id header is required (open a session with initialize)');
    const refused = this.sessions.admit(session.identity);
    if (refused) return rpcReply(res, 429, refused, { 'retry-after': '60' });
    const owner = ownerOf(session.identity);
    const initialize = initializeParams(body);
    const binding = new SessionBinding(session);
    const front = this.o.gateway.newFront(binding, 'legacy');
    const transport: WebStandardStreamableHTTPServerTransport = new WebStandardStreamableHTTPServerTransport({
      // What any replica needs to serve this session later, sealed into its id.
      sessionIdGenerator: () => this.seal.seal({ owner, createdAt: Date.now(), initialize }),
      onsessioninitialized: (sid): void =>
        this.sessions.add(new LegacySession(sid, owner, session.identity, binding, front, transport, this.bus)),
    });
    await front.connectSession(transport);
    await nodeHandlerOf(transport)(req, res, body);
    // An initialize that did not open a session (refused by the SDK) leaves nothing behind.
    if (transport.sessionId === undefined) await front.close();
  }

  /**
   * A session another replica opened (or this one ended while idle), built here from its sealed id:
   * the id must open with the store's key, belong to this caller, be younger than maxAgeMs and not
   * ended by its agent. Its `initialize` is replayed into a new front, as the agent first sent it.
   */
  private async reopen(id: string, session: Session): Promise<LegacySession | 'refused' | undefined> {
    const sealed = this.seal.open(id);
    if (!sealed || sealed.owner !== ownerOf(session.identity)) return undefined;
    if (Date.now() - sealed.createdAt > this.o.http.sessions.maxAgeMs) return undefined;
    if (await this.sessions.endedElsewhere(id)) return undefined;
    if (this.sessions.admit(session.identity)) return 'refused';
    const binding = new SessionBinding(session);
    const front = this.o.gateway.newFront(binding, 'legacy');
    const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: () => id });
    await front.connectSession(transport);
    const authInfo: AuthInfo = { token: '', clientId: session.identity.consumerId, scopes: [], extra: { session } };
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const initialize = { jsonrpc: '2.0' as const, id: 0, method: 'initialize', params: sealed.initialize };
    const url = `http://localhost${MCP_PATH}`;
    const answer = await transport.handleRequest(new Request(url, { method: 'POST', headers, body: '{}' }), {
      parsedBody: initialize,
      authInfo,
    });
    await answer.text();
    const initialized = { jsonrpc: '2.0' as const, method: 'notifications/initialized' };
    const ack = await transport.handleRequest(
      new Request(url, { method: 'POST', headers: { ...headers, 'mcp-session-id': id }, body: '{}' }),
      {
        parsedBody: initialized,
        authInfo,
      },
    );
    await ack.text();
    if (transport.sessionId !== id || answer.status !== 200) {
      await front.close();
      return undefined;
    }
    this.o.log.debug(`session of "${session.identity.consumerId}" reopened from its sealed id`);
    return new LegacySession(id, sealed.owner, session.identity, binding, front, transport, this.bus, sealed.createdAt);
  }
}

/** The params of the `initialize` in a request body (a message, or a batch holding one). */
function initializeParams(body: unknown): Record<string, unknown> {
  const messages = Array.isArray(body) ? body : [body];
  const init = messages.find((m) => (m as { method?: unknown } | null)?.method === 'initialize') as { params?: unknown } | undefined;
  return typeof init?.params === 'object' && init.params !== null ? (init.params as Record<string, unknown>) : {};
}

/** A Node request handler over a session's transport (the SDK's own adapter). */
function nodeHandlerOf(transport: WebStandardStreamableHTTPServerTransport): ReturnType<typeof toNodeHandler> {
  return toNodeHandler({ fetch: (request, extra) => transport.handleRequest(request, extra) });
}

/** The header that marks (and authenticates) a request one replica forwards to another. */
const FORWARDED_HEADER = 'mcp-gateway-replica';
/** How old a forwarded request's tag may be. */
const FORWARD_TTL_MS = 60_000;
/** Headers of one connection, not of the request: not forwarded. */
const HOP_HEADERS = new Set(['host', 'connection', 'keep-alive', 'content-length', 'transfer-encoding', 'upgrade', FORWARDED_HEADER]);

/** `<ms>.<HMAC-SHA256(key, ms, SHA-256(body))>`. */
function forwardTag(key: Buffer, body: Buffer, at: number): string {
  const digest = createHash('sha256').update(body).digest();
  return `${at}.${createHmac('sha256', key).update(`${at}.`).update(digest).digest('base64url')}`;
}

/** The replica an input-required retry must reach (its sealed state names one), if any. */
function retryOwner(body: unknown, states: RequestStates): string | undefined {
  const state = (body as { params?: { requestState?: unknown } } | null)?.params?.requestState;
  return typeof state === 'string' && !Array.isArray(body) ? states.ownerOf(state) : undefined;
}

/** The MCP URL of a replica bound to `address` (a wildcard address: this machine's name). */
function replicaUrlOf(address: string, tls: boolean): string {
  const port = /:(\d+)$/.exec(address)?.[1] ?? '80';
  const host = address.replace(/:\d+$/, '');
  const wildcard = host === '0.0.0.0' || host === '[::]' || host === '::' || host === '';
  return `${tls ? 'https' : 'http'}://${wildcard ? hostname() : host}:${port}${MCP_PATH}`;
}

/** Who a session belongs to: the same credential owner, whatever token they present next. */
function ownerOf(identity: Identity): string {
  return `${identity.method}\u0000${identity.consumerId}\u0000${identity.keyId ?? ''}`;
}

/**
 * A legacy session's caller, as of its latest request: a JWT refreshed for the same subject keeps
 * the session, and the identity, limits and checks follow the newest credential.
 */
class SessionBinding implements SessionRef {
  constructor(public current: Session) {}
  get identity(): Identity {
    return this.current.identity;
  }
  get rateLimit(): SessionRef['rateLimit'] {
    return this.current.rateLimit;
  }
  verify(now?: number): Identity | Promise<Identity> {
    return this.current.verify(now);
  }
}

class LegacySession {
  lastSeen = Date.now();
  /** Requests and GET streams open now: a session in use is never idle. */
  open = 0;
  private closed = false;

  constructor(
    readonly id: string,
    readonly owner: string,
    readonly identity: Identity,
    readonly binding: SessionBinding,
    readonly front: Front,
    readonly transport: WebStandardStreamableHTTPServerTransport,
    private readonly bus: SessionBus | undefined,
    /** When it was first opened (on whichever replica). */
    readonly createdAt = Date.now(),
  ) {
    this.handler = nodeHandlerOf(transport);
    const send = transport.send.bind(transport);
    this.sendHere = send;
    // Notifications outside any request belong on the GET stream, wherever it is open.
    if (bus)
      transport.send = (message, options) =>
        options?.relatedRequestId === undefined && 'method' in message && !('id' in message)
          ? bus.publish(id, message)
          : send(message, options);
  }

  /** Writes to this process's transport (the GET stream, for a message outside any request). */
  private readonly sendHere: WebStandardStreamableHTTPServerTransport['send'];

  private readonly handler: ReturnType<typeof toNodeHandler>;
  /** Set when its agent ended it (DELETE): then no replica serves it again. */
  deleted = false;

  async serve(req: IncomingMessage & { auth: AuthInfo }, res: ServerResponse, body: unknown): Promise<void> {
    this.lastSeen = Date.now();
    this.open++;
    res.once('close', () => {
      this.open--;
      this.lastSeen = Date.now();
    });
    if (req.method === 'GET' && this.bus) {
      const stop = this.bus.listen(this.id, (message) => void this.sendHere(message as JSONRPCMessage).catch(() => {}));
      res.once('close', stop);
    }
    await this.handler(req, res, body);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.front.close().catch(() => {});
    await this.transport.close().catch(() => {});
  }
}

/** 2025-era sessions: capped per consumer and in total, ended when idle or when their credential fails. */
class LegacySessions {
  private readonly byId = new Map<string, LegacySession>();
  private readonly sweeper: NodeJS.Timeout;

  /** Sessions being reopened from their sealed ids: concurrent requests of one share the work. */
  private readonly reopening = new Map<string, Promise<LegacySession | 'refused' | undefined>>();

  constructor(
    private readonly limits: HttpConfig['sessions'],
    private readonly store: Store,
    private readonly log: Logger,
  ) {
    this.sweeper = setInterval(() => this.sweep(), Math.min(30_000, Math.max(250, limits.idleMs / 4)));
    this.sweeper.unref();
  }

  get size(): number {
    return this.byId.size;
  }

  get(id: string): LegacySession | undefined {
    return this.byId.get(id);
  }

  /** Why a new session of `identity` is refused, or undefined; makes room by ending its own idlest one. */
  admit(identity: Identity): string | undefined {
    const owner = ownerOf(identity);
    const own = [...this.byId.values()].filter((s) => s.identity.consumerId === identity.consumerId);
    if (own.length >= this.limits.maxPerConsumer) {
      // An agent that restarts without DELETE leaves sessions behind: its own idlest one makes room.
      const idlest = own.filter((s) => s.open === 0 && s.owner === owner).sort((a, b) => a.lastSeen - b.lastSeen)[0];
      if (!idlest)
        return `consumer "${identity.consumerId}" has ${own.length} sessions in use, the most allowed (http.sessions.maxPerConsumer)`;
      void this.end(idlest, 'the consumer opened a new one at its limit', true);
    }
    if (this.byId.size >= this.limits.maxTotal)
      return `the gateway has ${this.byId.size} sessions, the most allowed (http.sessions.maxTotal)`;
    return undefined;
  }

  /** Reopens a session this process does not hold (once, however many of its requests arrive together). */
  async restore(
    id: string,
    owner: string,
    reopen: () => Promise<LegacySession | 'refused' | undefined>,
  ): Promise<LegacySession | 'refused' | undefined> {
    const key = `${owner}\u0000${id}`;
    let pending = this.reopening.get(key);
    if (!pending) {
      pending = reopen()
        .then((session) => {
          if (session instanceof LegacySession) this.add(session);
          return session;
        })
        .finally(() => this.reopening.delete(key));
      this.reopening.set(key, pending);
    }
    return pending;
  }

  /** Records in the store that a session ended (its agent's DELETE), so no replica serves it again. */
  async markEnded(session: LegacySession): Promise<void> {
    session.deleted = true;
    const now = Date.now();
    await this.store
      .endSession(sessionIdHash(session.id), new Date(now).toISOString(), new Date(now - this.limits.maxAgeMs).toISOString())
      .catch((err: Error) => this.log.warn(`could not record the end of a session in the store (${err.message})`));
  }

  /** Whether the session was ended by its agent or for idleness, on any process of this store. */
  endedElsewhere(id: string): Promise<boolean> {
    return this.store.sessionEnded(sessionIdHash(id));
  }

  add(session: LegacySession): void {
    this.byId.set(session.id, session);
    // After the SDK's own clean-up (DELETE, a closed transport).
    session.front.server.onclose = () => void this.end(session, 'closed');
  }

  /**
   * Ends a session here; `forEveryone` (its agent's DELETE, idleness) also tells the other
   * processes on the store, so its sealed id opens nowhere again.
   */
  end(session: LegacySession, why: string, forEveryone = session.deleted): Promise<void> {
    if (!this.byId.delete(session.id)) return Promise.resolve();
    this.log.debug(`session of "${session.identity.consumerId}" ended: ${why}`);
    const closed = session.close();
    if (!forEveryone) return closed;
    const recorded = this.markEnded(session);
    return Promise.all([closed, recorded]).then(() => {});
  }

  async closeAll(): Promise<void> {
    clearInterval(this.sweeper);
    await Promise.all([...this.byId.values()].map((s) => this.end(s, 'the gateway is stopping')));
  }

  /** Ends idle sessions, and those whose credential no longer holds (revoked, disabled, expired). */
  private sweep(): void {
    const now = Date.now();
    for (const session of this.byId.values()) {
      if (session.open === 0 && now - session.lastSeen > this.limits.idleMs) {
        void this.end(session, 'idle', true);
        continue;
      }
      if (now - session.createdAt > this.limits.maxAgeMs) {
        void this.end(session, 'it reached http.sessions.maxAgeMs', true);
        continue;
      }
      const revoked = (err: unknown) => {
        // A store that cannot answer is not a revocation: the next request is refused by its own check.
        if ((err as { code?: unknown }).code === 'SERVER_UNAVAILABLE') return;
        void this.end(session, (err as Error).message);
      };
      try {
        const pending = session.binding.verify(now);
        if (pending instanceof Promise) pending.catch(revoked);
      } catch (err) {
        revoked(err);
      }
    }
  }
}

/** Requests without a valid credential per client address, in fixed windows; bounded memory. */
class PerIpWindow {
  private readonly counts = new Map<string, number>();
  private windowStart = Date.now();

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
  ) {}

  private roll(): void {
    const now = Date.now();
    if (now - this.windowStart >= this.windowMs) {
      this.counts.clear();
      this.windowStart = now;
    }
  }

  exceeded(ip: string): boolean {
    this.roll();
    return (this.counts.get(ip) ?? 0) >= this.max;
  }

  count(ip: string): void {
    this.roll();
    // A flood from many addresses cannot grow the table past this: the window starts over.
    if (this.counts.size >= MAX_TRACKED_ADDRESSES && !this.counts.has(ip)) this.counts.clear();
    this.counts.set(ip, (this.counts.get(ip) ?? 0) + 1);
  }
}

const MAX_TRACKED_ADDRESSES = 100_000;

/** The client's address: the socket's, or with trustProxy the last X-Forwarded-For hop (the proxy's view). */
function clientIp(req: IncomingMessage, trustProxy: boolean): string {
  if (trustProxy) {
    const forwarded = req.headers['x-forwarded-for'];
    const hops = (Array.isArray(forwarded) ? forwarded.join(',') : (forwarded ?? ''))
      .split(',')
      .map((h) => h.trim())
      .filter(Boolean);
    if (hops.length > 0) return hops[hops.length - 1]!;
  }
  return req.socket.remoteAddress ?? 'unknown';
}

/** The scopes a JWT grants (`scope`, space-separated, or `scp`, a list). */
function grantedScopes(identity: Identity): string[] {
  const scope = identity.claims['scope'] ?? identity.claims['scp'];
  if (typeof scope === 'string') return scope.split(' ').filter(Boolean);
  if (Array.isArray(scope)) return scope.filter((s): s is string => typeof s === 'string');
  return [];
}

interface ListenRequest {
  readonly jsonrpc: '2.0';
  readonly id: string | number;
  readonly method: 'subscriptions/listen';
  readonly params: { readonly notifications: { readonly resourceSubscriptions: readonly unknown[] } & Record<string, unknown> } & Record<
    string,
    unknown
  >;
}

/** A single `subscriptions/listen` request that names resources. */
function isListenForResources(body: unknown): body is ListenRequest {
  const m = body as { method?: unknown; id?: unknown; params?: { notifications?: { resourceSubscriptions?: unknown } } } | null;
  return (
    typeof m === 'object' &&
    m !== null &&
    m.method === 'subscriptions/listen' &&
    m.id !== undefined &&
    Array.isArray(m.params?.notifications?.resourceSubscriptions)
  );
}

function isInitialize(body: unknown): boolean {
  return isMethod(body, 'initialize');
}

/** Whether a JSON-RPC message (or one of a batch) is a request for `method`. */
function isMethod(body: unknown, method: string): boolean {
  const messages = Array.isArray(body) ? body : [body];
  return messages.some((m) => typeof m === 'object' && m !== null && (m as { method?: unknown }).method === method);
}

/** Most of an oversized body read (and dropped) before the 413, so the client gets to read it. */
const MAX_DISCARDED_BYTES = 64 * 1024 * 1024;

/**
 * Reads a request body up to `max` bytes; 'too large' when it is over (declared or sent), once
 * the rest has been read and dropped (at most MAX_DISCARDED_BYTES; past that the connection is cut).
 */
async function readBody(req: IncomingMessage, max: number): Promise<Buffer | 'too large'> {
  const declared = Number(req.headers['content-length']);
  const chunks: Buffer[] = [];
  let size = 0;
  let over = Number.isFinite(declared) && declared > max;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > max) over = true;
    if (over) {
      chunks.length = 0;
      if (size > MAX_DISCARDED_BYTES) {
        req.socket.destroy();
        break;
      }
      continue;
    }
    chunks.push(chunk as Buffer);
  }
  return over ? 'too large' : Buffer.concat(chunks);
}

/** An HTTP error with a JSON-RPC error body (what MCP clients read), id null: no request was read. */
function rpcReply(res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}, code = -32000): void {
  reply(res, status, { jsonrpc: '2.0', id: null, error: { code, message } }, headers);
}

async function sendResponse(res: ServerResponse, response: Response): Promise<void> {
  res.writeHead(response.status, Object.fromEntries(response.headers));
  res.end(Buffer.from(await response.arrayBuffer()));
}

/** Node's raw header list as [name, value] pairs (what a Web `Request` takes). */
function headerPairs(raw: readonly string[]): [string, string][] {
  const pairs: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) pairs.push([raw[i]!, raw[i + 1]!]);
  return pairs;
}

function parseHost(listen: string): string {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):\d{1,5}$/.exec(listen);
  return m ? (m[1] ?? m[2] ?? '127.0.0.1') || '127.0.0.1' : '127.0.0.1';
}

function bracketed(hostname: string): string {
  return hostname.includes(':') && !hostname.startsWith('[') ? `[${hostname}]` : hostname;
}
