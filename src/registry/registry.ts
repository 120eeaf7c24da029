/**
 * All child servers of one gateway: starting them, naming what they offer (`<server><sep><name>`),
 * routing a name back to its server, and stopping them all with their process groups.
 */
import type { ClientCapabilities } from '@modelcontextprotocol/sdk/types.js';
import type { GatewayConfig, ServerConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { Redactor } from '../secrets/redactor.js';
import { ChildServer, type ChildHooks, type ChildStatus, type RawEntry } from './child.js';
import type { GroupWatcher } from './reaper.js';
import type { CatalogCache } from '../store/catalog.js';

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
  private started = false;

  constructor(config: GatewayConfig, options: RegistryOptions) {
    this.separator = config.naming.separator;
    for (const server of config.servers) {
      if (!server.enabled) {
        this.disabled.push(server);
        continue;
      }
      this.children.set(
        server.id,
        new ChildServer(server, options.hooks, {
          logger: options.logger,
          redactor: options.redactor,
          maxMessageBytes: config.limits.maxMessageBytes,
          clientInfo: options.clientInfo,
          ...(options.parentEnv ? { parentEnv: options.parentEnv } : {}),
          groups: options.groups,
          catalogCache: options.catalogCache,
        }),
      );
    }
  }

  get(id: string): ChildServer | undefined {
    return this.children.get(id);
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

  /** The name an agent sees for a child's tool or prompt. */
  exposedName(server: string, name: string): string {
    return `${server}${this.separator}${name}`;
  }

  /**
   * Splits `<server><sep><name>` into its parts, when the prefix is a configured server. Server ids
   * cannot contain the separator, so the first separator is the split point.
   */
  splitName(exposed: string): { server: string; name: string } | undefined {
    const at = exposed.indexOf(this.separator);
    if (at <= 0) return undefined;
    const server = exposed.slice(0, at);
    if (!this.children.has(server)) return undefined;
    return { server, name: exposed.slice(at + this.separator.length) };
  }

  /** Every tool of every ready server, in config order. */
  tools(): NamedEntry[] {
    return this.entries((c) => c.catalog.tools);
  }

  /** Every prompt of every ready server, in config order. */
  prompts(): NamedEntry[] {
    return this.entries((c) => c.catalog.prompts);
  }

  /** Servers that offer a tool with this (unprefixed) name. */
  serversWithTool(name: string): string[] {
    return this.all()
      .filter((c) => c.catalog.tools.some((t) => t.name === name))
      .map((c) => c.id);
  }

  status(): ChildStatus[] {
    return this.all().map((c) => c.status());
  }

  /** Stops every child (stdin close, SIGTERM, SIGKILL to each process group). */
  async stop(graceMs = 2_000): Promise<void> {
    await Promise.all(this.all().map((c) => c.stop(graceMs)));
  }

  /** SIGKILL to every child's process group, synchronously: the last resort at process exit. */
  killAll(): void {
    for (const child of this.children.values()) child.killNow();
  }

  private entries(pick: (c: ChildServer) => readonly RawEntry[]): NamedEntry[] {
    const out: NamedEntry[] = [];
    for (const child of this.children.values()) {
      for (const entry of pick(child)) {
        out.push({ server: child.id, exposedName: this.exposedName(child.id, entry.name), entry });
      }
    }
    return out;
  }
}
