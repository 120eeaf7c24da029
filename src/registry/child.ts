/**
 * One child MCP server (design §8): spawned with only its own environment, connected with the SDK
 * `Client`, its catalog fetched in full, restarted with backoff when it exits, marked failed after
 * too many restarts, and stopped with its whole process group.
 */
import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import {
  CLIENT_CAPABILITIES_META_KEY,
  Client,
  LOG_LEVEL_META_KEY,
  ProtocolError,
  SdkError,
  SdkErrorCode,
  type ClientCapabilities,
  type McpSubscription,
  type Notification,
  type PriorDiscovery,
  type ServerCapabilities,
} from '@modelcontextprotocol/client';
import { ResultSchema } from '@modelcontextprotocol/core';
import { createHash } from 'node:crypto';
import type { ServerConfig } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Redactor } from '../secrets/redactor.js';
import { RestartTracker } from './backoff.js';
import { ChildProcessTransport, type ExitInfo } from './child-transport.js';
import type { GroupWatcher } from './reaper.js';
import type { CatalogCache } from '../store/catalog.js';
import { childEnvironment } from './env.js';
import { normalizeResourceUri } from '../policy/uri.js';
import { knownSandboxSupport, sandboxSupport, type Isolation } from './sandbox.js';
import { StderrTail } from './stderr-tail.js';

export type ChildState = 'idle' | 'starting' | 'ready' | 'restarting' | 'failed' | 'stopped';

/** Raw list entries as the child sent them: unknown fields are kept. */
export type RawEntry = Record<string, unknown> & { readonly name: string };
export type RawResource = Record<string, unknown> & { readonly uri: string };
export type RawTemplate = Record<string, unknown> & { readonly uriTemplate: string };

export interface Catalog {
  readonly tools: readonly RawEntry[];
  readonly prompts: readonly RawEntry[];
  readonly resources: readonly RawResource[];
  readonly resourceTemplates: readonly RawTemplate[];
  /** Tools left out of the lists, with the reason (shown by server_status). */
  readonly excludedTools: readonly { readonly name: string; readonly reason: string }[];
  /** Listed name → entry. Names are listed redacted: a name may hold a secret as well as a description can. */
  readonly toolsByName: ReadonlyMap<string, RawEntry>;
  readonly promptsByName: ReadonlyMap<string, RawEntry>;
  /**
   * Listed resources by their normalised URI (policy/uri.ts), the form requests are routed and
   * decided on; a listed URI that cannot be normalised is not readable through the gateway.
   */
  readonly resourcesByUri: ReadonlyMap<string, RawResource>;
  /** The server's own name or URI for each listed one that redaction changed (see `upstream`). */
  readonly upstreamNames: ReadonlyMap<string, string>;
  /** Why part of the catalog was left out (over limits.maxCatalogEntries or maxCatalogBytes), or null. */
  readonly limited: string | null;
}

export const EMPTY_CATALOG: Catalog = Object.freeze({
  tools: [],
  prompts: [],
  resources: [],
  resourceTemplates: [],
  excludedTools: [],
  toolsByName: new Map(),
  promptsByName: new Map(),
  resourcesByUri: new Map(),
  upstreamNames: new Map(),
  limited: null,
});

/**
 * The capabilities a child is told the agent has: exactly those the agent declared that the
 * gateway relays (sampling, elicitation, roots), so a child asks only for what the agent can give.
 */
export function relayedCapabilities(agent: Readonly<Record<string, unknown>> | undefined): ClientCapabilities {
  const caps: Record<string, unknown> = {};
  for (const key of ['sampling', 'elicitation', 'roots'] as const) if (agent?.[key]) caps[key] = agent[key];
  return caps as ClientCapabilities;
}

/**
 * The name or URI a server knows for one of its listed tools, prompts, resources (by normalised
 * URI) or templates; a name it did not list (a URI a template matched) is its own.
 */
export function upstream(catalog: Catalog, kind: 'tool' | 'prompt' | 'resource' | 'template', listed: string): string {
  return catalog.upstreamNames.get(`${kind}:${listed}`) ?? listed;
}

/** Limits on what one server's catalog may hold (limits.maxCatalogEntries, maxCatalogBytes). */
export interface CatalogLimits {
  readonly maxCatalogEntries: number;
  readonly maxCatalogBytes: number;
}

/** What a child may ask of the agent, relayed by the front (sampling, elicitation, roots). */
export type ChildRequestRelay = (
  server: ChildServer,
  request: { method: string; params?: Record<string, unknown> },
  signal: AbortSignal,
) => Promise<Record<string, unknown>>;

export interface ChildHooks {
  /** The catalog (tools, prompts, resources) changed, or the server became (un)available. */
  onCatalogChanged(server: ChildServer): void;
  /** A notification the front relays to the agent (log message, resource updated). */
  onNotification(server: ChildServer, notification: Notification): void;
  /** A request from the child to relay to the agent. */
  relayRequest: ChildRequestRelay;
}

export interface RequestOptions {
  readonly signal: AbortSignal;
  /**
   * The calling agent's capabilities and log level: a 2026-07-28 child gets them with the request
   * (in its `_meta` envelope), as if the agent had called it directly.
   */
  readonly caller?: { readonly capabilities: ClientCapabilities; readonly logLevel: string | undefined } | undefined;
  /** Called with each progress notification the child sends for this request. */
  readonly onprogress?: ((progress: Record<string, unknown>) => void) | undefined;
}

/**
 * The core's loose result schema: results are forwarded as the child sent them, unknown fields
 * (top-level and nested) included, never re-parsed with the spec's strict schemas.
 */
const RAW = ResultSchema;

/** The child's requests the gateway relays to the agent, each needing the agent's capability. */
export const INPUT_CAPABILITY: Readonly<Record<string, 'sampling' | 'elicitation' | 'roots'>> = {
  'sampling/createMessage': 'sampling',
  'elicitation/create': 'elicitation',
  'roots/list': 'roots',
};

/** The requests whose 2026-07-28 answer may be input-required (multi-round-trip requests). */
export const INPUT_REQUIRED_METHODS: ReadonlySet<string> = new Set(['tools/call', 'prompts/get', 'resources/read']);

/** How many pages a list may have before the child is considered broken. */
const MAX_PAGES = 1_000;

interface Connection {
  readonly transport: ChildProcessTransport;
  readonly client: Client;
  closed: boolean;
  /** The connection's protocol era (known once connected). */
  era: 'legacy' | 'modern';
  /** A 2026-07-28 child's change notifications come on a listen stream the gateway opens. */
  listen: McpSubscription | null;
}

export class ChildServer {
  readonly id: string;
  /** The consumer this process serves alone (servers[].isolation: consumer); undefined: every caller. */
  readonly consumer: string | undefined;
  /** Requests of the gateway in progress at this server. */
  private inProgress = 0;
  /** Whether a request is in progress here (a consumer's idle process is not ended then). */
  get busy(): boolean {
    return this.inProgress > 0;
  }
  private stateValue: ChildState;
  private conn: Connection | null = null;
  private catalogValue: Catalog = EMPTY_CATALOG;
  private starting: Promise<void> | null = null;
  private restartTimer: NodeJS.Timeout | null = null;
  private nextStartAt: number | null = null;
  private readonly restarts: RestartTracker;
  private totalRestarts = 0;
  private everReady = false;
  private lastExit: (ExitInfo & { at: string }) | null = null;
  private lastErrorValue: string | null = null;
  private startedAt: string | null = null;
  private readonly stderr: StderrTail;
  private capabilities: ClientCapabilities = {};
  private refreshing: Promise<void> | null = null;
  private refreshAgain = false;
  private readonly log: Logger;
  private readonly fingerprint: string;
  /** A lazy server's catalog from an earlier run, listed until it starts. */
  private remembered: Catalog | null = null;
  /** The resources a 2026-07-28 child is asked to report updates of (its listen stream's filter). */
  private readonly listenUris = new Set<string>();
  /** Notifications for the agent dropped because the agent was not reading them fast enough. */
  private dropped = 0;
  private warnedUnisolated = false;

  constructor(
    readonly config: ServerConfig,
    private readonly hooks: ChildHooks,
    private readonly options: {
      readonly logger: Logger;
      readonly redactor: Redactor;
      readonly maxMessageBytes: number;
      readonly clientInfo: { name: string; version: string };
      readonly parentEnv?: NodeJS.ProcessEnv;
      readonly groups?: GroupWatcher | undefined;
      /** Remembers the catalog between runs, so a lazy server is listed before it starts. */
      readonly catalogCache?: CatalogCache | undefined;
      readonly limits?: CatalogLimits | undefined;
      /** Files a sandboxed child must not see (the database and its side files). */
      readonly hiddenFiles?: readonly string[] | undefined;
      /** The consumer this process serves alone (servers[].isolation: consumer); unset: shared. */
      readonly consumer?: string | undefined;
    },
  ) {
    this.id = config.id;
    this.consumer = options.consumer;
    this.stateValue = 'idle';
    this.restarts = new RestartTracker(config.restart);
    this.log = options.logger.scoped(`server:${config.id}`);
    this.stderr = new StderrTail(50, (line) => this.log.info(`stderr: ${line}`), undefined, undefined, options.redactor);
    this.fingerprint = fingerprintOf(config);
    if (config.start === 'lazy') this.remembered = this.loadRemembered();
  }

  get state(): ChildState {
    return this.stateValue;
  }

  /** True while the first start since the gateway began is under way. */
  get firstStartPending(): boolean {
    return this.stateValue === 'starting' && !this.everReady;
  }

  /** What the server offers: its live catalog, or, for a lazy server not yet started, the remembered one. */
  get catalog(): Catalog {
    return this.stateValue === 'idle' && this.remembered ? this.remembered : this.catalogValue;
  }

  /** A lazy server with no remembered catalog: a list must start it to know what it offers. */
  get unknownUntilStarted(): boolean {
    return this.stateValue === 'idle' && this.remembered === null;
  }

  /** The child's declared capabilities (after it is ready). */
  get serverCapabilities(): ServerCapabilities | undefined {
    return this.conn?.client.getServerCapabilities();
  }

  /** The protocol era of the current connection ('legacy' before the first one). */
  get era(): 'legacy' | 'modern' {
    return this.conn?.era ?? 'legacy';
  }

  /** The isolation this server's process has, or, before it starts, would get. */
  get isolation(): Isolation {
    if (this.config.sandbox === 'none') return { mode: 'none', reason: 'sandbox: none in the config' };
    return knownSandboxSupport()?.isolation ?? { mode: 'none', reason: 'not known until the server first starts' };
  }

  /** Counts a notification of this server that the front dropped (the agent was not keeping up). */
  noteDropped(): void {
    this.dropped++;
  }

  /**
   * Stops reading what the server writes until `resumeOutput` (or a restart): a server that
   * sends faster than the agent reads is slowed down by its own pipe, not buffered for.
   */
  pauseOutput(): void {
    this.conn?.transport.pauseOutput();
  }

  resumeOutput(): void {
    this.conn?.transport.resumeOutput();
  }

  /**
   * Sets the capabilities the child-facing client declares: those the agent declared, and `roots`
   * when the config gives this server its roots (the gateway answers roots/list itself then).
   */
  setClientCapabilities(capabilities: ClientCapabilities): void {
    this.capabilities = this.config.roots === undefined ? capabilities : { ...capabilities, roots: {} };
  }

  /** The roots the config gives this server (servers[].roots), answered without asking the agent. */
  get configuredRoots(): readonly { readonly uri: string; readonly name?: string | undefined }[] | undefined {
    return this.config.roots;
  }

  /** Starts the child if it is idle; resolves when it is ready, rejects if this start fails. */
  start(): Promise<void> {
    if (this.stateValue === 'ready') return Promise.resolve();
    if (this.starting) return this.starting;
    if (this.stateValue === 'failed' || this.stateValue === 'stopped') {
      return Promise.reject(this.unavailable());
    }
    if (this.restartTimer) {
      clearTimeout(this.restartTimer);
      this.restartTimer = null;
    }
    this.starting = this.connect().finally(() => {
      this.starting = null;
    });
    return this.starting;
  }

  /**
   * Resolves when the child can take a request. A first start (lazy, or eager still starting) is
   * waited for; a child between restarts or failed is refused at once with SERVER_UNAVAILABLE.
   */
  async ready(): Promise<void> {
    if (this.stateValue === 'ready') return;
    if (this.stateValue === 'idle' || (this.stateValue === 'starting' && !this.everReady)) {
      try {
        await this.start();
      } catch {
        throw this.unavailable();
      }
      return;
    }
    throw this.unavailable();
  }

  /**
   * Sends a request to the child and returns its result object untouched. Errors are
   * GatewayErrors: SERVER_UNAVAILABLE (not running, exited meanwhile), TIMEOUT, CANCELLED,
   * UPSTREAM_ERROR (the child answered with an error).
   */
  async request(method: string, params: Record<string, unknown>, options: RequestOptions): Promise<Record<string, unknown>> {
    const conn = this.conn;
    if (!conn || conn.closed || this.stateValue !== 'ready') throw this.unavailable();
    if (conn.era === 'modern') {
      // 2026-07-28 has no resources/subscribe: the child reports updates on the listen stream.
      if (method === 'resources/subscribe' || method === 'resources/unsubscribe') {
        const uri = String(params['uri']);
        if (method === 'resources/subscribe') this.listenUris.add(uri);
        else this.listenUris.delete(uri);
        await this.relisten(conn);
        return {};
      }
      if (options.caller) params = withCaller(params, options.caller, this.config.roots !== undefined);
    }
    this.inProgress++;
    try {
      return await conn.client.request({ method, params }, RAW, {
        // A 2026-07-28 child's input-required result comes back as it is: the gateway brings its
        // requests to the agent whose call it is (registry/input.ts).
        allowInputRequired: conn.era === 'modern' && INPUT_REQUIRED_METHODS.has(method),
        signal: options.signal,
        timeout: this.config.timeoutMs,
        resetTimeoutOnProgress: options.onprogress !== undefined,
        onprogress: options.onprogress as ((p: unknown) => void) | undefined,
      });
    } catch (err) {
      throw this.classify(err, conn, options.signal);
    } finally {
      this.inProgress--;
    }
  }

  /** Sends a notification to the child if it is connected (cancellation, roots changed). */
  async notify(notification: Notification): Promise<void> {
    const conn = this.conn;
    if (!conn || conn.closed) return;
    await conn.client.notification(notification).catch(() => {});
  }

  /** A snapshot for `server_status` (redacted). */
  status(): ChildStatus {
    const r = this.options.redactor;
    return {
      id: this.id,
      name: this.config.name ?? this.id,
      prefix: this.config.prefix ?? this.id,
      state: this.stateValue,
      start: this.config.start,
      pid: this.conn && !this.conn.closed ? (this.conn.transport.pid ?? null) : null,
      startedAt: this.startedAt,
      restartsInWindow: this.restarts.recent(Date.now()),
      totalRestarts: this.totalRestarts,
      nextRestartAt: this.nextStartAt ? new Date(this.nextStartAt).toISOString() : null,
      lastExit: this.lastExit,
      lastError: this.redactedLastError(),
      tools: this.catalogValue.tools.length,
      prompts: this.catalogValue.prompts.length,
      resources: this.catalogValue.resources.length,
      resourceTemplates: this.catalogValue.resourceTemplates.length,
      excludedTools: this.catalogValue.excludedTools,
      catalogLimited: this.catalogValue.limited,
      protocol: { configured: this.config.protocol, era: this.conn && !this.conn.closed ? this.conn.era : null },
      isolation: this.isolation,
      droppedNotifications: this.dropped,
      stderrFirstError: this.stderr.firstError(),
      stderrTail: this.stderr.snapshot().map((l) => r.text(l)),
    };
  }

  /** Stops the child for good (gateway shutdown): stdin close, then SIGTERM, then SIGKILL. */
  async stop(graceMs = 2_000): Promise<void> {
    this.setState('stopped');
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const conn = this.conn;
    if (conn) await conn.transport.close(graceMs);
  }

  /** SIGKILL to the child's process group, synchronously (last resort at process exit). */
  killNow(): void {
    this.conn?.transport.signalGroup('SIGKILL');
  }

  private async connect(): Promise<void> {
    this.setState('starting');
    this.stderr.markStart();
    const env = childEnvironment(this.config, this.options.parentEnv);
    let isolate: ConstructorParameters<typeof ChildProcessTransport>[0]['isolate'];
    if (this.config.sandbox !== 'none') {
      const support = await sandboxSupport();
      const wrap = support.wrap;
      if (wrap) {
        const options = { hide: this.options.hiddenFiles ?? [], keepPwd: 'PWD' in env };
        isolate = (command, args) => wrap(command, args, options);
      } else if (this.config.sandbox === 'required') {
        this.lastErrorValue = `sandbox: required, but ${support.isolation.reason}`;
        this.log.error(`not started: ${this.lastErrorValue}`);
        this.setState('failed');
        throw new Error(this.lastErrorValue);
      } else if (!this.warnedUnisolated) {
        this.warnedUnisolated = true;
        this.log.warn(`runs without isolation (sandbox: auto): ${support.isolation.reason}`);
      }
    }
    const transport = new ChildProcessTransport({
      isolate,
      command: this.config.command,
      args: this.config.args,
      cwd: this.config.cwd ?? process.cwd(),
      env,
      maxMessageBytes: this.options.maxMessageBytes,
      onStderr: (chunk) => this.stderr.push(chunk),
      groups: this.options.groups,
      onInvalidLine: (invalid) =>
        this.log.warn(
          invalid.kind === 'oversize'
            ? `skipped a ${invalid.bytes}-byte message over the limit of ${this.options.maxMessageBytes} bytes`
            : invalid.kind === 'depth'
              ? 'skipped a message nested too deeply to relay'
              : `skipped a stdout line that is not JSON: ${JSON.stringify(invalid.prefix.slice(0, 120))}`,
        ),
    });
    const protocol = this.config.protocol;
    const prior = protocol === 'auto' ? this.loadVerdict() : undefined;
    const client = new Client(this.options.clientInfo, {
      capabilities: this.capabilities,
      // legacy: the 2025 handshake, no probe; modern: 2026-07-28 or nothing; auto: probe on this
      // very connection (our transport is not the SDK's, so no second process), unless remembered.
      ...(protocol === 'legacy' ? {} : { versionNegotiation: { mode: protocol === 'modern' ? { pin: '2026-07-28' } : 'auto' } }),
      // An input-required result of a 2026-07-28 child comes back to the gateway, which brings it
      // to the agent that made the call.
      inputRequired: { autoFulfill: false },
    });
    const conn: Connection = { transport, client, closed: false, era: 'legacy', listen: null };
    this.conn = conn;
    client.onerror = (err) => this.log.debug(`protocol: ${err.message}`);
    client.onclose = () => this.onConnectionClosed(conn);
    this.installHandlers(client);

    const deadline = this.config.startTimeoutMs;
    try {
      try {
        await client.connect(transport, { timeout: deadline, ...(prior ? { prior } : {}) });
      } catch (err) {
        // A child that falls over when probed (some exit on any request before `initialize`) is a
        // 2025 server: remembered as such, so the next start does not probe.
        if (protocol === 'auto' && !prior) this.saveVerdict({ kind: 'legacy' });
        throw err;
      }
      conn.era = client.getProtocolEra() === 'modern' ? 'modern' : 'legacy';
      if (protocol === 'auto' && !prior) {
        const discover = client.getDiscoverResult();
        this.saveVerdict(conn.era === 'modern' && discover ? { kind: 'modern', discover } : { kind: 'legacy' });
      }
      if (conn.era === 'modern') await this.relisten(conn);
      this.startedAt = new Date().toISOString();
      const catalog = await this.fetchCatalog(conn, deadline);
      if (conn.closed) throw new Error('exited during startup');
      this.catalogValue = catalog;
      this.remember(catalog);
      this.everReady = true;
      this.lastErrorValue = null;
      this.setState('ready');
      this.log.info(
        `ready (pid ${transport.pid}, ${catalog.tools.length} tools, ${catalog.prompts.length} prompts, ${catalog.resources.length} resources)`,
      );
      this.hooks.onCatalogChanged(this);
    } catch (err) {
      this.lastErrorValue = describeStartError(err, transport, deadline, this.config.cwd, this.stderr.firstError());
      this.log.warn(`could not start: ${this.lastErrorValue}`);
      if (!conn.closed) {
        conn.closed = true;
        void transport.close(500);
        this.afterExit();
      }
      // A command that does not exist, cannot be run, or a folder that is missing will not fix
      // itself: failed now, not restarted again and again.
      if (isPermanentStartError(err) && this.stateValue !== 'stopped') {
        if (this.restartTimer) clearTimeout(this.restartTimer);
        this.restartTimer = null;
        this.nextStartAt = null;
        this.setState('failed');
        this.log.error(`marked failed: ${this.lastErrorValue}; it stays down until the gateway restarts`);
      }
      throw err;
    }
  }

  /**
   * (Re)opens the listen stream of a 2026-07-28 child: the list changes it can announce, and the
   * resources the agent subscribed to.
   */
  private async relisten(conn: Connection): Promise<void> {
    const caps = conn.client.getServerCapabilities() ?? {};
    const previous = conn.listen;
    conn.listen = null;
    await previous?.close().catch(() => {});
    if (conn.closed) return;
    const filter = {
      ...(caps.tools?.listChanged ? { toolsListChanged: true } : {}),
      ...(caps.prompts?.listChanged ? { promptsListChanged: true } : {}),
      ...(caps.resources?.listChanged ? { resourcesListChanged: true } : {}),
      ...(caps.resources?.subscribe && this.listenUris.size > 0 ? { resourceSubscriptions: [...this.listenUris] } : {}),
    };
    if (Object.keys(filter).length === 0) return;
    try {
      conn.listen = await conn.client.listen(filter);
    } catch (err) {
      this.log.warn(`could not listen for changes: ${(err as Error).message}`);
    }
  }

  /** The remembered era of a `protocol: auto` server started this way, or undefined (then it is probed). */
  private loadVerdict(): PriorDiscovery | undefined {
    try {
      const verdict = this.options.catalogCache?.loadVerdict(this.id, this.fingerprint) as PriorDiscovery | undefined;
      return verdict?.kind === 'legacy' || (verdict?.kind === 'modern' && typeof verdict.discover === 'object') ? verdict : undefined;
    } catch {
      return undefined;
    }
  }

  private saveVerdict(verdict: PriorDiscovery): void {
    try {
      this.options.catalogCache?.saveVerdict(this.id, this.fingerprint, verdict);
      this.log.info(`protocol: ${verdict.kind === 'modern' ? '2026-07-28' : '2025 (legacy)'}, remembered for the next starts`);
    } catch (err) {
      this.log.warn(`could not remember the protocol: ${(err as Error).message}`);
    }
  }

  private installHandlers(client: Client): void {
    // Through the fallback, not typed handlers: the Client's own would re-parse the agent's answer
    // with strict schemas that drop unknown fields; the agent's answer goes back as is. A request
    // whose capability the agent did not declare was not offered, and is refused.
    client.fallbackRequestHandler = async (request, ctx) => {
      const capability = INPUT_CAPABILITY[request.method];
      if (capability === undefined || !this.capabilities[capability]) {
        throw new ProtocolError(-32601, `Method not found: ${request.method}`);
      }
      // Roots the config gives this server are its roots, whoever calls it.
      if (request.method === 'roots/list' && this.config.roots !== undefined) return { roots: this.config.roots.map((r) => ({ ...r })) };
      return this.hooks.relayRequest(this, { method: request.method, params: request.params }, ctx.mcpReq.signal);
    };

    client.fallbackNotificationHandler = async (notification) => {
      switch (notification.method) {
        case 'notifications/tools/list_changed':
        case 'notifications/prompts/list_changed':
        case 'notifications/resources/list_changed':
          this.refreshCatalog();
          break;
        default:
          this.hooks.onNotification(this, notification);
      }
    };
  }

  /** Re-reads the catalog after a list_changed; bursts coalesce into one refresh at a time. */
  private refreshCatalog(): void {
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    const conn = this.conn;
    if (!conn || conn.closed || this.stateValue !== 'ready') return;
    this.refreshing = this.fetchCatalog(conn, this.config.timeoutMs)
      .then((catalog) => {
        if (conn !== this.conn || conn.closed) return;
        this.catalogValue = catalog;
        this.remember(catalog);
        this.hooks.onCatalogChanged(this);
      })
      .catch((err) => this.log.warn(`could not refresh the catalog: ${(err as Error).message}`))
      .finally(() => {
        this.refreshing = null;
        if (this.refreshAgain) {
          this.refreshAgain = false;
          this.refreshCatalog();
        }
      });
  }

  private async fetchCatalog(conn: Connection, timeout: number): Promise<Catalog> {
    const caps = conn.client.getServerCapabilities() ?? {};
    const limits = this.options.limits ?? { maxCatalogEntries: Number.POSITIVE_INFINITY, maxCatalogBytes: Number.POSITIVE_INFINITY };
    // One byte budget for the whole catalog: a server cannot make the gateway hold more than
    // limits.maxCatalogBytes of it, however many pages it sends.
    let bytes = 0;
    const cut: string[] = [];
    const list = async <T>(method: string, key: string): Promise<T[]> => {
      const items: T[] = [];
      let cursor: string | undefined;
      for (let page = 0; page < MAX_PAGES; page++) {
        const result = await conn.client.request({ method, params: cursor === undefined ? {} : { cursor } }, RAW, {
          timeout,
        });
        const entries = result[key];
        if (!Array.isArray(entries)) throw new Error(`${method} answered without a "${key}" list`);
        for (const entry of entries as T[]) {
          const size = JSON.stringify(entry)?.length ?? 0;
          if (items.length >= limits.maxCatalogEntries || bytes + size > limits.maxCatalogBytes) {
            cut.push(
              `${method}: kept the first ${items.length} entries; the rest are over ` +
                (items.length >= limits.maxCatalogEntries
                  ? `limits.maxCatalogEntries (${limits.maxCatalogEntries})`
                  : `limits.maxCatalogBytes (${limits.maxCatalogBytes} bytes for the whole catalog)`) +
                ' and are neither listed nor callable',
            );
            return items;
          }
          bytes += size;
          items.push(entry);
        }
        const next = result['nextCursor'];
        if (typeof next !== 'string' || next === '' || next === cursor) return items;
        cursor = next;
      }
      throw new Error(`${method} returned more than ${MAX_PAGES} pages`);
    };
    const [allTools, prompts, resources, resourceTemplates] = await Promise.all([
      caps.tools ? list<RawEntry>('tools/list', 'tools') : [],
      caps.prompts ? list<RawEntry>('prompts/list', 'prompts') : [],
      caps.resources ? list<RawResource>('resources/list', 'resources') : [],
      caps.resources ? list<RawTemplate>('resources/templates/list', 'resourceTemplates').catch(() => []) : [],
    ]);
    const catalog = buildCatalog(
      allTools,
      prompts,
      resources,
      resourceTemplates,
      this.options.redactor,
      cut.length > 0 ? cut.join('; ') : null,
    );
    if (catalog.limited) this.log.warn(`catalog cut: ${catalog.limited}`);
    return catalog;
  }

  /** Saves the catalog for the next run (lazy servers are listed from it before they start). */
  private remember(catalog: Catalog): void {
    this.remembered = null;
    if (this.config.start !== 'lazy' || !this.options.catalogCache) return;
    try {
      const { tools, prompts, resources, resourceTemplates, excludedTools } = catalog;
      this.options.catalogCache.save(this.id, this.fingerprint, { tools, prompts, resources, resourceTemplates, excludedTools });
    } catch (err) {
      this.log.warn(`could not remember the catalog: ${(err as Error).message}`);
    }
  }

  private loadRemembered(): Catalog | null {
    try {
      const saved = this.options.catalogCache?.load(this.id, this.fingerprint) as
        { tools?: RawEntry[]; prompts?: RawEntry[]; resources?: RawResource[]; resourceTemplates?: RawTemplate[] } | undefined;
      if (!saved || !Array.isArray(saved.tools)) return null;
      // Saved as listed (redacted); redacted again in case a secret changed since.
      return buildCatalog(
        saved.tools,
        saved.prompts ?? [],
        saved.resources ?? [],
        saved.resourceTemplates ?? [],
        this.options.redactor,
        null,
      );
    } catch {
      return null;
    }
  }

  private onConnectionClosed(conn: Connection): void {
    if (conn.closed) return;
    conn.closed = true;
    if (conn !== this.conn) return;
    this.afterExit();
  }

  /** The current connection ended: record why, drop the catalog, and restart or give up. */
  private afterExit(): void {
    // Its last stderr lines are logged now, not when the tail's hold runs out.
    this.stderr.flush();
    const exit = this.conn?.transport.exit;
    if (exit) {
      this.lastExit = { ...exit, at: new Date().toISOString() };
    }
    if (this.stateValue === 'stopped') return;
    const wasReady = this.stateValue === 'ready';
    if (wasReady) {
      const firstError = this.stderr.firstError();
      this.lastErrorValue = `exited (${describeExit(exit ?? null)})${firstError ? `: ${firstError}` : ''}`;
      this.log.warn(this.lastErrorValue);
    }
    this.catalogValue = EMPTY_CATALOG;
    const decision = this.restarts.onExit(Date.now());
    if (!decision.restart) {
      this.nextStartAt = null;
      this.setState('failed');
      this.log.error(
        `marked failed after ${this.config.restart.maxRestarts} restarts within ${this.config.restart.windowMs} ms (last: ${this.lastErrorValue ?? describeExit(exit ?? null)}); it stays down until the gateway restarts`,
      );
    } else {
      this.setState('restarting');
      this.nextStartAt = Date.now() + decision.delayMs;
      this.restartTimer = setTimeout(() => {
        this.restartTimer = null;
        this.nextStartAt = null;
        this.totalRestarts++;
        this.start().catch(() => {});
      }, decision.delayMs);
      this.restartTimer.unref();
    }
    if (wasReady) this.hooks.onCatalogChanged(this);
  }

  private setState(state: ChildState): void {
    this.stateValue = state;
  }

  private unavailable(): GatewayError {
    const base = `server "${this.id}" is ${this.stateValue}`;
    switch (this.stateValue) {
      case 'failed':
        return new GatewayError(
          'SERVER_UNAVAILABLE',
          `server "${this.id}" has failed (${this.redactedLastError() ?? 'it exited too often'}) and stays down until the gateway restarts; server_status shows its last error and stderr`,
          { server: this.id, failed: true },
        );
      case 'restarting':
      case 'starting': {
        const retryAfterMs = Math.max(0, (this.nextStartAt ?? Date.now()) - Date.now()) + 1_000;
        return new GatewayError('SERVER_UNAVAILABLE', `${base}; retry in a few seconds`, { server: this.id, retryAfterMs });
      }
      default:
        return new GatewayError('SERVER_UNAVAILABLE', `${base}`, { server: this.id });
    }
  }

  private redactedLastError(): string | null {
    return this.lastErrorValue === null ? null : this.options.redactor.text(this.lastErrorValue);
  }

  private classify(err: unknown, conn: Connection, signal: AbortSignal): GatewayError {
    if (signal.aborted) return new GatewayError('CANCELLED', 'the request was cancelled by the agent', { server: this.id });
    if (conn.closed) {
      const exit = conn.transport.exit;
      return new GatewayError(
        'SERVER_UNAVAILABLE',
        `server "${this.id}" exited during the request (${describeExit(exit)}); it is being restarted, retry shortly`,
        { server: this.id },
      );
    }
    if (err instanceof SdkError && err.code === SdkErrorCode.RequestTimeout) {
      return new GatewayError('TIMEOUT', `server "${this.id}" did not answer within ${this.config.timeoutMs} ms`, {
        server: this.id,
        timeoutMs: this.config.timeoutMs,
      });
    }
    if (err instanceof SdkError && err.code === SdkErrorCode.ConnectionClosed) {
      return new GatewayError('SERVER_UNAVAILABLE', `server "${this.id}" closed the connection during the request`, { server: this.id });
    }
    if (err instanceof ProtocolError) {
      // The child's own error: its code, message and data, redacted.
      return new GatewayError('UPSTREAM_ERROR', this.options.redactor.text(err.message), {
        server: this.id,
        upstreamCode: err.code,
        ...(err.data !== undefined ? { upstreamData: this.options.redactor.value(err.data) } : {}),
      });
    }
    if (err instanceof Error && err.message === 'Not connected') {
      return new GatewayError('SERVER_UNAVAILABLE', `server "${this.id}" is not connected`, { server: this.id });
    }
    this.log.warn(`unexpected error from the client: ${(err as Error)?.message ?? String(err)}`);
    return new GatewayError('UPSTREAM_ERROR', `server "${this.id}" sent an answer the gateway could not read`, { server: this.id });
  }
}

export interface ChildStatus {
  readonly id: string;
  readonly name: string;
  /** What its tool and prompt names are shown after ("" for its own names). */
  readonly prefix: string;
  readonly state: ChildState;
  readonly start: 'eager' | 'lazy';
  readonly pid: number | null;
  readonly startedAt: string | null;
  readonly restartsInWindow: number;
  readonly totalRestarts: number;
  readonly nextRestartAt: string | null;
  readonly lastExit: (ExitInfo & { at: string }) | null;
  readonly lastError: string | null;
  readonly tools: number;
  readonly prompts: number;
  readonly resources: number;
  readonly resourceTemplates: number;
  readonly excludedTools: readonly { readonly name: string; readonly reason: string }[];
  readonly catalogLimited: string | null;
  /** The `protocol` setting, and the era the current connection speaks (null when not connected). */
  readonly protocol: { readonly configured: 'legacy' | 'modern' | 'auto'; readonly era: 'legacy' | 'modern' | null };
  readonly isolation: Isolation;
  /** Notifications for the agent dropped while it was not reading (the server is then paused until it does). */
  readonly droppedNotifications: number;
  /** The first line of its stderr since it last started that reads as an error (redacted). */
  readonly stderrFirstError: string | null;
  readonly stderrTail: readonly string[];
}

export function describeExit(exit: ExitInfo | null): string {
  if (!exit) return 'connection closed';
  if (exit.signal) return `killed by ${exit.signal}`;
  // A sandboxed server killed by a signal is reported by its init as 128 + the signal number.
  const signal = exit.code !== null && exit.code > 128 ? signalName(exit.code - 128) : undefined;
  return signal ? `exit code ${exit.code} (128 + ${signal})` : `exit code ${exit.code}`;
}

function signalName(n: number): string | undefined {
  return Object.entries(osConstants.signals).find(([, v]) => v === n)?.[0];
}

/** Errors of spawning that a restart cannot fix (the command, its permissions, the folder). */
function isPermanentStartError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'EACCES' || code === 'ENOTDIR';
}

function describeStartError(
  err: unknown,
  transport: ChildProcessTransport,
  timeoutMs: number,
  cwd: string | undefined,
  firstError: string | null,
): string {
  const e = err as NodeJS.ErrnoException & { code?: unknown };
  // spawn reports a missing working folder as ENOENT of the command: tell the two apart.
  if (e?.code === 'ENOENT' && cwd !== undefined && !existsSync(cwd)) return `working folder not found: ${cwd} (check "cwd")`;
  if (e?.code === 'ENOENT') return `command not found (ENOENT): check "command" and PATH`;
  if (e?.code === 'EACCES') return `command not executable (EACCES): check "command" and its permissions`;
  // The first error line it wrote says why (`Error: Cannot find module …`), where the last lines of
  // a stack trace do not.
  if (transport.exit) return `exited during startup (${describeExit(transport.exit)})${firstError ? `: ${firstError}` : ''}`;
  if (err instanceof SdkError && err.code === SdkErrorCode.RequestTimeout) {
    return `did not answer initialize within ${timeoutMs} ms (startTimeoutMs)`;
  }
  if (err instanceof SdkError && err.code === SdkErrorCode.ConnectionClosed) return 'closed the connection during startup';
  return (err as Error)?.message ?? String(err);
}

/**
 * The catalog of the lists a server answered, as the agent will see it: every entry redacted,
 * names and URIs included (the server's own name is kept in `upstreamNames` to forward calls);
 * unusable and task-only tools set aside, with the reason.
 */
function buildCatalog(
  allTools: readonly RawEntry[],
  prompts: readonly RawEntry[],
  resources: readonly RawResource[],
  resourceTemplates: readonly RawTemplate[],
  redactor: Redactor,
  limited: string | null,
): Catalog {
  const upstreamNames = new Map<string, string>();
  /** The entry as listed, or null when its name (or URI) is not a string. */
  const listed = <T extends Record<string, unknown>>(kind: string, field: string, entry: T): T | null => {
    const own = entry?.[field];
    if (typeof own !== 'string') return null;
    const shown = redactor.value(entry);
    if (shown[field] !== own) upstreamNames.set(`${kind}:${shown[field] as string}`, own);
    return shown;
  };
  const tools: RawEntry[] = [];
  const excludedTools: { name: string; reason: string }[] = [];
  const seen = new Set<string>();
  for (const raw of allTools) {
    const tool = listed('tool', 'name', raw);
    if (tool === null || tool.name === '') {
      excludedTools.push({ name: redactor.text(String(raw?.name ?? '(no name)')), reason: 'the entry has no name' });
    } else if (seen.has(tool.name)) {
      excludedTools.push({ name: tool.name, reason: 'listed twice by the server; the first entry is used' });
    } else if ((tool['execution'] as { taskSupport?: unknown } | undefined)?.taskSupport === 'required') {
      excludedTools.push({
        name: tool.name,
        reason: 'requires task-augmented calls (execution.taskSupport "required"), which the gateway does not relay',
      });
    } else {
      seen.add(tool.name);
      tools.push(tool);
    }
  }
  const namedPrompts = prompts.map((p) => listed('prompt', 'name', p)).filter((p) => p !== null);
  const resourcesByUri = new Map<string, RawResource>();
  const listedResources: RawResource[] = [];
  for (const raw of resources) {
    const own = raw?.uri;
    if (typeof own !== 'string') continue;
    const shown = redactor.value(raw);
    const normal = normalizeResourceUri(shown.uri);
    if (!normal.ok || resourcesByUri.has(normal.uri)) continue;
    resourcesByUri.set(normal.uri, shown);
    listedResources.push(shown);
    if (normal.uri !== own) upstreamNames.set(`resource:${normal.uri}`, own);
  }
  return Object.freeze({
    tools,
    prompts: namedPrompts,
    resources: listedResources,
    resourceTemplates: resourceTemplates.map((t) => listed('template', 'uriTemplate', t)).filter((t) => t !== null),
    excludedTools,
    toolsByName: new Map(tools.map((t) => [t.name, t])),
    promptsByName: new Map(namedPrompts.map((p) => [p.name, p])),
    resourcesByUri,
    upstreamNames,
    limited,
  });
}

/** How the server is started: a remembered catalog is used only while this stays the same. */
function fingerprintOf(config: ServerConfig): string {
  const shape = {
    command: config.command,
    args: config.args,
    cwd: config.cwd,
    env: Object.keys(config.env).sort(),
    inheritEnv: [...config.inheritEnv].sort(),
  };
  return createHash('sha256').update(JSON.stringify(shape)).digest('hex');
}

/**
 * A 2026-07-28 request carries the calling agent's capabilities (the ones the gateway relays) and
 * log level in its `_meta` envelope: keys given there win over the child client's own.
 */
function withCaller(
  params: Record<string, unknown>,
  caller: { readonly capabilities: ClientCapabilities; readonly logLevel: string | undefined },
  ownRoots: boolean,
): Record<string, unknown> {
  const meta: Record<string, unknown> = { ...((params['_meta'] as Record<string, unknown> | undefined) ?? {}) };
  meta[CLIENT_CAPABILITIES_META_KEY] = ownRoots ? { ...caller.capabilities, roots: {} } : caller.capabilities;
  if (caller.logLevel !== undefined) meta[LOG_LEVEL_META_KEY] = caller.logLevel;
  return { ...params, _meta: meta };
}
