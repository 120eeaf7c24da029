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
  const j = (v: string | number | null) => (v === null ? 'null' : typeof v === 'number' ? String(v) : JSON.stringify(v));
  return (
    `{"arguments":${j(c.arguments)},"auth_method":${j(c.auth_method)},"consumer_id":${j(c.consumer_id)},` +
    `"decided_by":${j(c.decided_by)},"error":${j(c.error)},"key_id":${j(c.key_id)},"kind":${j(c.kind)},` +
    `"latency_ms":${j(c.latency_ms)},"name":${j(c.name)},"result":${j(c.result)},"roles":${j(c.roles)},` +
    `"seq":${j(c.seq)},"server":${j(c.server)},"status":${j(c.status)},"ts":${j(c.ts)}}`
  );
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
  };
}

/** A check value that tells whether a verifier holds the same HMAC key, without revealing it. */
export function keyCheck(hmacKey: Buffer | null): string {
  return hmacKey
    ? `hmac-sha256:${crypto.createHmac('sha256', hmacKey).update('mcp-gateway audit key check').digest('hex').slice(0, 16)}`
    : 'sha256';
}
