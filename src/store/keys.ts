/**
 * The keys made by `keys create` (design §3, §11). The CLI writes here while gateways read, so a
 * revocation is seen by a running gateway on its next request.
 */
import type { Db } from './db.js';
import type { PgDatabase } from './pg.js';

export interface KeyRecord {
  readonly id: string;
  readonly name: string;
  readonly consumerId: string;
  readonly roles: readonly string[];
  readonly hash: string;
  readonly createdAt: string;
  readonly expiresAt: string | null;
  readonly revokedAt: string | null;
  readonly disabled: boolean;
  readonly ratePerMinute: number | null;
  readonly rateBurst: number | null;
  readonly rotatedFrom: string | null;
}

/** What a running gateway checks on every request for a database key. */
export interface KeyState {
  readonly hash: string;
  readonly revokedAt: string | null;
  readonly expiresAt: string | null;
  readonly disabled: boolean;
}

interface Row extends Record<string, unknown> {
  id: string;
  name: string;
  consumer_id: string;
  roles: string;
  hash: string;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  disabled: number;
  rate_per_minute: number | null;
  rate_burst: number | null;
  rotated_from: string | null;
}

/**
 * The keys table on either engine. `state` runs on every request: synchronous on SQLite (a local
 * read), a query on PostgreSQL (so a revocation on any replica is seen by the next request on all).
 */
export interface KeyStore {
  get(id: string): Promise<KeyRecord | undefined>;
  state(id: string): KeyState | undefined | Promise<KeyState | undefined>;
  list(): Promise<KeyRecord[]>;
  insert(record: NewKeyRecord): Promise<void>;
  /** Marks a key revoked; false if there is no such key or it was already revoked. */
  revoke(id: string, at: string): Promise<boolean>;
  setDisabled(id: string, disabled: boolean): Promise<boolean>;
  /**
   * Stores `fresh` and revokes `oldId` in one transaction (rotation); false, and nothing stored,
   * when `oldId` was revoked meanwhile (two rotations at once: one wins).
   */
  replace(fresh: NewKeyRecord, oldId: string, at: string): Promise<boolean>;
}

export type NewKeyRecord = Omit<KeyRecord, 'revokedAt' | 'disabled'>;

const INSERT_SQL = `INSERT INTO api_keys (id, name, consumer_id, roles, hash, created_at, expires_at, revoked_at, disabled, rate_per_minute, rate_burst, rotated_from)
  VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, 0, $8, $9, $10)`;
const REVOKE_SQL = 'UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL';
const STATE_SQL = 'SELECT hash, revoked_at, expires_at, disabled FROM api_keys WHERE id = $1';
const GET_SQL = 'SELECT * FROM api_keys WHERE id = $1';
const LIST_SQL = 'SELECT * FROM api_keys ORDER BY created_at, id';
const DISABLE_SQL = 'UPDATE api_keys SET disabled = $1 WHERE id = $2';

/** `$n` as SQLite's `?` (every statement here uses each parameter once, in order). */
const sqlite = (sql: string) => sql.replace(/\$\d+/g, '?');

function insertValues(record: NewKeyRecord): (string | number | null)[] {
  return [
    record.id,
    record.name,
    record.consumerId,
    JSON.stringify(record.roles),
    record.hash,
    record.createdAt,
    record.expiresAt,
    record.ratePerMinute,
    record.rateBurst,
    record.rotatedFrom,
  ];
}

type StateRow = Pick<Row, 'hash' | 'revoked_at' | 'expires_at' | 'disabled'>;

function toState(row: StateRow | undefined): KeyState | undefined {
  return row ? { hash: row.hash, revokedAt: row.revoked_at, expiresAt: row.expires_at, disabled: row.disabled !== 0 } : undefined;
}

export class SqliteKeyStore implements KeyStore {
  private readonly getStmt;
  private readonly stateStmt;

  constructor(private readonly db: Db) {
    this.getStmt = db.prepare<[string], Row>(sqlite(GET_SQL));
    this.stateStmt = db.prepare<[string], StateRow>(sqlite(STATE_SQL));
  }

  async get(id: string): Promise<KeyRecord | undefined> {
    const row = this.getStmt.get(id);
    return row ? toRecord(row) : undefined;
  }

  /** The fields a per-request check needs (one indexed lookup, synchronous). */
  state(id: string): KeyState | undefined {
    return toState(this.stateStmt.get(id));
  }

  async list(): Promise<KeyRecord[]> {
    return this.db.prepare<[], Row>(LIST_SQL).all().map(toRecord);
  }

  async insert(record: NewKeyRecord): Promise<void> {
    this.db.prepare(sqlite(INSERT_SQL)).run(...insertValues(record));
  }

  async revoke(id: string, at: string): Promise<boolean> {
    return this.db.prepare(sqlite(REVOKE_SQL)).run(at, id).changes === 1;
  }

  async setDisabled(id: string, disabled: boolean): Promise<boolean> {
    return this.db.prepare(sqlite(DISABLE_SQL)).run(disabled ? 1 : 0, id).changes === 1;
  }

  async replace(fresh: NewKeyRecord, oldId: string, at: string): Promise<boolean> {
    return this.db
      .transaction(() => {
        if (this.db.prepare(sqlite(REVOKE_SQL)).run(at, oldId).changes !== 1) return false;
        this.db.prepare(sqlite(INSERT_SQL)).run(...insertValues(fresh));
        return true;
      })
      .immediate();
  }
}

export class PgKeyStore implements KeyStore {
  constructor(private readonly db: PgDatabase) {}

  async get(id: string): Promise<KeyRecord | undefined> {
    const row = (await this.db.query<Row>(GET_SQL, [id])).rows[0];
    return row ? toRecord(row) : undefined;
  }

  async state(id: string): Promise<KeyState | undefined> {
    return toState((await this.db.query<StateRow>(STATE_SQL, [id])).rows[0]);
  }

  async list(): Promise<KeyRecord[]> {
    return (await this.db.query<Row>(LIST_SQL)).rows.map(toRecord);
  }

  async insert(record: NewKeyRecord): Promise<void> {
    await this.db.query(INSERT_SQL, insertValues(record));
  }

  async revoke(id: string, at: string): Promise<boolean> {
    return (await this.db.query(REVOKE_SQL, [at, id])).rowCount === 1;
  }

  async setDisabled(id: string, disabled: boolean): Promise<boolean> {
    return (await this.db.query(DISABLE_SQL, [disabled ? 1 : 0, id])).rowCount === 1;
  }

  replace(fresh: NewKeyRecord, oldId: string, at: string): Promise<boolean> {
    return this.db.transaction(async (client) => {
      if ((await client.query(REVOKE_SQL, [at, oldId])).rowCount !== 1) return false;
      await client.query(INSERT_SQL, insertValues(fresh));
      return true;
    });
  }
}

function toRecord(row: Row): KeyRecord {
  return {
    id: row.id,
    name: row.name,
    consumerId: row.consumer_id,
    roles: JSON.parse(row.roles) as string[],
    hash: row.hash,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    disabled: row.disabled !== 0,
    ratePerMinute: row.rate_per_minute,
    rateBurst: row.rate_burst,
    rotatedFrom: row.rotated_from,
  };
}
