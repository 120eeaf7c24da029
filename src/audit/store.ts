/**
 * The audit_log table and its chain (design §6). Appends run inside the recorder's
 * `BEGIN IMMEDIATE` transaction, which reads the last hash and writes the next rows: several
 * gateway processes sharing the file keep one gapless chain.
 */
import type { Db } from '../store/db.js';
import { CHAIN_MODE_LOCK, type PgDatabase } from '../store/pg.js';
import { GENESIS_HASH, keyCheck, rowHash, type AuditColumns } from './chain.js';

/** A row before it has a place in the chain. */
export type AuditDraft = Omit<AuditColumns, 'seq'>;

export interface ChainOptions {
  readonly hashChain: boolean;
  readonly hmacKey: Buffer | null;
}

export class AuditChainError extends Error {}

export class AuditStore {
  private readonly lastStmt;
  private readonly insertStmt;

  constructor(
    private readonly db: Db,
    private readonly chain: ChainOptions,
  ) {
    this.lastStmt = db.prepare<[], { seq: number; hash: string }>('SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1');
    // Positional parameters: binding by name looks every key up, on every append.
    this.insertStmt = db.prepare<InsertParams>(
      `INSERT INTO audit_log (seq, ts, consumer_id, key_id, auth_method, roles, server, kind, name, arguments, result, status, error, latency_ms, decided_by, method, meta, prev_hash, hash)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
  }

  /**
   * Checks that the chain in the file was written the way this config writes it (plain SHA-256 or
   * HMAC with this key) and records the mode in a new file. A mismatch would break the chain.
   */
  checkMode(): void {
    const want = this.chain.hashChain ? keyCheck(this.chain.hmacKey) : 'none';
    this.db
      .transaction(() => {
        const row = this.db.prepare<[], { value: string }>("SELECT value FROM audit_meta WHERE key = 'chain'").get();
        if (!row) {
          this.db.prepare("INSERT INTO audit_meta (key, value) VALUES ('chain', ?)").run(want);
          return;
        }
        if (row.value === want) return;
        const empty = this.lastStmt.get() === undefined;
        if (empty) {
          this.db.prepare("UPDATE audit_meta SET value = ? WHERE key = 'chain'").run(want);
          return;
        }
        throw modeMismatch(row.value, want);
      })
      .immediate();
  }

  /**
   * Appends rows to the chain. Must run inside an IMMEDIATE transaction (the recorder's), so the
   * last hash read here is still the last when the rows are written.
   */
  appendInTransaction(drafts: readonly AuditDraft[]): void {
    const last = this.lastStmt.get();
    let seq = last?.seq ?? 0;
    let prev = last?.hash ?? GENESIS_HASH;
    for (const draft of drafts) {
      seq++;
      const { values, hash } = chainRow(storable(draft, false), seq, prev, this.chain);
      this.insertStmt.run(...(values as InsertParams));
      prev = hash;
    }
  }

  /** The last row's seq and hash (`audit head`). */
  head(): { seq: number; hash: string } | null {
    return this.lastStmt.get() ?? null;
  }
}

/**
 * A draft's place in the chain: its hash after `prev`, and the values of the INSERT in the column
 * order both engines use (seq … meta, prev_hash, hash).
 */
export function chainRow(c: AuditDraft, seq: number, prev: string, chain: ChainOptions): { values: unknown[]; hash: string } {
  const hash = chain.hashChain ? rowHash(prev, { ...c, seq }, chain.hmacKey) : '';
  const values = [
    seq,
    c.ts,
    c.consumer_id,
    c.key_id,
    c.auth_method,
    c.roles,
    c.server,
    c.kind,
    c.name,
    c.arguments,
    c.result,
    c.status,
    c.error,
    c.latency_ms,
    c.decided_by,
    c.method ?? null,
    c.meta ?? null,
    chain.hashChain ? prev : '',
    hash,
  ];
  return { values, hash };
}

/**
 * The row as the database will store it: a lone UTF-16 surrogate (an agent can send one in any
 * string) cannot be stored as UTF-8 and would read back changed, so the hash would not match an
 * untouched row; such text is made well-formed (U+FFFD) before it is hashed and stored. PostgreSQL
 * text cannot hold U+0000 either (`postgres`): it becomes U+FFFD too.
 */
export function storable(draft: AuditDraft, postgres: boolean): AuditDraft {
  let out: Record<string, unknown> | undefined;
  for (const k in draft) {
    const v = draft[k as keyof AuditDraft];
    if (typeof v !== 'string') continue;
    let fixed = v.isWellFormed() ? v : v.toWellFormed();
    if (postgres && fixed.includes('\u0000')) fixed = fixed.replaceAll('\u0000', '\uFFFD');
    if (fixed !== v) (out ??= { ...draft })[k] = fixed;
  }
  return (out as AuditDraft | undefined) ?? draft;
}

/**
 * `checkMode` on PostgreSQL: the same rule, under an advisory lock so replicas starting together
 * on an empty database record one mode.
 */
export async function checkChainModePg(db: PgDatabase, chain: ChainOptions): Promise<void> {
  const want = chain.hashChain ? keyCheck(chain.hmacKey) : 'none';
  await db.transaction(async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1)', [CHAIN_MODE_LOCK]);
    const row = (await client.query<{ value: string }>("SELECT value FROM audit_meta WHERE key = 'chain'")).rows[0];
    if (!row) {
      await client.query("INSERT INTO audit_meta (key, value) VALUES ('chain', $1)", [want]);
      return;
    }
    if (row.value === want) return;
    const empty = (await client.query('SELECT 1 FROM audit_log LIMIT 1')).rows.length === 0;
    if (empty) {
      await client.query("UPDATE audit_meta SET value = $1 WHERE key = 'chain'", [want]);
      return;
    }
    throw modeMismatch(row.value, want);
  });
}

function modeMismatch(stored: string, want: string): AuditChainError {
  const describe = (m: string) => (m === 'none' ? 'without a hash chain' : m === 'sha256' ? 'with SHA-256' : 'with HMAC-SHA256 and a key');
  return new AuditChainError(
    `the audit chain in this database was written ${describe(stored)}, but this config writes ${describe(want)}` +
      (stored.startsWith('hmac') && want.startsWith('hmac') ? ' (a different key)' : '') +
      '; use the same audit settings and key, or a new database',
  );
}

type InsertParams = [
  seq: number,
  ts: string,
  consumer_id: string | null,
  key_id: string | null,
  auth_method: string | null,
  roles: string | null,
  server: string | null,
  kind: string,
  name: string,
  args: string | null,
  result: string | null,
  status: string,
  error: string | null,
  latency_ms: number,
  decided_by: string | null,
  method: string | null,
  meta: string | null,
  prev_hash: string,
  hash: string,
];
