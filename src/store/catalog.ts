/**
 * Remembers each server's catalog (tools, prompts, resources) between gateway runs, so a server with
 * `start: lazy` can be listed without being started. Entries are keyed by a fingerprint of how the
 * server is started: a changed command, args, folder or set of variables makes the memory stale.
 */
import type { Db } from './db.js';

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
