/**
 * The hash chain (design §6): hash = SHA-256(prev_hash + canonical JSON of every other column),
 * or HMAC-SHA256 with the audit key when `hmacKeyEnv` is set. The first row's prev_hash is 64 zeros.
 */
import * as crypto from 'node:crypto';

export const GENESIS_HASH = '0'.repeat(64);

/** The columns of an audit row that are hashed (all but prev_hash and hash). */
export interface AuditColumns {
  readonly seq: number;
  readonly ts: string;
  readonly consumer_id: string | null;
  readonly key_id: string | null;
  readonly auth_method: string | null;
  readonly roles: string | null;
  readonly server: string | null;
  readonly kind: string;
  readonly name: string;
  readonly arguments: string | null;
  readonly result: string | null;
  readonly status: string;
  readonly error: string | null;
  readonly latency_ms: number;
  readonly decided_by: string | null;
  /** The JSON-RPC method (schema 2; null in rows written before it). */
  readonly method?: string | null | undefined;
  /** The request's `_meta` as JSON text, redacted (schema 2). */
  readonly meta?: string | null | undefined;
}

export interface AuditRow extends AuditColumns {
  readonly prev_hash: string;
  readonly hash: string;
}

/**
 * The canonical JSON of a row's hashed columns: the same text as `canonicalJson(columnsOf(row))`,
 * written with the (sorted) keys in a fixed order, since it is computed on every append.
 */
export function canonicalColumns(c: AuditColumns): string {
  const j = (v: string | number | null | undefined) =>
    v === null || v === undefined ? 'null' : typeof v === 'number' ? String(v) : JSON.stringify(v);
  // The columns of schema 2 are hashed unless both are null: rows written before they existed keep
  // their hashes, and a value put into either column of such a row breaks its hash.
  const added = hasAddedColumns(c) ? `"meta":${j(c.meta)},"method":${j(c.method)},` : '';
  return (
    `{"arguments":${j(c.arguments)},"auth_method":${j(c.auth_method)},"consumer_id":${j(c.consumer_id)},` +
    `"decided_by":${j(c.decided_by)},"error":${j(c.error)},"key_id":${j(c.key_id)},"kind":${j(c.kind)},` +
    `"latency_ms":${j(c.latency_ms)},${added}"name":${j(c.name)},"result":${j(c.result)},"roles":${j(c.roles)},` +
    `"seq":${j(c.seq)},"server":${j(c.server)},"status":${j(c.status)},"ts":${j(c.ts)}}`
  );
}

/** Whether a row carries the columns added in schema 2 (`method`, `meta`): then they are hashed. */
export function hasAddedColumns(c: Pick<AuditColumns, 'method' | 'meta'>): boolean {
  return (c.method !== null && c.method !== undefined) || (c.meta !== null && c.meta !== undefined);
}

/**
 * One-shot SHA-256, without a Hash object per row. `crypto.hash` exists from Node 20.12; a
 * namespace import, since a named import of it would not load on older 20.x releases.
 */
const sha256: (text: string) => string =
  typeof crypto.hash === 'function'
    ? (text) => crypto.hash('sha256', text, 'hex')
    : (text) => crypto.createHash('sha256').update(text).digest('hex');

/** Computes the hash of a row from its predecessor's hash and its own columns. */
export function rowHash(prevHash: string, columns: AuditColumns, hmacKey: Buffer | null): string {
  const text = prevHash + canonicalColumns(columns);
  return hmacKey ? crypto.createHmac('sha256', hmacKey).update(text).digest('hex') : sha256(text);
}

/** Exactly the hashed columns of a row (a row read from SQLite also carries prev_hash and hash). */
export function columnsOf(row: AuditColumns): AuditColumns {
  return {
    seq: row.seq,
    ts: row.ts,
    consumer_id: row.consumer_id,
    key_id: row.key_id,
    auth_method: row.auth_method,
    roles: row.roles,
    server: row.server,
    kind: row.kind,
    name: row.name,
    arguments: row.arguments,
    result: row.result,
    status: row.status,
    error: row.error,
    latency_ms: row.latency_ms,
    decided_by: row.decided_by,
    ...(hasAddedColumns(row) ? { method: row.method ?? null, meta: row.meta ?? null } : {}),
  };
}

/** A check value that tells whether a verifier holds the same HMAC key, without revealing it. */
export function keyCheck(hmacKey: Buffer | null): string {
  return hmacKey
    ? `hmac-sha256:${crypto.createHmac('sha256', hmacKey).update('mcp-gateway audit key check').digest('hex').slice(0, 16)}`
    : 'sha256';
}
