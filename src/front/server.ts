/**
 * The MCP server an agent talks to (design §9), built on the SDK's low-level `Server`. It lists
 * what the caller may use, routes each request to the server that owns it, and runs every call
 * through the pipeline. It holds no policy, limit or audit logic of its own.
 */
import { createHash } from 'node:crypto';
import {
  CLIENT_CAPABILITIES_META_KEY,
  CLIENT_INFO_META_KEY,
  LOG_LEVEL_META_KEY,
  PROTOCOL_VERSION_META_KEY,
  Server,
  type ClientCapabilities,
  type JSONRPCMessage,
  type JSONRPCRequest,
  type LoggingLevel,
  type Notification,
  type RequestId,
  type Transport,
} from '@modelcontextprotocol/server';
import { serveStdio, type StdioServerHandle } from '@modelcontextprotocol/server/stdio';
import { ResultSchema } from '@modelcontextprotocol/core';
import type { GatewayConfig } from '../config/schema.js';
import { GATEWAY_SERVER_ID } from '../config/schema.js';
import { GatewayError, isGatewayError } from '../errors.js';
import type { Identity } from '../identity/identity.js';
import type { Logger } from '../log.js';
import { CallContext, type AgentInfo, type CallKind, type CallRequest, type ResultObject, type SessionRef } from '../pipeline/context.js';
import type { Target } from '../policy/types.js';
import { compileGlob } from '../config/glob.js';
import { normalizeResourceUri } from '../policy/uri.js';
import { LOG_LEVELS, type FrontHub, type HubFront } from './hub.js';
import {
  INPUT_CAPABILITY,
  relayedCapabilities,
  type ChildServer,
  type RawEntry,
  type RawResource,
  type RawTemplate,
} from '../registry/child.js';
import type { Registry } from '../registry/registry.js';
import type { ArgumentValidator } from '../registry/validate.js';
import type { Redactor } from '../secrets/redactor.js';
import type { GatewayTool, GatewayToolContext } from './gateway-tools.js';
import { RpcError, toRpcError, toolErrorResult } from './replies.js';

/** What the front needs to know of policy: whether a caller could ever be allowed a target. */
export interface ListFilter {
  mayAllow(identity: Identity, target: Target): boolean;
}

export interface FrontOptions {
  readonly config: GatewayConfig;
  /** The agent's session, once its credential is verified (requests wait for it). */
  readonly session: Promise<SessionRef>;
  readonly registry: Registry;
  readonly pipeline: (ctx: CallContext) => Promise<void>;
  readonly policy: ListFilter;
  readonly validator: ArgumentValidator;
  readonly redactor: Redactor;
  readonly gatewayTools: ReadonlyMap<string, GatewayTool>;
  /** What the gateway's own tools work with (shared by every front). */
  readonly toolContext: GatewayToolContext;
  /** What all fronts share: which agent's requests are at which child (front/hub.ts). */
  readonly hub: FrontHub;
  /** The agent's era when the front serves one already known (HTTP); stdio learns it from the first message. */
  readonly era?: 'legacy' | 'modern';
  /** The session when it is known already (HTTP: the request's credential was verified first). */
  readonly known?: SessionRef;
  readonly logger: Logger;
  readonly serverInfo: { name: string; version: string };
}

/** A request handler of the front: the request's params (an object) and what it may do meanwhile. */
type Handler = (params: Record<string, unknown>, extra: HandlerExtra) => Promise<unknown>;

export class Front implements HubFront {
  readonly server: Server;
  private readonly expose: GatewayConfig['naming']['expose'];
  private initialized = false;

  /** Whether an agent has opened its connection (and it is not closed). */
  get agentConnected(): boolean {
    return this.initialized && !this.closed;
  }
  private closed = false;
  /** The agent's protocol era, fixed by its first message (serveStdio pins it). */
  era: 'legacy' | 'modern' | undefined;
  private stdio: StdioServerHandle | undefined;
  /** Capabilities of the first request of a 2026-07-28 agent: what the children are told it has. */
  private firstCapabilities: ClientCapabilities | undefined;
  /** Open subscriptions/listen streams of a 2026-07-28 agent: the URIs each subscribed to. */
  private readonly listens = new Map<RequestId, { uris: string[]; agent: AgentInfo; envelope: Record<string, unknown> }>();
  /** Where resource updates go for a 2026-07-28 agent's listen over HTTP (listenOverHttp). */
  private publish: ((uri: string) => void) | undefined;
  /** The level of log messages the agent asked for. */
  logLevel: LoggingLevel | undefined;
  /** The URIs each child connection is subscribed to (see syncSubscriptions). */
  private readonly subscribedUris = new WeakMap<object, Set<string>>();
  private readonly subscriptions = new Set<string>();
  private sessionValue: SessionRef | undefined;
  private transport: (Transport & BacklogAware) | undefined;
  /** Children paused until the agent catches up (holdUntilDrained). */
  private readonly held = new Set<ChildServer>();
  private readonly metaFilters = new Map<string, (meta: Record<string, unknown>) => Record<string, unknown> | undefined>();
  private readonly log: Logger;
  /** The requests the front answers, by method (see `handle`). */
  private readonly handlers = new Map<string, Handler>();

  constructor(private readonly o: FrontOptions) {
    this.expose = o.config.naming.expose;
    this.log = o.logger.scoped('front');
    this.server = new Server(o.serverInfo, {
      capabilities: {
        tools: { listChanged: true },
        prompts: { listChanged: true },
        resources: { listChanged: true, subscribe: true },
        logging: {},
        completions: {},
      },
      instructions:
        'mcp-gateway: every tool of every registered MCP server is named "<server>' +
        o.config.naming.separator +
        '<tool>". Calls pass authentication, policy and rate limits and are recorded in an audit log.',
      // Bursts of list_changed (many children starting at once) reach the agent as one.
      debouncedNotificationMethods: [
        'notifications/tools/list_changed',
        'notifications/prompts/list_changed',
        'notifications/resources/list_changed',
      ],
    });
    this.era = o.era;
    this.sessionValue = o.known;
    o.session.then(
      (session) => (this.sessionValue = session),
      () => {},
    );
    this.server.oninitialized = () => this.onInitialized();
    this.server.onerror = (err) => this.log.debug(`protocol: ${err.message}`);
    // Every request of ours goes through the fallback: results leave as the pipeline produced them
    // (a registered `tools/call` handler would have its result re-validated and stripped).
    this.server.fallbackRequestHandler = (request, ctx) => this.dispatch(request, ctx.mcpReq);
    this.registerHandlers();
  }

  /**
   * Serves the agent on `transport`, in the era its first message opens (2025: `initialize`;
   * 2026-07-28: a request with the `_meta` envelope); one server instance for the connection.
   */
  connect(transport: Transport & BacklogAware): Promise<void> {
    this.transport = transport;
    this.o.hub.add(this);
    this.stdio = serveStdio(
      ({ era }) => {
        this.era = era;
        return this.server;
      },
      { transport, legacy: 'serve', onerror: (err) => this.log.debug(`stdio: ${err.message}`) },
    );
    return Promise.resolve();
  }

  /** Closes the connection to the agent. */
  async close(): Promise<void> {
    this.closed = true;
    this.o.hub.delete(this);
    if (this.stdio) await this.stdio.close();
    else await this.server.close();
  }

  /**
   * Serves a 2025-era agent's HTTP session on `transport` (one front per session): it hears of
   * catalog changes and takes the pushes of children serving its calls until closed.
   */
  async connectSession(transport: Transport): Promise<void> {
    this.era = 'legacy';
    this.o.hub.add(this);
    await this.server.connect(transport);
  }

  /**
   * Every message the agent sends, before the SDK sees it: a 2026-07-28 agent subscribes to
   * resources in `subscriptions/listen` (which the SDK answers itself) and ends that stream with
   * `notifications/cancelled`; the gateway subscribes its children accordingly, through the pipeline.
   */
  observe(message: JSONRPCMessage): void {
    const m = message as { id?: RequestId; method?: string; params?: Record<string, unknown> };
    // No child starts on `server/discover`: an SDK agent may probe the era on a disposable
    // process of the gateway, which must not start (and sandbox) every server for nothing.
    if (m.method === 'subscriptions/listen' && m.id !== undefined) {
      const uris = (m.params?.['notifications'] as { resourceSubscriptions?: unknown } | undefined)?.resourceSubscriptions;
      const envelope = Object.fromEntries(
        Object.entries((m.params?.['_meta'] ?? {}) as Record<string, unknown>).filter(([k]) => ENVELOPE_KEYS.has(k)),
      );
      const agent = this.agentOfEnvelope(envelope);
      void this.openListen(m.id, Array.isArray(uris) ? uris.filter((u): u is string => typeof u === 'string') : [], agent, envelope);
    } else if (m.method === 'notifications/cancelled') {
      const id = (m.params as { requestId?: RequestId } | undefined)?.requestId;
      if (id !== undefined && this.listens.has(id)) void this.closeListen(id);
    }
  }

  /** The hub calls this when a child's catalog or availability changed. */
  onCatalogChanged(child: ChildServer): void {
    if (!this.initialized) return;
    // A listen over HTTP hears of list changes through the HTTP front; a restarted child is
    // subscribed again here.
    if (this.publish) return this.syncSubscriptions(child);
    // A child that became ready after the agent's logging/setLevel (lazy, slow, restarted) gets it now.
    this.syncSubscriptions(child);
    const notify = (p: Promise<void>) => p.catch((err) => this.log.debug(`list_changed: ${(err as Error).message}`));
    notify(this.server.sendToolListChanged());
    const caps = child.serverCapabilities;
    if (caps?.prompts || child.catalog.prompts.length > 0) notify(this.server.sendPromptListChanged());
    if (caps?.resources || child.catalog.resources.length > 0) notify(this.server.sendResourceListChanged());
  }

  /**
   * The registry calls this with a child's notification to relay (log message, resource update).
   * While the agent is not reading, the child is paused (its own pipe slows it down) until the
   * agent has caught up, and what it had already sent is dropped and counted (server_status): a
   * child that floods cannot make the gateway hold more than MAX_AGENT_BACKLOG_BYTES for it.
   */
  onChildNotification(child: ChildServer, notification: Notification): void {
    if (!this.initialized) return;
    const params = (notification.params ?? {}) as Record<string, unknown>;
    const relay = (p: Record<string, unknown>) => {
      if (this.congested()) {
        child.noteDropped();
        this.holdUntilDrained(child);
        return;
      }
      void this.server.notification({ method: notification.method, params: this.o.redactor.value(p) }).catch(() => {});
    };
    switch (notification.method) {
      case 'notifications/message': {
        const level = params['level'] as LoggingLevel;
        const logger = typeof params['logger'] === 'string' ? `${child.id}/${params['logger']}` : child.id;
        if (this.era === 'modern') {
          // A 2026-07-28 agent gets log messages with a request that asked for them (its envelope's
          // logLevel): the latest one in flight at this child. Outside a request there is no channel.
          const ctx = this.o.hub
            .callsAt(child, this)
            .reverse()
            .find((c) => c.request.agent.logLevel !== undefined && admits(c.request.agent.logLevel, level));
          if (ctx) void ctx.request.notify('notifications/message', this.o.redactor.value({ ...params, logger }));
          return;
        }
        if (this.logLevel && !admits(this.logLevel, level)) return;
        relay({ ...params, logger });
        return;
      }
      case 'notifications/resources/updated': {
        // Only for a URI this child serves (config order): a later server cannot speak for an
        // earlier one's resources.
        const uri = typeof params['uri'] === 'string' ? normalizeResourceUri(params['uri']) : null;
        if (
          uri?.ok &&
          this.subscriptions.has(uri.uri) &&
          this.o.registry.resourceOwner(uri.uri) === child.id &&
          this.mayAllow({ server: child.id, kind: 'resource', name: uri.uri })
        ) {
          if (this.congested()) {
            child.noteDropped();
            this.holdUntilDrained(child);
            return;
          }
          // A listen over HTTP: published to the streams that subscribed to this URI (HttpFront).
          if (this.publish) return this.publish(uri.uri);
          // Through the SDK's own send: on a 2026-07-28 connection it goes to the listen streams
          // that subscribed to this URI.
          void this.server.sendResourceUpdated(this.o.redactor.value(params) as { uri: string }).catch(() => {});
        }
        return;
      }
      default:
        this.log.debug(`not relayed: ${notification.method} from ${child.id}`);
    }
  }

  /**
   * Relays a child's request (sampling, elicitation, roots) to this 2025-era agent and returns its
   * answer (the hub has decided it is this agent's, and redacted it). It goes with the agent's
   * request in progress at that child when there is one (over HTTP, on that request's stream).
   */
  async relayToAgent(child: ChildServer, request: { method: string; params?: Record<string, unknown> }, signal: AbortSignal) {
    const capability = INPUT_CAPABILITY[request.method];
    if (capability === undefined || !this.server.getClientCapabilities()?.[capability]) {
      throw new RpcError(-32601, `the agent does not support ${request.method}`);
    }
    this.log.debug(`relaying ${request.method} from ${child.id} to the agent`);
    const calls = this.o.hub.callsAt(child, this);
    const ask = calls.length === 1 ? calls[0]!.request.ask : undefined;
    if (ask) return ask(request);
    return this.server.request(request, ResultSchema, { signal, timeout: 10 * 60_000 }) as Promise<Record<string, unknown>>;
  }

  /**
   * Children start once the agent has initialized (their capabilities mirror its) and is
   * authenticated. A 2026-07-28 agent never initializes: its first request stands for it.
   */
  private onInitialized(): void {
    if (this.initialized) return;
    this.initialized = true;
    // Roots keep the agent's `listChanged`: the gateway only passes on the agent's roots/list_changed.
    const capabilities = relayedCapabilities(this.era === 'modern' ? this.firstCapabilities : this.server.getClientCapabilities());
    this.o.session.then(
      () => this.o.registry.start(capabilities),
      () => {},
    );
  }

  /** Requests may arrive without `notifications/initialized` (some clients skip it). */
  private ensureStarted(): void {
    if (!this.initialized) this.onInitialized();
  }

  // ---------------------------------------------------------------- handlers

  private handle(method: string, handler: Handler): void {
    this.handlers.set(method, handler);
  }

  /** Answers a request with its handler; the SDK has checked that `params`, when present, is an object. */
  private dispatch(request: JSONRPCRequest, mcpReq: RequestCtx): Promise<Record<string, unknown>> {
    const handler = this.handlers.get(request.method);
    if (!handler) return Promise.reject(new RpcError(-32601, `Method not found: ${request.method}`));
    if (this.o.hub.draining) {
      const stopping = new GatewayError('SERVER_UNAVAILABLE', 'the gateway is stopping: send the request again once it is back');
      return request.method === 'tools/call' ? Promise.resolve(toolErrorResult(stopping)) : Promise.reject(toRpcError(stopping, 'tool'));
    }
    this.o.hub.begin();
    return this.answer(handler, request, mcpReq).finally(() => this.o.hub.end());
  }

  private answer(handler: Handler, request: JSONRPCRequest, mcpReq: RequestCtx): Promise<Record<string, unknown>> {
    const agent = this.era === 'modern' ? this.agentOfEnvelope(mcpReq.envelope ?? {}) : this.legacyAgent();
    if (agent.era === 'modern') {
      this.firstCapabilities ??= (agent.capabilities ?? {}) as ClientCapabilities;
      // The level a 2026-07-28 request asks for is also what the children are set to send.
      if (agent.logLevel !== undefined && agent.logLevel !== this.logLevel && isLevel(agent.logLevel)) {
        this.logLevel = agent.logLevel;
        void Promise.all(this.o.registry.all().map((c) => this.o.hub.syncLogLevel(c)));
      }
    }
    const state = mcpReq.requestState?.();
    const extra: HandlerExtra = {
      signal: mcpReq.signal,
      sendNotification: (n) => mcpReq.notify(n as Notification),
      agent,
      envelope: mcpReq.envelope,
      retry:
        agent.era === 'modern' && (state !== undefined || mcpReq.inputResponses !== undefined)
          ? { state: typeof state === 'string' ? state : JSON.stringify(state), responses: mcpReq.inputResponses }
          : undefined,
      ask:
        agent.era === 'legacy'
          ? (r) => {
              this.log.debug(`asking the agent: ${r.method}`);
              const params = r.params === undefined ? undefined : (this.o.redactor.value(r.params) as Record<string, unknown>);
              const sent = params === undefined ? { method: r.method } : { method: r.method, params };
              return mcpReq.send(sent, ResultSchema, { signal: mcpReq.signal, timeout: 10 * 60_000 }) as Promise<Record<string, unknown>>;
            }
          : undefined,
    };
    return handler((request.params ?? {}) as Record<string, unknown>, extra) as Promise<Record<string, unknown>>;
  }

  /** The agent of a 2025-era connection: what `initialize` said. */
  private legacyAgent(): AgentInfo {
    const client = this.server.getClientVersion();
    return {
      era: 'legacy',
      capabilities: this.server.getClientCapabilities(),
      logLevel: this.logLevel,
      client: client ? { name: client.name, version: client.version } : undefined,
      protocol: this.server.getNegotiatedProtocolVersion(),
    };
  }

  /** The agent of a 2026-07-28 request: what its `_meta` envelope says. */
  private agentOfEnvelope(envelope: Record<string, unknown>): AgentInfo {
    const client = envelope[CLIENT_INFO_META_KEY] as { name?: unknown; version?: unknown } | undefined;
    const level = envelope[LOG_LEVEL_META_KEY];
    const protocol = envelope[PROTOCOL_VERSION_META_KEY];
    return {
      era: 'modern',
      capabilities: (envelope[CLIENT_CAPABILITIES_META_KEY] as Record<string, unknown> | undefined) ?? undefined,
      logLevel: typeof level === 'string' ? level : undefined,
      client: typeof client?.name === 'string' ? { name: client.name, version: String(client.version ?? '') } : undefined,
      protocol: typeof protocol === 'string' ? protocol : undefined,
    };
  }

  /**
   * A listen stream of a 2026-07-28 agent opened: each resource it subscribes to is a
   * `resources/subscribe` through the pipeline (identity, policy, limits, audit), then at the child.
   */
  private async openListen(id: RequestId, uris: readonly string[], agent: AgentInfo, envelope: Record<string, unknown>): Promise<string[]> {
    const kept: string[] = [];
    const accepted: string[] = [];
    this.listens.set(id, { uris: kept, agent, envelope });
    for (const uri of uris) {
      try {
        const route = await this.routeResource(uri);
        const ctx = await this.context('resources/subscribe', route, { uri }, quietExtra(agent, envelope));
        await this.settled(ctx);
        this.keepSubscription(route.name, route.server === null ? undefined : this.o.registry.get(route.server));
        kept.push(route.name);
        accepted.push(uri);
      } catch (err) {
        this.log.debug(`subscriptions/listen ${uri}: ${(err as Error).message}`);
      }
    }
    return accepted;
  }

  /**
   * A 2026-07-28 agent's `subscriptions/listen` over HTTP, on a front that lives as long as its
   * stream: each resource it names is subscribed through the pipeline (identity, policy, limits,
   * audit); resolves with the URIs it got (the HTTP front leaves the others out of the listen the
   * SDK serves). Updates of them go to `publish`. `endListens` ends them when the stream closes.
   */
  async listenOverHttp(message: JSONRPCRequest, publish: (uri: string) => void): Promise<string[]> {
    const params = (message.params ?? {}) as Record<string, unknown>;
    const uris = (params['notifications'] as { resourceSubscriptions?: unknown } | undefined)?.resourceSubscriptions;
    const envelope = Object.fromEntries(
      Object.entries((params['_meta'] ?? {}) as Record<string, unknown>).filter(([k]) => ENVELOPE_KEYS.has(k)),
    );
    this.publish = publish;
    this.initialized = true;
    this.o.hub.add(this);
    const wanted = Array.isArray(uris) ? uris.filter((u): u is string => typeof u === 'string') : [];
    return this.openListen(message.id, wanted, this.agentOfEnvelope(envelope), envelope);
  }

  /** The stream of listenOverHttp closed: its subscriptions end (unless another agent wants them). */
  async endListens(): Promise<void> {
    for (const id of [...this.listens.keys()]) await this.closeListen(id);
    this.o.hub.delete(this);
  }

  /** A listen stream ended: its subscriptions end too, at the children, through the pipeline. */
  private async closeListen(id: RequestId): Promise<void> {
    const listen = this.listens.get(id);
    this.listens.delete(id);
    if (!listen) return;
    const stillWanted = new Set([...this.listens.values()].flatMap((l) => l.uris));
    for (const uri of listen.uris) {
      if (stillWanted.has(uri)) continue;
      try {
        let route = await this.routeResource(uri);
        if (route.server !== null) this.forgetSubscription(route.name, this.o.registry.get(route.server));
        // Another agent still subscribed to it: the shared server keeps the subscription.
        if (this.o.hub.subscribedElsewhere(route.name, this)) route = { ...route, run: async () => ({}) };
        await this.settled(await this.context('resources/unsubscribe', route, { uri }, quietExtra(listen.agent, listen.envelope)));
      } catch (err) {
        this.log.debug(`end of subscriptions/listen ${uri}: ${(err as Error).message}`);
      }
    }
  }

  private registerHandlers(): void {
    this.handle('tools/list', async (params) => {
      const identity = await this.identityOrThrow();
      await this.settle();
      return this.page('tools', this.listTools(identity), params['cursor']);
    });

    this.handle('tools/call', async (params, extra) => {
      const name = params['name'];
      this.ensureStarted();
      // A malformed call still goes through the pipeline, so it is refused the usual way and audited.
      const invalid = this.shapeProblem(params, 'name');
      const route: Route = invalid
        ? { kind: 'tool', server: null, name: describe(name), arguments: undefined, entryPoint: false, invalid }
        : await this.routeOnceSettled(
            () => this.routeTool(name as string, params['arguments'] as Record<string, unknown> | undefined),
            (r) => r.server,
          );
      const ctx = await this.context('tools/call', route, params, extra);
      await this.run(ctx);
      return ctx.error ? toolErrorResult(ctx.error) : ctx.result;
    });

    this.handle('prompts/list', async (params) => {
      const identity = await this.identityOrThrow();
      await this.settle();
      const prompts =
        this.expose === 'meta'
          ? []
          : this.o.registry
              .prompts()
              .filter((p) => this.o.policy.mayAllow(identity, { server: p.server, kind: 'prompt', name: p.entry.name }))
              .map((p) => ({ ...p.entry, name: p.exposedName }));
      return this.page('prompts', prompts, params['cursor']);
    });

    this.handle('prompts/get', async (params, extra) => {
      const name = params['name'];
      this.ensureStarted();
      const invalid = this.shapeProblem(params, 'name');
      const route: Route = invalid
        ? { kind: 'prompt', server: null, name: describe(name), arguments: undefined, entryPoint: false, invalid }
        : this.routePrompt(name as string, params['arguments'] as Record<string, unknown> | undefined);
      return this.settled(await this.context('prompts/get', route, params, extra));
    });

    this.handle('resources/list', async (params) => {
      const identity = await this.identityOrThrow();
      await this.settle();
      const resources: RawResource[] = [];
      for (const [uri, entry, server] of this.o.registry.listedResources()) {
        if (this.o.policy.mayAllow(identity, { server, kind: 'resource', name: uri })) resources.push(entry);
      }
      return this.page('resources', resources, params['cursor']);
    });

    this.handle('resources/templates/list', async (params) => {
      const identity = await this.identityOrThrow();
      await this.settle();
      const templates: RawTemplate[] = [];
      for (const [template, server] of this.o.registry.listedTemplates()) {
        if (this.o.policy.mayAllow(identity, { server, kind: 'resource', name: template.uriTemplate })) templates.push(template);
      }
      return this.page('resourceTemplates', templates, params['cursor']);
    });

    const resource = (method: 'resources/read' | 'resources/subscribe' | 'resources/unsubscribe') =>
      this.handle(method, async (params, extra) => {
        this.ensureStarted();
        let route = await this.routeResource(params['uri']);
        if (method === 'resources/unsubscribe' && route.server !== null && !route.invalid) {
          // The agent no longer wants it, whatever the child says: a restart must not renew it.
          this.forgetSubscription(route.name, this.o.registry.get(route.server));
          // Another agent still subscribed to it: the shared server keeps the subscription (the
          // request still passes the pipeline, and is recorded).
          if (this.o.hub.subscribedElsewhere(route.name, this)) route = { ...route, run: async () => ({}) };
        }
        const ctx = await this.context(method, route, params, extra);
        const result = await this.settled(ctx);
        if (method === 'resources/subscribe') this.keepSubscription(route.name, this.o.registry.get(route.server!));
        return result;
      });
    resource('resources/read');
    resource('resources/subscribe');
    resource('resources/unsubscribe');

    this.handle('completion/complete', async (params, extra) => {
      this.ensureStarted();
      const route = await this.routeCompletion(params);
      return this.settled(await this.context('completion/complete', route, params, extra));
    });

    this.handle('logging/setLevel', async (params, extra) => {
      const level = params['level'];
      if (typeof level !== 'string' || !LOG_LEVELS.includes(level as LoggingLevel)) {
        throw new RpcError(-32602, `Invalid params: "level" must be one of ${LOG_LEVELS.join(', ')}`);
      }
      this.ensureStarted();
      // Through the pipeline like every request that reaches children (identity, limits, audit);
      // an entry point: every authenticated caller may set the level of what it is sent.
      const route: Route = {
        kind: 'admin',
        server: GATEWAY_SERVER_ID,
        name: 'logging/setLevel',
        arguments: { level },
        entryPoint: true,
        run: async () => {
          this.logLevel = level as LoggingLevel;
          // Children not ready yet get the level when they are (onCatalogChanged).
          await Promise.all(this.o.registry.all().map((c) => this.o.hub.syncLogLevel(c)));
          return {};
        },
      };
      return this.settled(await this.context('logging/setLevel', route, params, extra));
    });

    // The SDK answers logging/setLevel itself when it is not given a handler: ours goes through the pipeline.
    this.server.setRequestHandler('logging/setLevel', (request, ctx) => this.dispatch(request as unknown as JSONRPCRequest, ctx.mcpReq));

    this.server.setNotificationHandler('notifications/roots/list_changed', async () => {
      for (const child of this.o.registry.all()) void child.notify({ method: 'notifications/roots/list_changed' });
    });
  }

  /** Whether this agent is subscribed to `uri` (resources/subscribe). */
  hasSubscription(uri: string): boolean {
    return this.subscriptions.has(uri);
  }

  /** Remembers a subscription, so that a restarted child is subscribed again (syncSubscriptions). */
  private keepSubscription(uri: string, child: ChildServer | undefined): void {
    this.subscriptions.add(uri);
    if (child) this.subscribedOn(child)?.add(uri);
  }

  private forgetSubscription(uri: string, child: ChildServer | undefined): void {
    this.subscriptions.delete(uri);
    if (child) this.subscribedOn(child)?.delete(uri);
  }

  /** The URIs a child's current connection is subscribed to (undefined while it has none). */
  private subscribedOn(child: ChildServer): Set<string> | undefined {
    const caps = child.serverCapabilities;
    if (!caps) return undefined;
    let uris = this.subscribedUris.get(caps);
    if (!uris) this.subscribedUris.set(caps, (uris = new Set()));
    return uris;
  }

  /** Subscribes a (re)started child to the agent's subscriptions it serves. */
  private syncSubscriptions(child: ChildServer): void {
    if (this.subscriptions.size === 0 || child.state !== 'ready' || !child.serverCapabilities?.resources?.subscribe) return;
    const done = this.subscribedOn(child)!;
    for (const uri of this.subscriptions) {
      if (done.has(uri) || this.o.registry.resourceOwner(uri) !== child.id) continue;
      done.add(uri);
      child.request('resources/subscribe', { uri }, { signal: AbortSignal.timeout(10_000) }).catch((err: Error) => {
        done.delete(uri);
        this.log.debug(`resources/subscribe ${uri} at ${child.id}: ${err.message}`);
      });
    }
  }

  /**
   * Routes with `route`; when it finds no server while servers are still on their first start,
   * waits for them (as a list does) and routes again: a request may come before any list. Once
   * the session is known and the name routes, the answer is immediate (the hot path).
   */
  private routeOnceSettled<T>(route: () => T, serverOf: (routed: T) => string | null): T | Promise<T> {
    if (this.sessionValue !== undefined) {
      const first = route();
      if (serverOf(first) !== null || !this.firstStartsPending()) return first;
    }
    return this.routeWhenSettled(route, serverOf);
  }

  private async routeWhenSettled<T>(route: () => T, serverOf: (routed: T) => string | null): Promise<T> {
    // The children start once the session is known (onInitialized): until then none is pending.
    await this.o.session.catch(() => {});
    const first = route();
    if (serverOf(first) !== null || !this.firstStartsPending()) return first;
    await this.settle();
    return route();
  }

  /** Whether servers may still join: not started yet (the start follows the session), or on their first start. */
  private firstStartsPending(): boolean {
    return !this.o.registry.isStarted || this.o.registry.all().some((c) => c.firstStartPending);
  }

  // ---------------------------------------------------------------- routing

  /** Where a tools/call goes: a gateway tool, a `call` re-targeted to its tool, or a child tool. */
  private routeTool(name: string, args: Record<string, unknown> | undefined): Route {
    if (this.expose !== 'direct') {
      const own = this.o.gatewayTools.get(name);
      if (own) {
        if (name === 'call') {
          const target = this.callTarget(args);
          if (target) return target;
        }
        return { kind: 'admin', server: GATEWAY_SERVER_ID, name, arguments: args, entryPoint: own.entryPoint };
      }
    }
    const split = this.o.registry.splitName(name);
    return { kind: 'tool', server: split?.server ?? null, name: split?.name ?? name, arguments: args, entryPoint: false };
  }

  /** The tool a well-formed `call` names; undefined leaves it to `call` itself to explain. */
  private callTarget(args: Record<string, unknown> | undefined): Route | undefined {
    const tool = args?.['tool'];
    const server = args?.['server'];
    const inner = args?.['arguments'];
    if (typeof tool !== 'string' || (server !== undefined && typeof server !== 'string')) return undefined;
    if (inner !== undefined && (typeof inner !== 'object' || inner === null || Array.isArray(inner))) return undefined;
    const innerArgs = inner as Record<string, unknown> | undefined;
    const split = this.o.registry.splitName(tool);
    if (split && (server === undefined || server === split.server)) {
      return { kind: 'tool', server: split.server, name: split.name, arguments: innerArgs, entryPoint: false };
    }
    if (typeof server === 'string') {
      // An unknown server is named as the agent would name the tool, like a known one it may not see.
      const known = this.o.registry.get(server) !== undefined;
      return {
        kind: 'tool',
        server: known ? server : null,
        name: known ? tool : this.o.registry.exposedName(server, tool),
        arguments: innerArgs,
        entryPoint: false,
      };
    }
    // A bare name: the servers whose tool of that name the caller may see. Servers it may never
    // see are not named, nor counted as making the name ambiguous; when only those have it, the
    // call goes to the first of them, so the audit row records what was asked of whom.
    const owners = this.o.registry.serversWithTool(tool);
    const identity = this.sessionValue?.identity;
    const visible = owners.filter((id) => this.mayAllow({ server: id, kind: 'tool', name: tool }, identity));
    if (visible.length > 1) return undefined; // ambiguous: `call` explains
    const target = visible[0] ?? owners[0] ?? null;
    return { kind: 'tool', server: target, name: tool, arguments: innerArgs, entryPoint: false, askedAs: tool };
  }

  private routePrompt(name: string, args: Record<string, unknown> | undefined): Route {
    const split = this.o.registry.splitName(name, 'prompt');
    return { kind: 'prompt', server: split?.server ?? null, name: split?.name ?? name, arguments: args, entryPoint: false };
  }

  /**
   * Where a resource request goes, decided on the normalised URI (policy/uri.ts), which is also
   * what is forwarded: a URI the gateway cannot normalise unambiguously is refused.
   */
  private routeResource(uri: unknown): Route | Promise<Route> {
    const refused = (invalid: string): Route => ({
      kind: 'resource',
      server: null,
      name: describe(uri),
      arguments: undefined,
      entryPoint: false,
      invalid,
    });
    if (typeof uri !== 'string') return refused('"uri" must be a string');
    const long = this.tooLong(uri, 'uri');
    if (long) return refused(long);
    const normal = normalizeResourceUri(uri);
    if (!normal.ok) return refused(`the URI cannot be read through the gateway: ${normal.reason}`);
    // The URI as sent is kept in the audit row when it is not the one decided on.
    const args = normal.uri === uri ? undefined : { uri };
    return this.routeOnceSettled(
      (): Route => ({
        kind: 'resource',
        server: this.o.registry.resourceOwner(normal.uri),
        name: normal.uri,
        arguments: args,
        entryPoint: false,
      }),
      (r) => r.server,
    );
  }

  /**
   * Where a completion goes: the prompt or resource template its `ref` names. Its `argument` and
   * `context.arguments` are what policy conditions see, as the arguments of that prompt.
   */
  private routeCompletion(params: Record<string, unknown>): Route | Promise<Route> {
    const ref = params['ref'] as { type?: unknown; name?: unknown; uri?: unknown } | undefined;
    const argument = params['argument'] as { name?: unknown; value?: unknown } | undefined;
    const context = (params['context'] as { arguments?: unknown } | undefined)?.arguments;
    const args: Record<string, unknown> = typeof context === 'object' && context !== null && !Array.isArray(context) ? { ...context } : {};
    if (typeof argument?.name === 'string') args[argument.name] = argument.value;
    const base = { arguments: args, entryPoint: false, params };
    const refused = (kind: 'prompt' | 'resource', invalid: string): Route => ({
      ...base,
      kind,
      server: null,
      name: describe(ref?.name ?? ref?.uri),
      invalid,
    });
    if (typeof argument?.name !== 'string' || typeof argument.value !== 'string')
      return refused('prompt', '"argument" must have a string name and value');
    if (ref?.type === 'ref/prompt' && typeof ref.name === 'string') {
      const long = this.tooLong(ref.name, 'name');
      if (long) return refused('prompt', long);
      return { ...base, ...this.routePrompt(ref.name, args), params };
    }
    if (ref?.type === 'ref/resource' && typeof ref.uri === 'string') {
      const uri = ref.uri;
      const long = this.tooLong(uri, 'uri');
      if (long) return refused('resource', long);
      return this.routeOnceSettled(
        (): Route => ({ ...base, kind: 'resource', server: this.o.registry.templateOwner(uri), name: uri }),
        (r) => r.server,
      );
    }
    return refused('prompt', '"ref" must be a ref/prompt with a name or a ref/resource with a uri');
  }

  // ---------------------------------------------------------------- lists

  private listTools(identity: Identity): RawEntry[] {
    const tools: RawEntry[] = [];
    const direct = this.o.toolContext.visibleTools(identity);
    if (this.expose !== 'direct') {
      for (const own of this.o.gatewayTools.values()) {
        const visible = own.entryPoint
          ? direct.length > 0
          : this.o.policy.mayAllow(identity, { server: GATEWAY_SERVER_ID, kind: 'tool', name: own.definition.name });
        if (visible) tools.push(own.definition);
      }
    }
    if (this.expose !== 'meta')
      for (const t of direct) {
        // A gateway tool's name is the gateway's (a server shown under its own names may offer one too).
        if (this.expose === 'both' && this.o.gatewayTools.has(t.exposedName)) continue;
        tools.push({ ...t.entry, name: t.exposedName });
      }
    return tools;
  }

  /**
   * One page of a list, with `nextCursor` when more follow: at most PAGE_ENTRIES entries and about
   * PAGE_BYTES of JSON (at least one entry), so no reply grows with what the children offer. The
   * cursor is the position in the list; a list that changed between pages was announced with
   * list_changed.
   */
  private page<T extends object>(key: string, items: readonly T[], cursor: unknown): Record<string, unknown> {
    let start = 0;
    if (cursor !== undefined) {
      const m = typeof cursor === 'string' ? /^([a-zA-Z]+):(\d{1,9})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8')) : null;
      if (!m || m[1] !== key || Number(m[2]) > items.length)
        throw new RpcError(-32602, 'Invalid params: unknown or expired "cursor"; list again from the start');
      start = Number(m[2]);
    }
    let end = start;
    let bytes = 0;
    while (end < items.length && end - start < PAGE_ENTRIES) {
      const size = jsonSize(items[end]!);
      if (end > start && bytes + size > PAGE_BYTES) break;
      bytes += size;
      end++;
    }
    const page: Record<string, unknown> = { [key]: start === 0 && end === items.length ? items : items.slice(start, end) };
    if (end < items.length) page['nextCursor'] = Buffer.from(`${key}:${end}`).toString('base64url');
    return page;
  }

  // ---------------------------------------------------------------- helpers

  private async settle(): Promise<void> {
    this.ensureStarted();
    // The children start once the session is known (onInitialized): wait for that first.
    await this.o.session.catch(() => {});
    await this.o.registry.settle(this.o.config.limits.listWaitMs);
  }

  private async identityOrThrow(): Promise<Identity> {
    const session = this.sessionValue ?? (await this.o.session);
    try {
      return await session.verify();
    } catch (err) {
      throw isGatewayError(err) ? toRpcError(err, 'tool') : err;
    }
  }

  /** Policy check for the session's caller (notifications arrive only once it is known). */
  private mayAllow(target: Target, identity: Identity | undefined = this.sessionValue?.identity): boolean {
    return identity !== undefined && this.o.policy.mayAllow(identity, target);
  }

  /** Whether the agent is not reading what it is sent: notifications are then dropped, not queued. */
  private congested(): boolean {
    return (this.transport?.backlogBytes?.() ?? 0) > MAX_AGENT_BACKLOG_BYTES;
  }

  /** Pauses a child's output until the agent has taken what it was sent. */
  private holdUntilDrained(child: ChildServer): void {
    const onceDrained = this.transport?.onceDrained;
    if (!onceDrained || this.held.has(child)) return;
    this.held.add(child);
    child.pauseOutput();
    onceDrained.call(this.transport, () => {
      this.held.delete(child);
      child.resumeOutput();
    });
  }

  /** What is wrong with a request's `name` and `arguments`, or undefined when they are usable. */
  private shapeProblem(params: Record<string, unknown>, key: 'name'): string | undefined {
    const value = params[key];
    if (typeof value !== 'string') return `"${key}" must be a string`;
    const long = this.tooLong(value, key);
    if (long) return long;
    const args = params['arguments'];
    if (args !== undefined && (typeof args !== 'object' || args === null || Array.isArray(args))) return '"arguments" must be an object';
    return undefined;
  }

  /** Why a name or URI is refused for its length (limits.maxNameBytes), or undefined. */
  private tooLong(value: string, key: 'name' | 'uri'): string | undefined {
    const max = this.o.config.limits.maxNameBytes;
    // A UTF-16 unit is at most 3 UTF-8 bytes: most values are decided without encoding them.
    if (value.length * 3 <= max) return undefined;
    const bytes = Buffer.byteLength(value);
    return bytes > max ? `"${key}" is ${bytes} bytes, over the gateway's limit of ${max} (limits.maxNameBytes)` : undefined;
  }

  /** The context of a request; waits for the session only while it is not yet known. */
  private context(method: string, route: Route, params: Record<string, unknown>, extra: HandlerExtra): CallContext | Promise<CallContext> {
    const session = this.sessionValue;
    if (session === undefined) return this.o.session.then((s) => this.contextFor(s, method, route, params, extra));
    return this.contextFor(session, method, route, params, extra);
  }

  private contextFor(session: SessionRef, method: string, route: Route, params: Record<string, unknown>, extra: HandlerExtra): CallContext {
    const meta = params['_meta'] as Record<string, unknown> | undefined;
    let progressToken: string | number | undefined;
    let rest: Record<string, unknown> | undefined = meta;
    if (meta && ('progressToken' in meta || extra.agent.era === 'modern')) {
      // The agent's token is not passed on: the SDK gives the child its own and we map it back.
      // Nor is the envelope of a 2026-07-28 request: it describes the agent's hop, not the child's.
      const { progressToken: token, ...others } = meta as { progressToken?: string | number } & Record<string, unknown>;
      progressToken = token;
      for (const key of ENVELOPE_KEYS) delete others[key];
      rest = Object.keys(others).length > 0 ? others : undefined;
    }
    if (rest && route.server !== null) rest = this.metaFilter(route.server)(rest);
    const child = route.server === null ? undefined : this.o.registry.get(route.server);
    // Field by field, not a spread of the route: one object shape for every request.
    const request: CallRequest = {
      method,
      agent: extra.agent,
      kind: route.kind,
      server: route.server,
      name: route.name,
      arguments: route.arguments,
      entryPoint: route.entryPoint,
      invalid: route.invalid,
      params: route.params,
      run: route.run,
      askedAs: route.askedAs,
      signal: extra.signal,
      progressToken,
      meta: rest,
      // As the agent sent it: with the envelope (client info, protocol version, capabilities).
      receivedMeta: extra.envelope && Object.keys(extra.envelope).length > 0 ? { ...extra.envelope, ...meta } : meta,
      retry: extra.retry,
      ask: extra.ask,
      notify: (m, p) => {
        // Progress is dropped, not queued, while the agent is not reading (a flood from a child).
        if (this.congested()) {
          if (child) {
            child.noteDropped();
            this.holdUntilDrained(child);
          }
          return Promise.resolve();
        }
        return extra.sendNotification({ method: m, params: p } as never);
      },
    };
    return new CallContext(session, request);
  }

  /** The `_meta` keys a server may receive (servers[].metaAllow); every key when unset. */
  private metaFilter(server: string): (meta: Record<string, unknown>) => Record<string, unknown> | undefined {
    // Compiled once per server, on its first request with a _meta.
    let filter = this.metaFilters.get(server);
    if (filter === undefined) {
      const globs = this.o.config.servers.find((s) => s.id === server)?.metaAllow;
      if (globs === undefined) {
        filter = (meta) => meta;
      } else {
        const allowed = globs.map(compileGlob);
        filter = (meta) => {
          const kept = Object.entries(meta).filter(([k]) => allowed.some((m) => m(k)));
          return kept.length > 0 ? Object.fromEntries(kept) : undefined;
        };
      }
      this.metaFilters.set(server, filter);
    }
    return filter;
  }

  /**
   * Runs a request through the pipeline. While it is at a child, the hub knows it is this agent's:
   * the child's pushes and log messages come here (a 2026-07-28 agent's go with the request).
   */
  private async run(ctx: CallContext): Promise<void> {
    const child = ctx.server !== null ? this.o.registry.get(ctx.server) : undefined;
    if (!child) return this.o.pipeline(ctx);
    this.o.hub.enter(child, ctx, this);
    try {
      await this.o.pipeline(ctx);
    } finally {
      this.o.hub.leave(child, ctx);
    }
  }

  /** Runs a request without an isError form; a refusal becomes a JSON-RPC error. */
  private async settled(ctx: CallContext): Promise<ResultObject | undefined> {
    await this.run(ctx);
    if (ctx.error) throw toRpcError(ctx.error, ctx.kind);
    return ctx.result;
  }
}

type Route = Pick<CallRequest, 'server' | 'name' | 'arguments' | 'entryPoint' | 'invalid'> &
  Partial<Pick<CallRequest, 'params' | 'run' | 'askedAs'>> & { readonly kind: CallKind };

interface HandlerExtra {
  readonly signal: AbortSignal;
  readonly sendNotification: (n: { method: string; params?: Record<string, unknown> }) => Promise<void>;
  readonly agent: AgentInfo;
  /** The 2026-07-28 envelope keys the SDK lifted out of the request's `_meta`. */
  readonly envelope?: Record<string, unknown> | undefined;
  readonly retry?: CallRequest['retry'];
  readonly ask?: CallRequest['ask'];
}

/** What the front reads of the SDK's request context. */
interface RequestCtx {
  readonly signal: AbortSignal;
  readonly notify: (n: Notification) => Promise<void>;
  readonly envelope?: Record<string, unknown> | undefined;
  readonly inputResponses?: Record<string, unknown> | undefined;
  readonly requestState?: (() => unknown) | undefined;
  readonly send: (
    request: { method: string; params?: Record<string, unknown> },
    schema: typeof ResultSchema,
    options: object,
  ) => Promise<unknown>;
}

/** The extra of a request the gateway makes on the agent's behalf (a listen's subscriptions). */
function quietExtra(agent: AgentInfo, envelope: Record<string, unknown> | undefined): HandlerExtra {
  return { signal: new AbortController().signal, sendNotification: async () => {}, agent, envelope };
}

function isLevel(level: string): level is LoggingLevel {
  return (LOG_LEVELS as readonly string[]).includes(level);
}

/** Whether a log message of `level` passes a filter set at `threshold`. */
function admits(threshold: string, level: string): boolean {
  return LOG_LEVELS.indexOf(level as LoggingLevel) >= LOG_LEVELS.indexOf(threshold as LoggingLevel);
}

/** `_meta` keys that describe the agent's hop to the gateway (the 2026-07-28 envelope): never passed on. */
const ENVELOPE_KEYS: ReadonlySet<string> = new Set([
  CLIENT_CAPABILITIES_META_KEY,
  CLIENT_INFO_META_KEY,
  LOG_LEVEL_META_KEY,
  PROTOCOL_VERSION_META_KEY,
]);

/** A transport that can tell how much it holds for the agent, not yet taken (AgentStdioTransport). */
export interface BacklogAware {
  backlogBytes?(): number;
  /** Calls back once the agent has taken what it was sent. */
  onceDrained?(callback: () => void): void;
}

/** Above this much unread output for the agent, notifications from children are dropped (and counted). */
const MAX_AGENT_BACKLOG_BYTES = 1024 * 1024;
/** Most entries, and about the most JSON, of one page of a list the gateway answers. */
const PAGE_ENTRIES = 1_000;
const PAGE_BYTES = 2 * 1024 * 1024;

const sizes = new WeakMap<object, number>();
/** The JSON length of a list entry, computed once per entry (catalog entries live until they change). */
function jsonSize(entry: object): number {
  let size = sizes.get(entry);
  if (size === undefined) sizes.set(entry, (size = JSON.stringify(entry)?.length ?? 0));
  return size;
}

/** A name for the audit log, whatever the agent sent: long ones cut, with their size and digest. */
function describe(value: unknown): string {
  const text = typeof value === 'string' ? value : String(JSON.stringify(value) ?? typeof value);
  if (text.length <= 1_024) return text;
  const digest = createHash('sha256').update(text).digest('hex');
  return `${text.slice(0, 256)}…[${Buffer.byteLength(text)} bytes, sha256 ${digest}]`;
}
