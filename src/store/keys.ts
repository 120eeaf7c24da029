/**
 * The keys made by `keys create` (design §3, §11). The CLI writes here while gateways read, so a
 * revocation is seen by a running gateway on its next request.
 */
import type { Db } from './db.js';

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

interface Row {
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

export class KeyStore {
  private readonly getStmt;
  private readonly stateStmt;

  constructor(private readonly db: Db) {
    this.getStmt = db.prepare<[string], Row>('SELECT * FROM api_keys WHERE id = ?');
    this.stateStmt = db.prepare<[string], Pick<Row, 'hash' | 'revoked_at' | 'expires_at' | 'disabled'>>(
      'SELECT hash, revoked_at, expires_at, disabled FROM api_keys WHERE id = ?',
    );
  }

  get(id: string): KeyRecord | undefined {
    const row = this.getStmt.get(id);
    return row ? toRecord(row) : undefined;
  }

  /** The fields a per-request check needs (one indexed lookup). */
  state(id: string): KeyState | undefined {
    const row = this.stateStmt.get(id);
    return row ? { hash: row.hash, revokedAt: row.revoked_at, expiresAt: row.expires_at, disabled: row.disabled !== 0 } : undefined;
  }

  list(): KeyRecord[] {
    return this.db.prepare<[], Row>('SELECT * FROM api_keys ORDER BY created_at, id').all().map(toRecord);
  }

  insert(record: Omit<KeyRecord, 'revokedAt' | 'disabled'>): void {
    this.db
      .prepare(
        `INSERT INTO api_keys (id, name, consumer_id, roles, hash, created_at, expires_at, revoked_at, disabled, rate_per_minute, rate_burst, rotated_from)
         VALUES (?, ?, ?, ?, ?, ?, ?, NULL, 0, ?, ?, ?)`,
      )
      .run(
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
      );
  }

  /** Marks a key revoked; false if there is no such key or it was already revoked. */
  revoke(id: string, at: string): boolean {
    return this.db.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(at, id).changes === 1;
  }

  setDisabled(id: string, disabled: boolean): boolean {
    return this.db.prepare('UPDATE api_keys SET disabled = ? WHERE id = ?').run(disabled ? 1 : 0, id).changes === 1;
  }

  /** Runs `fn` in one IMMEDIATE transaction (rotate: insert the new key and revoke the old). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
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
