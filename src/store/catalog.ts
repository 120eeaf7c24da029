/**
 * Remembers each server's catalog (tools, prompts, resources) between gateway runs, so a server with
 * `start: lazy` can be listed without being started. Entries are keyed by a fingerprint of how the
 * server is started: a changed command, args, folder or set of variables makes the memory stale.
 */
import type { Logger } from '../log.js';
import type { Db } from './db.js';
import type { PgDatabase } from './pg.js';

export interface CatalogCache {
  load(server: string, fingerprint: string): unknown;
  save(server: string, fingerprint: string, catalog: unknown): void;
  /** The protocol era probed for a server started this way (`protocol: auto`), or undefined. */
  loadVerdict(server: string, fingerprint: string): unknown;
  saveVerdict(server: string, fingerprint: string, verdict: unknown): void;
}

export class CatalogStore implements CatalogCache {
  constructor(private readonly db: Db) {}

  /** The remembered catalog (parsed JSON), or undefined. */
  load(server: string, fingerprint: string): unknown {
    const row = this.db
      .prepare<[string, string], { catalog: string }>('SELECT catalog FROM server_catalog WHERE server = ? AND fingerprint = ?')
      .get(server, fingerprint);
    if (!row) return undefined;
    try {
      return JSON.parse(row.catalog);
    } catch {
      return undefined;
    }
  }

  loadVerdict(server: string, fingerprint: string): unknown {
    const row = this.db
      .prepare<[string, string], { verdict: string }>('SELECT verdict FROM server_protocol WHERE server = ? AND fingerprint = ?')
      .get(server, fingerprint);
    if (!row) return undefined;
    try {
      return JSON.parse(row.verdict);
    } catch {
      return undefined;
    }
  }

  saveVerdict(server: string, fingerprint: string, verdict: unknown): void {
    this.db
      .prepare(
        `INSERT INTO server_protocol (server, fingerprint, verdict, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (server) DO UPDATE SET fingerprint = excluded.fingerprint, verdict = excluded.verdict, updated_at = excluded.updated_at`,
      )
      .run(server, fingerprint, JSON.stringify(verdict), new Date().toISOString());
  }

  save(server: string, fingerprint: string, catalog: unknown): void {
    this.db
      .prepare(
        `INSERT INTO server_catalog (server, fingerprint, catalog, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (server) DO UPDATE SET fingerprint = excluded.fingerprint, catalog = excluded.catalog, updated_at = excluded.updated_at`,
      )
      .run(server, fingerprint, JSON.stringify(catalog), new Date().toISOString());
  }
}

/**
 * The same memory on PostgreSQL, shared by replicas. Read once when the gateway starts (the
 * registry asks synchronously); saves go to memory at once and to the database in the background
 * (a failed save only costs a later start a probe or a listing).
 */
export class PgCatalogStore implements CatalogCache {
  private constructor(
    private readonly db: PgDatabase,
    private readonly catalogs: Map<string, { fingerprint: string; value: unknown }>,
    private readonly verdicts: Map<string, { fingerprint: string; value: unknown }>,
    private readonly log: Logger | undefined,
  ) {}

  static async load(db: PgDatabase, log?: Logger): Promise<PgCatalogStore> {
    const read = async (sql: string) => {
      const map = new Map<string, { fingerprint: string; value: unknown }>();
      for (const row of (await db.query<{ server: string; fingerprint: string; value: string }>(sql)).rows) {
        try {
          map.set(row.server, { fingerprint: row.fingerprint, value: JSON.parse(row.value) });
        } catch {
          // unreadable: as if not remembered
        }
      }
      return map;
    };
    return new PgCatalogStore(
      db,
      await read('SELECT server, fingerprint, catalog AS value FROM server_catalog'),
      await read('SELECT server, fingerprint, verdict AS value FROM server_protocol'),
      log,
    );
  }

  load(server: string, fingerprint: string): unknown {
    const hit = this.catalogs.get(server);
    return hit?.fingerprint === fingerprint ? hit.value : undefined;
  }

  loadVerdict(server: string, fingerprint: string): unknown {
    const hit = this.verdicts.get(server);
    return hit?.fingerprint === fingerprint ? hit.value : undefined;
  }

  save(server: string, fingerprint: string, catalog: unknown): void {
    this.catalogs.set(server, { fingerprint, value: catalog });
    this.write('server_catalog', 'catalog', server, fingerprint, catalog);
  }

  saveVerdict(server: string, fingerprint: string, verdict: unknown): void {
    this.verdicts.set(server, { fingerprint, value: verdict });
    this.write('server_protocol', 'verdict', server, fingerprint, verdict);
  }

  private write(
    table: 'server_catalog' | 'server_protocol',
    column: 'catalog' | 'verdict',
    server: string,
    fingerprint: string,
    value: unknown,
  ): void {
    this.db
      .query(
        `INSERT INTO ${table} (server, fingerprint, ${column}, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (server) DO UPDATE SET fingerprint = excluded.fingerprint, ${column} = excluded.${column}, updated_at = excluded.updated_at`,
        [server, fingerprint, JSON.stringify(value), new Date().toISOString()],
      )
      .catch((err: Error) => this.log?.warn(`could not remember the ${column} of server "${server}" (${err.message})`));
  }
}
