/**
 * All child servers of one gateway: starting them, naming what they offer (`<server><sep><name>`),
 * routing a name back to its server, and stopping them all with their process groups.
 */
import type { ClientCapabilities } from '@modelcontextprotocol/client';
import { GATEWAY_SERVER_ID, type GatewayConfig, type ServerConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { Redactor } from '../secrets/redactor.js';
import {
  ChildServer,
  upstream,
  type Catalog,
  type ChildHooks,
  type ChildStatus,
  type RawEntry,
  type RawResource,
  type RawTemplate,
} from './child.js';
import { sandboxSupport } from './sandbox.js';
import { compileUriTemplate, type UriTemplateMatcher } from './uri-template.js';
import type { GroupWatcher } from './reaper.js';
import type { CatalogCache } from '../store/catalog.js';
import { GatewayError } from '../errors.js';

/** A consumer's own process is not ended to make room for another in its first minute. */
const MIN_INSTANCE_LIFE_MS = 60_000;

export interface RegistryOptions {
  readonly logger: Logger;
  readonly redactor: Redactor;
  readonly clientInfo: { name: string; version: string };
  readonly hooks: ChildHooks;
  readonly parentEnv?: NodeJS.ProcessEnv;
  /** Told about every child process group (the reaper that outlives the gateway). */
  readonly groups?: GroupWatcher | undefined;
  /** Remembers catalogs between runs (lazy servers are listed from it before they start). */
  readonly catalogCache?: CatalogCache | undefined;
}

/** A tool or prompt of a child, with the name the agent sees. */
export interface NamedEntry {
  readonly server: string;
  readonly exposedName: string;
  readonly entry: RawEntry;
}

export class Registry {
  private readonly children = new Map<string, ChildServer>();
  private readonly disabled: ServerConfig[] = [];
  private readonly separator: string;
  /** Prefixed servers by prefix; servers shown under their own names ("" prefix), in config order. */
  private readonly byPrefix = new Map<string, string>();
  private readonly prefixOf = new Map<string, string>();
  private readonly unprefixed: string[] = [];
  private started = false;
  private capabilities: ClientCapabilities = {};
  /** With isolation: consumer, each server's processes by consumer (see childFor). */
  private readonly instances = new Map<string, Map<string, { child: ChildServer; lastUsed: number }>>();
  private readonly childOptions: ConstructorParameters<typeof ChildServer>[2];
  private readonly instanceHooks: ChildHooks;
  private reaper: NodeJS.Timeout | undefined;
  /** Compiled templates, per catalog entry: they go with the catalog that listed them. */
  private readonly templates = new WeakMap<RawTemplate, UriTemplateMatcher | null>();

  constructor(config: GatewayConfig, options: RegistryOptions) {
    this.separator = config.naming.separator;
    this.childOptions = {
      logger: options.logger,
      redactor: options.redactor,
      maxMessageBytes: config.limits.maxMessageBytes,
      clientInfo: options.clientInfo,
      ...(options.parentEnv ? { parentEnv: options.parentEnv } : {}),
      groups: options.groups,
      catalogCache: options.catalogCache,
      limits: config.limits,
      hiddenFiles: databaseFiles(config.database),
    };
    // A consumer's own process lists what the shared one does: its start is no catalog change.
    this.instanceHooks = { ...options.hooks, onCatalogChanged: () => {} };
    // Probed now, so that even a server not started yet shows the isolation it will get.
    if (config.servers.some((s) => s.enabled && s.sandbox !== 'none')) void sandboxSupport();
    for (const server of config.servers) {
      if (!server.enabled) {
        this.disabled.push(server);
        continue;
      }
      const prefix = server.prefix ?? server.id;
      this.prefixOf.set(server.id, prefix);
      if (prefix === '') this.unprefixed.push(server.id);
      else if (!this.byPrefix.has(prefix)) this.byPrefix.set(prefix, server.id);
      this.children.set(server.id, new ChildServer(server, options.hooks, this.childOptions));
    }
  }

  /** Whether `start` has run (the children start once the agent has initialized and is known). */
  get isStarted(): boolean {
    return this.started;
  }

  get(id: string): ChildServer | undefined {
    return this.children.get(id);
  }

  /**
   * The process that serves `consumer`'s requests to `server`: the shared one, or with
   * isolation: consumer its own, started now if it has none (at most instances.max per server:
   * the one unused longest makes room, else SERVER_UNAVAILABLE). The shared process of such a
   * server only lists what it offers.
   */
  childFor(server: string, consumer: string): ChildServer | undefined {
    const shared = this.children.get(server);
    if (!shared || shared.config.isolation !== 'consumer') return shared;
    let byConsumer = this.instances.get(server);
    if (!byConsumer) this.instances.set(server, (byConsumer = new Map()));
    const now = Date.now();
    const known = byConsumer.get(consumer);
    if (known) {
      known.lastUsed = now;
      return known.child;
    }
    if (byConsumer.size >= shared.config.instances.max) {
      const idlest = [...byConsumer.entries()].sort((a, b) => a[1].lastUsed - b[1].lastUsed)[0]!;
      if (now - idlest[1].lastUsed < MIN_INSTANCE_LIFE_MS)
        throw new GatewayError(
          'SERVER_UNAVAILABLE',
          `server "${server}" runs ${byConsumer.size} processes, one per consumer, the most allowed (servers[].instances.max)`,
        );
      byConsumer.delete(idlest[0]);
      void idlest[1].child.stop(2_000);
    }
    const child = new ChildServer(shared.config, this.instanceHooks, { ...this.childOptions, catalogCache: undefined, consumer });
    child.setClientCapabilities(this.capabilities);
    byConsumer.set(consumer, { child, lastUsed: now });
    child.start().catch(() => {});
    this.reapInstances(shared.config.instances.idleMs);
    return child;
  }

  /** Ends consumers' processes unused for `idleMs` (checked every idleMs / 2, at most 30 s). */
  private reapInstances(idleMs: number): void {
    if (this.reaper) return;
    this.reaper = setInterval(
      () => {
        const now = Date.now();
        for (const byConsumer of this.instances.values())
          for (const [consumer, { child, lastUsed }] of byConsumer) {
            if (now - lastUsed < child.config.instances.idleMs || child.busy) continue;
            byConsumer.delete(consumer);
            void child.stop(2_000);
          }
      },
      Math.min(30_000, Math.max(500, idleMs / 2)),
    );
    this.reaper.unref();
  }

  /** Every consumer's own process, of servers with isolation: consumer. */
  private instanceChildren(): ChildServer[] {
    return [...this.instances.values()].flatMap((m) => [...m.values()].map((i) => i.child));
  }

  /** Enabled servers in config order. */
  all(): ChildServer[] {
    return [...this.children.values()];
  }

  /** Servers with `enabled: false`, for listings. */
  disabledServers(): readonly ServerConfig[] {
    return this.disabled;
  }

  /**
   * Starts the eager servers, their clients declaring `capabilities` (the agent's, so a child
   * offers only what the agent can serve). Does not wait: servers join as they become ready.
   */
  start(capabilities: ClientCapabilities): void {
    if (this.started) return;
    this.started = true;
    this.capabilities = capabilities;
    for (const child of this.children.values()) {
      child.setClientCapabilities(capabilities);
      if (child.config.start === 'eager') child.start().catch(() => {});
    }
  }

  /**
   * Waits up to `ms` for servers that are still on their first start, so an agent's first list is
   * complete when its servers start quickly. A lazy server whose catalog is not remembered from an
   * earlier run is started here: a list is a use, and nothing else tells what it offers.
   */
  async settle(ms: number): Promise<void> {
    if (!this.started) return;
    const pending = this.all()
      .filter((c) => c.firstStartPending || c.unknownUntilStarted)
      .map((c) => c.start().catch(() => {}));
    if (pending.length === 0 || ms <= 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(pending), new Promise((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
  }

  /** The name an agent sees for a child's tool or prompt: `<prefix><sep><name>`, or its own name. */
  exposedName(server: string, name: string): string {
    const prefix = this.prefixOf.get(server) ?? server;
    return prefix === '' ? name : `${prefix}${this.separator}${name}`;
  }

  /**
   * The server and own name behind a name the agent used. A name starting with a server's prefix
   * and the separator is that server's (prefixes cannot contain the separator, so the first one is
   * the split point); else the first server shown under its own names that offers it (config
   * order), or the only such server when none lists it yet (it may not have started).
   */
  splitName(exposed: string, kind: 'tool' | 'prompt' = 'tool'): { server: string; name: string } | undefined {
    const at = exposed.indexOf(this.separator);
    if (at > 0) {
      const server = this.byPrefix.get(exposed.slice(0, at));
      if (server !== undefined) return { server, name: exposed.slice(at + this.separator.length) };
    }
    if (this.unprefixed.length === 0) return undefined;
    for (const id of this.unprefixed) {
      const catalog = this.children.get(id)!.catalog;
      if ((kind === 'tool' ? catalog.toolsByName : catalog.promptsByName).has(exposed)) return { server: id, name: exposed };
    }
    return this.unprefixed.length === 1 ? { server: this.unprefixed[0]!, name: exposed } : undefined;
  }

  /**
   * Tool and prompt names that more than one server (or a gateway tool, `reserved`) would show, with
   * the servers in config order and the one a call reaches. `check` fails on them; `serve` warns.
   */
  nameConflicts(
    reserved: ReadonlySet<string> = new Set(),
  ): { kind: 'tool' | 'prompt'; name: string; servers: string[]; servedBy: string }[] {
    const out: { kind: 'tool' | 'prompt'; name: string; servers: string[]; servedBy: string }[] = [];
    for (const kind of ['tool', 'prompt'] as const) {
      const claimers = new Map<string, string[]>();
      if (kind === 'tool') for (const name of reserved) claimers.set(name, [GATEWAY_SERVER_ID]);
      for (const entry of kind === 'tool' ? this.tools(true) : this.prompts(true)) {
        const list = claimers.get(entry.exposedName);
        if (list === undefined) claimers.set(entry.exposedName, [entry.server]);
        else if (!list.includes(entry.server)) list.push(entry.server);
      }
      for (const [name, servers] of claimers) {
        if (servers.length < 2) continue;
        const servedBy = servers[0] === GATEWAY_SERVER_ID ? GATEWAY_SERVER_ID : (this.splitName(name, kind)?.server ?? servers[0]!);
        out.push({ kind, name, servers, servedBy });
      }
    }
    return out;
  }

  /**
   * Every tool of every ready server, in config order; a name two servers would show is listed
   * once, for the server a call reaches (`all`: every one).
   */
  tools(all = false): NamedEntry[] {
    return this.entries((c) => c.catalog.tools, 'tool', all);
  }

  /** Every prompt of every ready server, in config order, like tools(). */
  prompts(all = false): NamedEntry[] {
    return this.entries((c) => c.catalog.prompts, 'prompt', all);
  }

  /**
   * Every listed resource as [normalised URI, entry, server], each URI once: one that two servers
   * list is served by the first in config order, so its entry is the one listed.
   */
  *listedResources(): Generator<[string, RawResource, string]> {
    const seen = new Set<string>();
    for (const child of this.children.values()) {
      for (const [uri, entry] of child.catalog.resourcesByUri) {
        if (seen.has(uri)) continue;
        seen.add(uri);
        yield [uri, entry, child.id];
      }
    }
  }

  /** Every template as [entry, server], each template text once (served by the first in config order). */
  *listedTemplates(): Generator<[RawTemplate, string]> {
    const seen = new Set<string>();
    for (const child of this.children.values()) {
      for (const template of child.catalog.resourceTemplates) {
        if (seen.has(template.uriTemplate)) continue;
        seen.add(template.uriTemplate);
        yield [template, child.id];
      }
    }
  }

  /** Servers that offer a tool with this (unprefixed) name. */
  serversWithTool(name: string): string[] {
    return this.all()
      .filter((c) => c.catalog.tools.some((t) => t.name === name))
      .map((c) => c.id);
  }

  /**
   * The server that serves a resource URI (normalised, policy/uri.ts): the first server in config
   * order that lists it or has a template matching it; else, for a URI nothing names, the one
   * server whose URIs use its scheme (servers serve URIs they do not list). Config order decides
   * every case, so a later server cannot take over an earlier one's URIs.
   */
  resourceOwner(uri: string): string | null {
    for (const child of this.children.values()) {
      const catalog = child.catalog;
      if (catalog.resourcesByUri.has(uri) || catalog.resourceTemplates.some((t) => this.matches(catalog, t, uri))) return child.id;
    }
    return this.schemeOwner(uri);
  }

  /** The server a completion's `ref/resource` names: the first with that template, or one matching it. */
  templateOwner(uri: string): string | null {
    for (const child of this.children.values()) {
      const catalog = child.catalog;
      if (catalog.resourceTemplates.some((t) => t.uriTemplate === uri || this.matches(catalog, t, uri))) return child.id;
    }
    return null;
  }

  /**
   * URIs more than one server claims (a listed URI another server lists or matches by template, or
   * one template text offered twice), with the servers in config order and the one that serves it.
   */
  uriConflicts(): { uri: string; servers: string[]; servedBy: string }[] {
    const found = new Map<string, string[]>();
    const children = this.all();
    for (const child of children) {
      for (const uri of child.catalog.resourcesByUri.keys()) {
        if (found.has(uri)) continue;
        const claimers = children
          .filter((c) => c.catalog.resourcesByUri.has(uri) || c.catalog.resourceTemplates.some((t) => this.matches(c.catalog, t, uri)))
          .map((c) => c.id);
        if (claimers.length > 1) found.set(uri, claimers);
      }
      for (const t of child.catalog.resourceTemplates) {
        if (found.has(t.uriTemplate)) continue;
        const claimers = children.filter((c) => c.catalog.resourceTemplates.some((o) => o.uriTemplate === t.uriTemplate)).map((c) => c.id);
        if (claimers.length > 1) found.set(t.uriTemplate, claimers);
      }
    }
    return [...found].map(([uri, servers]) => ({ uri, servers, servedBy: servers[0]! }));
  }

  status(): ChildStatus[] {
    return this.all().map((c) => c.status());
  }

  /** Stops every child (stdin close, SIGTERM, SIGKILL to each process group). */
  async stop(graceMs = 2_000): Promise<void> {
    clearInterval(this.reaper);
    await Promise.all([...this.all(), ...this.instanceChildren()].map((c) => c.stop(graceMs)));
  }

  /** SIGKILL to every child's process group, synchronously: the last resort at process exit. */
  killAll(): void {
    for (const child of this.children.values()) child.killNow();
    for (const child of this.instanceChildren()) child.killNow();
  }

  /** A URI no list names, whose scheme only one server uses. */
  private schemeOwner(uri: string): string | null {
    const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(uri)?.[1]?.toLowerCase();
    if (!scheme) return null;
    const prefix = `${scheme}:`;
    const uses = (text: string) => text.slice(0, prefix.length).toLowerCase() === prefix;
    const owners = this.all().filter(
      (c) => [...c.catalog.resourcesByUri.keys()].some(uses) || c.catalog.resourceTemplates.some((t) => uses(t.uriTemplate)),
    );
    return owners.length === 1 ? owners[0]!.id : null;
  }

  /** Whether a server's template matches `uri`, matched on the server's own template text in linear time. */
  private matches(catalog: Catalog, template: RawTemplate, uri: string): boolean {
    let matcher = this.templates.get(template);
    if (matcher === undefined) {
      matcher = compileUriTemplate(upstream(catalog, 'template', template.uriTemplate));
      this.templates.set(template, matcher);
    }
    return matcher !== null && matcher(uri);
  }

  private entries(pick: (c: ChildServer) => readonly RawEntry[], kind: 'tool' | 'prompt', all: boolean): NamedEntry[] {
    const out: NamedEntry[] = [];
    // Only servers shown under their own names can be shadowed (by a prefixed name or an earlier one).
    const shadowable = !all && this.unprefixed.length > 0;
    for (const child of this.children.values()) {
      const prefixed = this.prefixOf.get(child.id) !== '';
      for (const entry of pick(child)) {
        const exposedName = this.exposedName(child.id, entry.name);
        if (shadowable && !prefixed && this.splitName(exposedName, kind)?.server !== child.id) continue;
        out.push({ server: child.id, exposedName, entry });
      }
    }
    return out;
  }
}

/** The database and the files SQLite and the recorder keep beside it: what no child may read. */
function databaseFiles(database: string): string[] {
  if (database === ':memory:') return [];
  return ['', '-wal', '-shm', '-journal', '-reserve'].map((suffix) => `${database}${suffix}`);
}
