/**
 * What every front shares about the children (design §9, §12): which agent's requests are at which
 * child now, so that a child's push (sampling, elicitation, roots) or log message reaches only the
 * agent whose call the child is serving; and the fronts that outlive a request (the stdio agent,
 * a legacy HTTP session), which hear of catalog changes. One hub per gateway process.
 */
import type { LoggingLevel, Notification } from '@modelcontextprotocol/server';
import type { Logger } from '../log.js';
import type { CallContext } from '../pipeline/context.js';
import type { InputFlows } from '../pipeline/flows.js';
import type { ChildServer } from '../registry/child.js';
import { INPUT_CAPABILITY, INPUT_REQUIRED_METHODS } from '../registry/child.js';
import { takesInput } from '../registry/input.js';
import type { Redactor } from '../secrets/redactor.js';
import { RpcError } from './replies.js';

/** What the hub needs of a front (front/server.ts). */
export interface HubFront {
  readonly era: 'legacy' | 'modern' | undefined;
  /** The level of log messages this agent asked for (logging/setLevel), if any. */
  readonly logLevel: LoggingLevel | undefined;
  onCatalogChanged(child: ChildServer): void;
  /** Whether this agent is subscribed to the resource `uri`. */
  hasSubscription(uri: string): boolean;
  onChildNotification(child: ChildServer, notification: Notification): void;
  relayToAgent(
    child: ChildServer,
    request: { method: string; params?: Record<string, unknown> },
    signal: AbortSignal,
  ): Promise<Record<string, unknown>>;
}

/** Told of catalog changes for agents without a long-lived front (2026-07-28 listen streams over HTTP). */
export interface CatalogListener {
  catalogChanged(child: ChildServer): void;
}

export class FrontHub {
  /** Fronts that outlive a request: the stdio agent, each legacy HTTP session. */
  private readonly fronts = new Set<HubFront>();
  /** The requests at each server now (by id), with the front each came from. */
  private readonly calls = new Map<string, Map<CallContext, HubFront>>();
  private readonly listeners = new Set<CatalogListener>();
  /** The level each child connection was last sent (keyed by its capabilities object: a restart is a new one). */
  private readonly levelSent = new WeakMap<object, LoggingLevel>();

  constructor(
    private readonly flows: InputFlows,
    private readonly log: Logger,
    private readonly redactor: Redactor,
    /**
     * stdio: one agent, and a child's push or log message outside any call is its too. Over
     * HTTP such a message has no owner and is refused (pushes) or dropped (log messages).
     */
    private readonly singleAgent: boolean,
  ) {}

  /** How many long-lived fronts (agents connected over stdio, legacy HTTP sessions) there are. */
  get size(): number {
    return this.fronts.size;
  }

  add(front: HubFront): void {
    this.fronts.add(front);
  }

  delete(front: HubFront): void {
    this.fronts.delete(front);
  }

  listen(listener: CatalogListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Whether an agent other than `front`'s is subscribed to `uri` (a shared server keeps it subscribed then). */
  subscribedElsewhere(uri: string, front: HubFront): boolean {
    for (const other of this.fronts) if (other !== front && other.hasSubscription(uri)) return true;
    return false;
  }

  /** A request of `front` is at `child` until `leave`. */
  enter(child: ChildServer, ctx: CallContext, front: HubFront): void {
    let calls = this.calls.get(child.id);
    if (!calls) this.calls.set(child.id, (calls = new Map()));
    calls.set(ctx, front);
  }

  leave(child: ChildServer, ctx: CallContext): void {
    const calls = this.calls.get(child.id);
    if (!calls) return;
    calls.delete(ctx);
    if (calls.size === 0) this.calls.delete(child.id);
  }

  /**
   * The requests at `child` now (of `front` only, when given). A consumer's own process
   * (isolation: consumer) serves only that consumer's requests to its server.
   */
  callsAt(child: ChildServer, front?: HubFront): CallContext[] {
    const out: CallContext[] = [];
    for (const [ctx, owner] of this.calls.get(child.id) ?? [])
      if ((front === undefined || owner === front) && (child.consumer === undefined || ctx.session.identity.consumerId === child.consumer))
        out.push(ctx);
    return out;
  }

  /** The fronts with a request at `child` now. */
  private ownersAt(child: ChildServer): Set<HubFront> {
    if (child.consumer === undefined) return new Set(this.calls.get(child.id)?.values() ?? []);
    const owners = new Set<HubFront>();
    for (const [ctx, owner] of this.calls.get(child.id) ?? []) if (ctx.session.identity.consumerId === child.consumer) owners.add(owner);
    return owners;
  }

  // ------------------------------------------------------------ registry hooks

  onCatalogChanged(child: ChildServer): void {
    for (const front of this.fronts) front.onCatalogChanged(child);
    for (const listener of this.listeners) listener.catalogChanged(child);
    void this.syncLogLevel(child);
  }

  onNotification(child: ChildServer, notification: Notification): void {
    // Each front relays a resource update only for a URI its agent subscribed to and may read.
    if (notification.method === 'notifications/resources/updated') {
      for (const front of this.fronts) front.onChildNotification(child, notification);
      return;
    }
    const owner = this.ownerOf(child);
    if (owner) owner.onChildNotification(child, notification);
    else this.log.debug(`${notification.method} from ${child.id} dropped: no single agent's request is at that server`);
  }

  /**
   * A child's request for an agent goes to the agent whose call the child is serving: a legacy
   * agent's connection, or the one 2026-07-28 call waiting for input there (with its input-required
   * answer). When that cannot be told, it is refused. Redacted like everything a child sends an agent.
   */
  relayRequest(
    child: ChildServer,
    request: { method: string; params?: Record<string, unknown> },
    signal: AbortSignal,
  ): Promise<Record<string, unknown>> {
    const relayed = request.params === undefined ? request : { method: request.method, params: this.redactor.value(request.params) };
    const owners = this.ownersAt(child);
    if (this.singleAgent) {
      const [front] = this.fronts;
      if (front?.era === 'legacy') return front.relayToAgent(child, relayed, signal);
      return this.pushToCall(child, relayed);
    }
    const legacy = [...owners].filter((f) => f.era === 'legacy');
    if (legacy.length === 1 && owners.size === 1 && this.flows.pendingAt(child.id).length === 0)
      return legacy[0]!.relayToAgent(child, relayed, signal);
    if (legacy.length === 0) return this.pushToCall(child, relayed);
    return this.refuse(child, request.method, `${owners.size} agents have requests in progress there`);
  }

  /**
   * A 2025-era child's request to a 2026-07-28 agent: it belongs to the one call in progress at
   * that child, and goes to the agent with that call's input-required answer. With no call in
   * progress, or several (a 2025 child does not say which one a request belongs to), it is refused.
   */
  private pushToCall(child: ChildServer, request: { method: string; params?: Record<string, unknown> }) {
    const flows = this.flows.pendingAt(child.id);
    // Requests without a flow (completion, subscriptions, calls whose agent can take no input) are
    // calls in progress there too.
    let others = 0;
    for (const c of this.callsAt(child)) if (!INPUT_REQUIRED_METHODS.has(c.method) || !takesInput(c.request.agent)) others++;
    if (flows.length === 1 && others === 0) {
      const flow = flows[0]!;
      const capability = INPUT_CAPABILITY[request.method];
      if (capability === undefined || !flow.capabilities?.[capability])
        return Promise.reject(new RpcError(-32601, `the agent does not support ${request.method}`));
      this.log.debug(`${request.method} from ${child.id} goes to the agent with its call's answer`);
      return flow.push(request);
    }
    return this.refuse(
      child,
      request.method,
      flows.length + others === 0
        ? 'no call of the agent is in progress there (a server can be given its roots in the config: servers[].roots)'
        : flows.length === 0
          ? 'no call of the agent in progress there can take it (only a tools/call, prompts/get or resources/read whose request declares sampling, elicitation or roots can)'
          : `${flows.length + others} calls of the agent are in progress there, and the request does not say which one it belongs to`,
    );
  }

  private refuse(child: ChildServer, method: string, why: string): Promise<never> {
    this.log.warn(`refused ${method} from server "${child.id}": ${why}`);
    return Promise.reject(new RpcError(-32603, `the gateway cannot tell which call of the agent this ${method} belongs to; it is refused`));
  }

  /** The one front a child's log message belongs to, or undefined when none or several could claim it. */
  private ownerOf(child: ChildServer): HubFront | undefined {
    if (this.singleAgent) {
      const [only] = this.fronts;
      return only;
    }
    const owners = this.ownersAt(child);
    if (owners.size !== 1) return undefined;
    const [owner] = owners;
    return owner;
  }

  // ------------------------------------------------------------ drain (SIGTERM)

  /** Requests being answered now, and whether new ones are refused (SIGTERM: drain()). */
  private active = 0;
  draining = false;
  private idle: (() => void) | undefined;

  /** A front started answering a request. */
  begin(): void {
    this.active++;
  }

  end(): void {
    if (--this.active === 0) this.idle?.();
  }

  /** Requests being answered now, by every front. */
  get inProgress(): number {
    return this.active;
  }

  /**
   * Stops taking requests (they are answered SERVER_UNAVAILABLE) and waits until those in progress
   * have been answered, or `ms` has passed; resolves with how many were still running then.
   */
  async drain(ms: number): Promise<number> {
    this.draining = true;
    if (this.active === 0) return 0;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => (this.idle = resolve)),
      new Promise((resolve) => (timer = setTimeout(resolve, ms))),
    ]);
    clearTimeout(timer);
    return this.active;
  }

  // ------------------------------------------------------------ log level of shared children

  /**
   * Sends a ready 2025-era child the most verbose level any connected agent asked for (each front
   * filters what it relays by its own agent's level). Keyed by the connection, so a restarted
   * child is sent it again.
   */
  async syncLogLevel(child: ChildServer): Promise<void> {
    let level: LoggingLevel | undefined;
    for (const front of this.fronts) {
      const l = front.logLevel;
      if (l !== undefined && (level === undefined || LOG_LEVELS.indexOf(l) < LOG_LEVELS.indexOf(level))) level = l;
    }
    const caps = child.serverCapabilities;
    // A 2026-07-28 child has no logging/setLevel: the level goes with each request instead.
    if (level === undefined || child.state !== 'ready' || child.era === 'modern' || !caps?.logging || this.levelSent.get(caps) === level)
      return;
    this.levelSent.set(caps, level);
    try {
      await child.request('logging/setLevel', { level }, { signal: AbortSignal.timeout(5_000) });
    } catch (err) {
      if (this.levelSent.get(caps) === level) this.levelSent.delete(caps);
      this.log.debug(`logging/setLevel to ${child.id}: ${(err as Error).message}`);
    }
  }
}

/** MCP log levels, least severe first (also what the front checks logging/setLevel against). */
export const LOG_LEVELS: readonly LoggingLevel[] = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];
