/**
 * The MCP server an agent talks to (design §9), built on the SDK's low-level `Server`. It lists
 * what the caller may use, routes each request to the server that owns it, and runs every call
 * through the pipeline. It holds no policy, limit or audit logic of its own.
 */
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { Protocol } from '@modelcontextprotocol/sdk/shared/protocol.js';
import { UriTemplate } from '@modelcontextprotocol/sdk/shared/uriTemplate.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { ClientCapabilities, LoggingLevel, Notification } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { GatewayConfig } from '../config/schema.js';
import { GATEWAY_SERVER_ID } from '../config/schema.js';
import { GatewayError, isGatewayError } from '../errors.js';
import type { Identity } from '../identity/identity.js';
import type { Logger } from '../log.js';
import { CallContext, type CallKind, type CallRequest, type ResultObject, type SessionRef } from '../pipeline/context.js';
import type { Target } from '../policy/types.js';
import type { ChildServer, RawEntry } from '../registry/child.js';
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
  readonly logger: Logger;
  readonly serverInfo: { name: string; version: string };
}

const LOG_LEVELS: readonly LoggingLevel[] = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];
const passthrough = z.custom<Record<string, unknown>>((v) => typeof v === 'object' && v !== null && !Array.isArray(v));

export class Front {
  readonly server: Server;
  private readonly expose: GatewayConfig['naming']['expose'];
  private initialized = false;
  private logLevel: LoggingLevel | undefined;
  /** The level each child connection was last sent (see syncLogLevel). */
  private readonly levelSent = new WeakMap<object, LoggingLevel>();
  /** The URIs each child connection is subscribed to (see syncSubscriptions). */
  private readonly subscribedUris = new WeakMap<object, Set<string>>();
  private readonly subscriptions = new Set<string>();
  private sessionValue: SessionRef | undefined;
  private readonly log: Logger;
  readonly toolContext: GatewayToolContext;

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
    o.session.then(
      (session) => (this.sessionValue = session),
      () => {},
    );
    this.server.oninitialized = () => this.onInitialized();
    this.server.onerror = (err) => this.log.debug(`protocol: ${err.message}`);
    this.toolContext = {
      registry: o.registry,
      validator: o.validator,
      redactor: o.redactor,
      visibleTools: (identity) => this.visibleTools(identity),
      conflicts: () => this.uriConflicts(),
    };
    this.registerHandlers();
  }

  connect(transport: Transport): Promise<void> {
    return this.server.connect(transport);
  }

  /** The registry calls this when a child's catalog or availability changed. */
  onCatalogChanged(child: ChildServer): void {
    if (!this.initialized) return;
    // A child that became ready after the agent's logging/setLevel (lazy, slow, restarted) gets it now.
    void this.syncLogLevel(child);
    this.syncSubscriptions(child);
    const notify = (p: Promise<void>) => p.catch((err) => this.log.debug(`list_changed: ${(err as Error).message}`));
    notify(this.server.sendToolListChanged());
    const caps = child.serverCapabilities;
    if (caps?.prompts || child.catalog.prompts.length > 0) notify(this.server.sendPromptListChanged());
    if (caps?.resources || child.catalog.resources.length > 0) notify(this.server.sendResourceListChanged());
  }

  /** The registry calls this with a child's notification to relay (log message, resource update). */
  onChildNotification(child: ChildServer, notification: Notification): void {
    if (!this.initialized) return;
    const params = (notification.params ?? {}) as Record<string, unknown>;
    switch (notification.method) {
      case 'notifications/message': {
        const level = params['level'] as LoggingLevel;
        if (this.logLevel && LOG_LEVELS.indexOf(level) < LOG_LEVELS.indexOf(this.logLevel)) return;
        const logger = typeof params['logger'] === 'string' ? `${child.id}/${params['logger']}` : child.id;
        void this.server
          .notification({ method: 'notifications/message', params: this.o.redactor.value({ ...params, logger }) })
          .catch(() => {});
        return;
      }
      case 'notifications/resources/updated': {
        const uri = params['uri'];
        if (typeof uri === 'string' && this.subscriptions.has(uri) && this.mayAllow({ server: child.id, kind: 'resource', name: uri })) {
          void this.server.notification({ method: notification.method, params: this.o.redactor.value(params) }).catch(() => {});
        }
        return;
      }
      default:
        this.log.debug(`not relayed: ${notification.method} from ${child.id}`);
    }
  }

  /** Relays a child's request (sampling, elicitation, roots) to the agent and returns its answer. */
  async relayToAgent(child: ChildServer, request: { method: string; params?: Record<string, unknown> }, signal: AbortSignal) {
    const caps = this.server.getClientCapabilities();
    const supported =
      request.method === 'sampling/createMessage'
        ? caps?.sampling
        : request.method === 'elicitation/create'
          ? caps?.elicitation
          : request.method === 'roots/list'
            ? caps?.roots
            : undefined;
    if (!supported) throw new RpcError(-32601, `the agent does not support ${request.method}`);
    this.log.debug(`relaying ${request.method} from ${child.id} to the agent`);
    return this.server.request(request as never, passthrough, { signal, timeout: 10 * 60_000 });
  }

  /**
   * Capabilities for the child-facing clients: exactly those the agent declared that the gateway
   * relays (sampling, elicitation, roots), so a child offers only what the agent can serve. Roots
   * keep the agent's `listChanged`: the gateway only passes on the agent's roots/list_changed.
   */
  static childCapabilities(agent: ClientCapabilities | undefined): ClientCapabilities {
    const caps: ClientCapabilities = {};
    if (agent?.sampling) caps.sampling = agent.sampling;
    if (agent?.elicitation) caps.elicitation = agent.elicitation;
    if (agent?.roots) caps.roots = agent.roots;
    return caps;
  }

  /** Children start once the agent has initialized (their capabilities mirror its) and is authenticated. */
  private onInitialized(): void {
    if (this.initialized) return;
    this.initialized = true;
    const capabilities = Front.childCapabilities(this.server.getClientCapabilities());
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

  private handle(method: string, handler: (params: Record<string, unknown>, extra: HandlerExtra) => Promise<unknown>): void {
    // The SDK has already checked that `params`, when present, is an object (JSONRPCRequestSchema).
    const schema = z.object({ method: z.literal(method), params: z.any().optional() });
    // Registered through Protocol, not Server: Server re-parses every tools/call result with
    // strict schemas, which costs time on the hot path and drops fields a child added.
    Protocol.prototype.setRequestHandler.call(this.server, schema, (req: { params?: Record<string, unknown> }, extra: HandlerExtra) =>
      handler(req.params ?? {}, extra),
    );
  }

  private registerHandlers(): void {
    this.handle('tools/list', async () => {
      const identity = await this.identityOrThrow();
      await this.settle();
      return { tools: this.listTools(identity) };
    });

    this.handle('tools/call', async (params, extra) => {
      const name = params['name'];
      const args = params['arguments'];
      this.ensureStarted();
      // A malformed call still goes through the pipeline, so it is refused the usual way and audited.
      const invalid = shapeProblem(params, 'name');
      const route: Route = invalid
        ? { kind: 'tool', server: null, name: describe(name), arguments: undefined, entryPoint: false, invalid }
        : await this.routeOnceSettled(
            () => this.routeTool(name as string, args as Record<string, unknown> | undefined),
            (r) => r.server,
          );
      const ctx = await this.context(route, params, extra);
      await this.o.pipeline(ctx);
      return ctx.error ? toolErrorResult(ctx.error) : ctx.result;
    });

    this.handle('prompts/list', async () => {
      const identity = await this.identityOrThrow();
      await this.settle();
      if (this.expose === 'meta') return { prompts: [] };
      const prompts = this.o.registry
        .prompts()
        .filter((p) => this.o.policy.mayAllow(identity, { server: p.server, kind: 'prompt', name: p.entry.name }))
        .map((p) => ({ ...p.entry, name: p.exposedName }));
      return { prompts };
    });

    this.handle('prompts/get', async (params, extra) => {
      const name = params['name'];
      this.ensureStarted();
      const invalid = shapeProblem(params, 'name');
      const split = invalid ? undefined : this.o.registry.splitName(name as string);
      const args = invalid ? undefined : (params['arguments'] as Record<string, unknown> | undefined);
      const ctx = await this.context(
        { kind: 'prompt', server: split?.server ?? null, name: split?.name ?? describe(name), arguments: args, entryPoint: false, invalid },
        params,
        extra,
      );
      return this.settled(ctx);
    });

    this.handle('resources/list', async () => {
      const identity = await this.identityOrThrow();
      await this.settle();
      return {
        resources: this.visibleResources(
          identity,
          (c) => c.catalog.resources,
          (r) => r.uri,
        ),
      };
    });

    this.handle('resources/templates/list', async () => {
      const identity = await this.identityOrThrow();
      await this.settle();
      return {
        resourceTemplates: this.visibleResources(
          identity,
          (c) => c.catalog.resourceTemplates,
          (t) => t.uriTemplate,
        ),
      };
    });

    this.handle('resources/read', async (params, extra) => {
      const uri = params['uri'];
      this.ensureStarted();
      const invalid = shapeProblem(params, 'uri');
      const server = invalid
        ? null
        : await this.routeOnceSettled(
            () => this.resourceOwner(uri as string),
            (owner) => owner,
          );
      const ctx = await this.context(
        { kind: 'resource', server, name: describe(uri), arguments: undefined, entryPoint: false, invalid },
        params,
        extra,
      );
      return this.settled(ctx);
    });

    const subscription = (method: 'resources/subscribe' | 'resources/unsubscribe') =>
      this.handle(method, async (params, extra) => {
        const uri = params['uri'];
        if (typeof uri !== 'string') throw new RpcError(-32602, 'Invalid params: "uri" must be a string');
        const identity = await this.identityOrThrow();
        this.ensureStarted();
        const server = await this.routeOnceSettled(
          () => this.resourceOwner(uri),
          (owner) => owner,
        );
        if (server === null) throw toRpcError(new GatewayError('UNKNOWN_TOOL', `no server offers resource "${uri}"`), 'resource');
        if (!this.mayAllow({ server, kind: 'resource', name: uri }, identity)) {
          throw toRpcError(new GatewayError('FORBIDDEN', `you may not read "${uri}"`), 'resource');
        }
        const child = this.o.registry.get(server)!;
        const subscribe = method === 'resources/subscribe';
        const had = this.subscriptions.has(uri);
        if (!subscribe) {
          // The agent no longer wants it, whatever the child says: a restart must not renew it.
          this.subscriptions.delete(uri);
          this.subscribedOn(child)?.delete(uri);
          if (child.state !== 'ready') return {}; // a child not running holds no subscription
        }
        try {
          await child.ready();
          if (!child.serverCapabilities?.resources?.subscribe) {
            throw new RpcError(-32601, `server "${server}" does not support resource subscriptions`);
          }
          if (subscribe) {
            // Kept, so that a restarted child is subscribed again (syncSubscriptions).
            this.subscriptions.add(uri);
            this.subscribedOn(child)?.add(uri);
          }
          await child.request(method, { uri }, { signal: extra.signal });
        } catch (err) {
          if (subscribe && !had) {
            this.subscriptions.delete(uri);
            this.subscribedOn(child)?.delete(uri);
          }
          throw isGatewayError(err) ? toRpcError(err, 'resource') : err;
        }
        return {};
      });
    subscription('resources/subscribe');
    subscription('resources/unsubscribe');

    this.handle('completion/complete', async (params, extra) => {
      const identity = await this.identityOrThrow();
      const ref = params['ref'] as { type?: unknown; name?: unknown; uri?: unknown } | undefined;
      let server: string | null = null;
      let forwardRef: Record<string, unknown> | undefined;
      if (ref?.type === 'ref/prompt' && typeof ref.name === 'string') {
        const split = this.o.registry.splitName(ref.name);
        if (split && this.mayAllow({ server: split.server, kind: 'prompt', name: split.name }, identity)) {
          server = split.server;
          forwardRef = { ...ref, name: split.name };
        }
      } else if (ref?.type === 'ref/resource' && typeof ref.uri === 'string') {
        const uri = ref.uri;
        this.ensureStarted();
        const owner = await this.routeOnceSettled(
          () => this.templateOwner(uri),
          (o) => o,
        );
        if (owner && this.mayAllow({ server: owner, kind: 'resource', name: ref.uri }, identity)) {
          server = owner;
          forwardRef = { ...ref };
        }
      }
      const child = server === null ? undefined : this.o.registry.get(server);
      if (!child || !forwardRef) return { completion: { values: [], hasMore: false } };
      try {
        // Ready first: the capabilities of a child still starting are not known yet.
        await child.ready();
        if (!child.serverCapabilities?.completions) return { completion: { values: [], hasMore: false } };
        return this.o.redactor.value(await child.request('completion/complete', { ...params, ref: forwardRef }, { signal: extra.signal }));
      } catch (err) {
        throw isGatewayError(err) ? toRpcError(err, 'prompt') : err;
      }
    });

    this.handle('logging/setLevel', async (params) => {
      const level = params['level'];
      if (typeof level !== 'string' || !LOG_LEVELS.includes(level as LoggingLevel)) {
        throw new RpcError(-32602, `Invalid params: "level" must be one of ${LOG_LEVELS.join(', ')}`);
      }
      this.logLevel = level as LoggingLevel;
      this.ensureStarted();
      // Children not ready yet get the level when they are (onCatalogChanged).
      await Promise.all(this.o.registry.all().map((c) => this.syncLogLevel(c)));
      return {};
    });

    this.server.setNotificationHandler(
      z.object({ method: z.literal('notifications/roots/list_changed'), params: passthrough.optional() }),
      async () => {
        for (const child of this.o.registry.all()) void child.notify({ method: 'notifications/roots/list_changed' });
      },
    );
  }

  /**
   * Sends the agent's log level to a ready child that has not got it on its current connection.
   * Keyed by the connection's capabilities object, so a restarted child is sent it again.
   */
  private async syncLogLevel(child: ChildServer): Promise<void> {
    const level = this.logLevel;
    const caps = child.serverCapabilities;
    if (level === undefined || child.state !== 'ready' || !caps?.logging || this.levelSent.get(caps) === level) return;
    this.levelSent.set(caps, level);
    try {
      await child.request('logging/setLevel', { level }, { signal: AbortSignal.timeout(5_000) });
    } catch (err) {
      if (this.levelSent.get(caps) === level) this.levelSent.delete(caps);
      this.log.debug(`logging/setLevel to ${child.id}: ${(err as Error).message}`);
    }
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
      if (done.has(uri) || this.resourceOwner(uri) !== child.id) continue;
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

  private firstStartsPending(): boolean {
    return this.o.registry.all().some((c) => c.firstStartPending);
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
      return { kind: 'tool', server: this.o.registry.get(server) ? server : null, name: tool, arguments: innerArgs, entryPoint: false };
    }
    const owners = this.o.registry.serversWithTool(tool);
    if (owners.length > 1) return undefined; // ambiguous: `call` explains
    return { kind: 'tool', server: owners[0] ?? null, name: tool, arguments: innerArgs, entryPoint: false };
  }

  /** The server that serves a resource URI: listed URI, then template, then its URI scheme. */
  private resourceOwner(uri: string): string | null {
    for (const child of this.o.registry.all()) {
      if (child.catalog.resources.some((r) => r.uri === uri)) return child.id;
    }
    return this.templateOwner(uri) ?? this.schemeOwner(uri);
  }

  private templateOwner(uri: string): string | null {
    for (const child of this.o.registry.all()) {
      for (const t of child.catalog.resourceTemplates) {
        if (t.uriTemplate === uri || matchesTemplate(t.uriTemplate, uri)) return child.id;
      }
    }
    return null;
  }

  /** A URI no list names, whose scheme only one server uses (servers serve URIs they do not list). */
  private schemeOwner(uri: string): string | null {
    const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(uri)?.[1];
    if (!scheme) return null;
    const owners = this.o.registry
      .all()
      .filter((c) =>
        [...c.catalog.resources.map((r) => r.uri), ...c.catalog.resourceTemplates.map((t) => t.uriTemplate)].some((u) =>
          u.startsWith(`${scheme}:`),
        ),
      );
    return owners.length === 1 ? owners[0]!.id : null;
  }

  private uriConflicts(): { uri: string; servers: string[] }[] {
    const owners = new Map<string, string[]>();
    for (const child of this.o.registry.all()) {
      const uris = new Set([...child.catalog.resources.map((r) => r.uri), ...child.catalog.resourceTemplates.map((t) => t.uriTemplate)]);
      for (const uri of uris) owners.set(uri, [...(owners.get(uri) ?? []), child.id]);
    }
    return [...owners].filter(([, s]) => s.length > 1).map(([uri, servers]) => ({ uri, servers }));
  }

  // ---------------------------------------------------------------- lists

  /** The direct tools the identity may use (also what `list_tools` shows). */
  visibleTools(identity: Identity) {
    return this.o.registry.tools().filter((t) => this.o.policy.mayAllow(identity, { server: t.server, kind: 'tool', name: t.entry.name }));
  }

  /**
   * Resources or templates of every server the identity may read, each URI once (one two servers
   * claim is served by the first in config order, so its entry is the one listed).
   */
  private visibleResources<T>(identity: Identity, pick: (c: ChildServer) => readonly T[], uriOf: (entry: T) => string): T[] {
    const seen = new Set<string>();
    const out: T[] = [];
    for (const child of this.o.registry.all()) {
      for (const entry of pick(child)) {
        const uri = uriOf(entry);
        if (seen.has(uri)) continue;
        seen.add(uri);
        if (this.o.policy.mayAllow(identity, { server: child.id, kind: 'resource', name: uri })) out.push(entry);
      }
    }
    return out;
  }

  private listTools(identity: Identity): RawEntry[] {
    const tools: RawEntry[] = [];
    const direct = this.visibleTools(identity);
    if (this.expose !== 'direct') {
      for (const own of this.o.gatewayTools.values()) {
        const visible = own.entryPoint
          ? direct.length > 0
          : this.o.policy.mayAllow(identity, { server: GATEWAY_SERVER_ID, kind: 'tool', name: own.definition.name });
        if (visible) tools.push(own.definition);
      }
    }
    if (this.expose !== 'meta') for (const t of direct) tools.push({ ...t.entry, name: t.exposedName });
    return tools;
  }

  // ---------------------------------------------------------------- helpers

  private async settle(): Promise<void> {
    this.ensureStarted();
    await this.o.registry.settle(this.o.config.limits.listWaitMs);
  }

  private async identityOrThrow(): Promise<Identity> {
    const session = this.sessionValue ?? (await this.o.session);
    try {
      return session.verify();
    } catch (err) {
      throw isGatewayError(err) ? toRpcError(err, 'tool') : err;
    }
  }

  /** Policy check for the session's caller (notifications arrive only once it is known). */
  private mayAllow(target: Target, identity: Identity | undefined = this.sessionValue?.identity): boolean {
    return identity !== undefined && this.o.policy.mayAllow(identity, target);
  }

  /** The context of a request; waits for the session only while it is not yet known. */
  private context(route: Route, params: Record<string, unknown>, extra: HandlerExtra): CallContext | Promise<CallContext> {
    const session = this.sessionValue;
    if (session === undefined) return this.o.session.then((s) => this.contextFor(s, route, params, extra));
    return this.contextFor(session, route, params, extra);
  }

  private contextFor(session: SessionRef, route: Route, params: Record<string, unknown>, extra: HandlerExtra): CallContext {
    const meta = params['_meta'] as Record<string, unknown> | undefined;
    let progressToken: string | number | undefined;
    let rest: Record<string, unknown> | undefined = meta;
    if (meta && 'progressToken' in meta) {
      // The agent's token is not passed on: the SDK gives the child its own and we map it back.
      const { progressToken: token, ...others } = meta as { progressToken?: string | number };
      progressToken = token;
      rest = Object.keys(others).length > 0 ? others : undefined;
    }
    // Field by field, not a spread of the route: one object shape for every request.
    const request: CallRequest = {
      kind: route.kind,
      server: route.server,
      name: route.name,
      arguments: route.arguments,
      entryPoint: route.entryPoint,
      invalid: route.invalid,
      signal: extra.signal,
      progressToken,
      meta: rest,
      notify: (method, p) => extra.sendNotification({ method, params: p } as never),
    };
    return new CallContext(session, request);
  }

  /** Runs a request without an isError form; a refusal becomes a JSON-RPC error. */
  private async settled(ctx: CallContext): Promise<ResultObject | undefined> {
    await this.o.pipeline(ctx);
    if (ctx.error) throw toRpcError(ctx.error, ctx.kind);
    return ctx.result;
  }
}

type Route = Pick<CallRequest, 'server' | 'name' | 'arguments' | 'entryPoint' | 'invalid'> & { readonly kind: CallKind };

interface HandlerExtra {
  readonly signal: AbortSignal;
  readonly sendNotification: (n: { method: string; params?: Record<string, unknown> }) => Promise<void>;
}

/** What is wrong with a request's `name`/`uri` and `arguments`, or undefined when they are usable. */
function shapeProblem(params: Record<string, unknown>, key: 'name' | 'uri'): string | undefined {
  if (typeof params[key] !== 'string') return `"${key}" must be a string`;
  const args = params['arguments'];
  if (args !== undefined && (typeof args !== 'object' || args === null || Array.isArray(args))) return '"arguments" must be an object';
  return undefined;
}

/** A name for the audit log, whatever the agent sent. */
function describe(value: unknown): string {
  return typeof value === 'string' ? value : String(JSON.stringify(value) ?? typeof value).slice(0, 200);
}

const templates = new Map<string, UriTemplate | null>();
function matchesTemplate(template: string, uri: string): boolean {
  let compiled = templates.get(template);
  if (compiled === undefined) {
    try {
      compiled = new UriTemplate(template);
    } catch {
      compiled = null;
    }
    templates.set(template, compiled);
  }
  return compiled?.match(uri) != null;
}
