/**
 * `audit verify` (design §6): recomputes the hash chain row by row and names the first bad seq and
 * why. Rows are streamed in seq order, so memory stays flat however long the log is; only the
 * previous row's seq and hash are kept. When a row's link is broken, one extra lookup (after the
 * stream is closed) tells a deleted row from a moved one.
 *
 * What the chain alone cannot show: rows deleted from the end, and (without an HMAC key) a log
 * rewritten consistently from some row on. An anchor (`seq:hash` taken earlier with `audit head`
 * and kept elsewhere) covers both up to the anchor.
 */
import { createHash, createHmac } from 'node:crypto';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { Db } from '../store/db.js';
import type { Reader } from '../store/sql.js';
import { GENESIS_HASH, keyCheck, rowHash, type AuditRow } from './chain.js';

/** Why a chain fails to verify. */
export type VerifyReason =
  /** A row's columns no longer give its hash (its link to the previous row is intact). */
  | 'modified'
  /** Rows are gone: a seq gap, or a row linking to a hash no row has. */
  | 'missing'
  /** A row links to a row other than the one before it (rows swapped or moved). */
  | 'reordered'
  /** The log was written with another key (or none, or with a key and verified without one). */
  | 'wrong-key'
  /** The log ends before the anchor's seq. */
  | 'truncated'
  /** The anchor's row exists but has another hash: the log was rewritten up to there. */
  | 'anchor-mismatch'
  /** The log was written with `audit.hashChain: false`: there is nothing to verify. */
  | 'unchained';

/**
 * A row the verifier is told must exist with this hash (`audit head` output). `hash` may be the
 * first 16 or more hex digits of it: 64 bits that a rewrite would have to reproduce at that row.
 */
export interface Anchor {
  readonly seq: number;
  readonly hash: string;
}

/** The fewest leading hex digits of a hash an anchor may give. */
export const MIN_ANCHOR_HEX = 16;

/** What a verification checks against. */
export interface VerifyOptions {
  /** The audit HMAC key (from `audit.hmacKeyEnv`), or null for a plain SHA-256 chain. */
  readonly hmacKey: Buffer | null;
  readonly anchor?: Anchor | undefined;
}

/** The last row of the chain, as `audit head` prints it (`seq:hash`). */
export interface ChainHead {
  readonly seq: number;
  readonly hash: string;
}

/** What `audit verify` reports: the rows checked and the head, or the first problem. */
export type VerifyResult =
  | {
      readonly ok: true;
      /** Rows checked. */
      readonly rows: number;
      /** The last row, or null for an empty log. */
      readonly head: ChainHead | null;
      readonly mode: 'sha256' | 'hmac-sha256';
    }
  | {
      readonly ok: false;
      /** The first bad seq (for a log-wide problem, the first row's seq). */
      readonly seq: number;
      readonly reason: VerifyReason;
      /** One line for people. */
      readonly detail: string;
      /** Rows that verified before the problem. */
      readonly rows: number;
    };

/** A failed verification. */
export type VerifyFailure = Extract<VerifyResult, { ok: false }>;

/**
 * Parses `seq:hash` (as printed by `audit head`), where the hash may be cut to its first 16 or
 * more hex digits (a trailing "…" is allowed); null when it is not one.
 */
export function parseAnchor(text: string): Anchor | null {
  const m = /^\s*(\d{1,15}):([0-9a-fA-F]{16,64})…?\s*$/.exec(text);
  if (!m) return null;
  return { seq: Number(m[1]), hash: m[2]!.toLowerCase() };
}

/** The last row's seq and hash; `{seq: 0, hash: GENESIS_HASH}` for an empty log (what row 1 links to). */
export function chainHead(db: Db): ChainHead {
  const row = db.prepare<[], ChainHead>('SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1').get();
  return row ?? { seq: 0, hash: GENESIS_HASH };
}

/**
 * Verifies the whole chain in one synchronous pass over streaming cursors (the CLI). Returns the
 * first problem, or the number of rows and the head.
 */
export function verifyChain(db: Db, options: VerifyOptions): VerifyResult {
  const run = new VerifyRun(db, options);
  for (;;) {
    const step = run.slice(Infinity);
    if (step !== 'more') return step;
  }
}

/**
 * The same verification in slices of about `sliceMs`, yielding to the event loop between them (the
 * `audit_verify` tool inside a running gateway, whose recorder writes on the same connection). Each
 * slice is its own cursor, closed before yielding; rows appended meanwhile are verified too.
 */
export async function verifyChainAsync(db: Db, options: VerifyOptions, sliceMs = 25): Promise<VerifyResult> {
  const run = new VerifyRun(db, options);
  for (;;) {
    const step = run.slice(performance.now() + sliceMs);
    if (step !== 'more') return step;
    await yieldToLoop();
  }
}

/** The chain mode recorded in the file by AuditStore.checkMode (null when never recorded). */
function readMode(db: Db): string | null {
  return db.prepare<[], { value: string }>("SELECT value FROM audit_meta WHERE key = 'chain'").get()?.value ?? null;
}

/**
 * The text each row's hash covers, `prev_hash + canonical JSON`, built by SQLite's json_object
 * (keys given in sorted order). It writes strings and integers exactly as JSON.stringify does, and
 * building it in C is what keeps a million rows under a few seconds: one string per row reaches
 * JavaScript instead of seventeen. Where the two could differ (a REAL, text that is not valid
 * UTF-8), the hash does not match and the row is checked again with `rowHash`, the definition.
 */
const CANONICAL_KEYS = [
  'arguments',
  'auth_method',
  'consumer_id',
  'decided_by',
  'error',
  'key_id',
  'kind',
  'latency_ms',
  'meta',
  'method',
  'name',
  'result',
  'roles',
  'seq',
  'server',
  'status',
  'ts',
] as const;
const jsonObject = (keys: readonly string[]) => `json_object(${keys.map((c) => `'${c}', ${c}`).join(', ')})`;
/** As `canonicalColumns`: the schema 2 columns (meta, method) are hashed unless both are null. */
const CANONICAL_SQL =
  `prev_hash || CASE WHEN method IS NULL AND meta IS NULL ` +
  `THEN ${jsonObject(CANONICAL_KEYS.filter((k) => k !== 'meta' && k !== 'method'))} ELSE ${jsonObject(CANONICAL_KEYS)} END`;

/** Below every rowid: the first cursor starts here. */
const BEFORE_ALL = -(2n ** 63n);

type Outcome = VerifyResult | 'more';

/** One verification: its cursors, and where it got to, so it can stop and resume between slices. */
class VerifyRun {
  private readonly walker: ChainWalker;
  private readonly fast;
  private readonly slow;
  private readonly byseq;
  private readonly digest: (text: string) => string;
  private after: number | bigint = BEFORE_ALL;
  /** Set when SQLite cannot build the canonical text (a BLOB where text was): JavaScript does it. */
  private useSlow = false;

  constructor(
    private readonly db: Db,
    options: VerifyOptions,
  ) {
    this.walker = new ChainWalker(readMode(db), options);
    const key = options.hmacKey;
    this.digest = key ? (t) => createHmac('sha256', key).update(t).digest('hex') : (t) => createHash('sha256').update(t).digest('hex');
    this.fast = db
      .prepare<[number | bigint], [number, string, string, string]>(
        `SELECT seq, prev_hash, hash, ${CANONICAL_SQL} FROM audit_log WHERE seq > ? ORDER BY seq`,
      )
      .raw(true);
    this.slow = db.prepare<[number | bigint], AuditRow>('SELECT * FROM audit_log WHERE seq > ? ORDER BY seq');
    this.byseq = db.prepare<[number], AuditRow>('SELECT * FROM audit_log WHERE seq = ?');
  }

  private readonly seqOfHash = (hash: string) =>
    this.db.prepare<[string], { seq: number }>('SELECT seq FROM audit_log WHERE hash = ? LIMIT 1').get(hash)?.seq;

  /** Verifies rows until `deadline` (performance.now()), the end, or a problem. */
  slice(deadline: number): Outcome {
    const w = this.walker;
    for (;;) {
      let stop: { kind: ProblemKind; seq: number } | null = null;
      let more = false;
      let seen = 0;
      try {
        // Every exit from these loops closes the cursor before the connection is used again.
        if (this.useSlow) {
          for (const row of this.slow.iterate(this.after)) {
            const kind = w.check(row.seq, row.prev_hash, row.hash, () => rowHash(row.prev_hash, row, w.key));
            if (kind) {
              stop = { kind, seq: row.seq };
              break;
            }
            this.after = row.seq;
            if (++seen % 256 === 0 && performance.now() > deadline) {
              more = true;
              break;
            }
          }
        } else {
          for (const [seq, prev, hash, text] of this.fast.iterate(this.after)) {
            const kind = w.check(seq, prev, hash, () => this.digest(text));
            if (kind) {
              stop = { kind, seq };
              break;
            }
            this.after = seq;
            if (++seen % 1024 === 0 && performance.now() > deadline) {
              more = true;
              break;
            }
          }
        }
      } catch (err) {
        if (!this.useSlow && (err as { code?: unknown }).code === 'SQLITE_ERROR') {
          this.useSlow = true;
          continue;
        }
        throw err;
      }
      if (!stop) return more ? 'more' : w.finish();
      const row = this.byseq.get(stop.seq)!;
      if (stop.kind === 'hash' && !this.useSlow) {
        // The definition decides: recompute from the row's columns in JavaScript.
        const again = w.check(row.seq, row.prev_hash, row.hash, () => rowHash(row.prev_hash, row, w.key));
        if (!again) {
          this.after = row.seq;
          continue;
        }
        return classify(this.seqOfHash, w, { kind: again, row });
      }
      return classify(this.seqOfHash, w, { kind: stop.kind, row });
    }
  }
}

type ProblemKind = 'unchained' | 'gap' | 'link' | 'hash' | 'anchor';

interface Problem {
  readonly kind: ProblemKind;
  readonly row: AuditRow;
}

/** The state of one pass: the previous row's seq and hash, and how many rows verified. */
class ChainWalker {
  rows = 0;
  prevSeq = 0;
  prevHash = GENESIS_HASH;
  firstSeq: number | null = null;
  readonly key: Buffer | null;
  readonly anchor: Anchor | undefined;
  /** The file says it was written differently from how this verifier checks it. */
  readonly modeMismatch: boolean;

  constructor(
    readonly storedMode: string | null,
    options: VerifyOptions,
  ) {
    this.key = options.hmacKey;
    this.anchor = options.anchor;
    this.modeMismatch = storedMode !== null && storedMode !== 'none' && storedMode !== keyCheck(this.key);
  }

  /**
   * Checks the next row (in seq order) given its recomputed hash; returns what is wrong with it,
   * or null and advances past it.
   */
  check(seq: number, prevHash: string, hash: string, recompute: () => string): ProblemKind | null {
    this.firstSeq ??= seq;
    if (this.storedMode === 'none' || (this.storedMode === null && this.rows === 0 && hash === '' && prevHash === '')) return 'unchained';
    if (seq !== this.prevSeq + 1) return 'gap';
    if (prevHash !== this.prevHash) return 'link';
    if (recompute() !== hash) return 'hash';
    if (this.anchor && seq === this.anchor.seq && !hash.startsWith(this.anchor.hash)) return 'anchor';
    this.rows++;
    this.prevSeq = seq;
    this.prevHash = hash;
    return null;
  }

  /** The verdict once every row has passed. */
  finish(): VerifyResult {
    const last = this.rows > 0 ? { seq: this.prevSeq, hash: this.prevHash } : null;
    if (this.anchor) {
      if (this.anchor.seq > this.prevSeq) {
        return this.fail(
          this.anchor.seq,
          'truncated',
          `the anchor names row ${this.anchor.seq}, but the log ends at ${last ? `row ${last.seq}` : 'no row (it is empty)'}: rows were deleted from the end`,
        );
      }
      if (this.anchor.seq === 0 && !GENESIS_HASH.startsWith(this.anchor.hash)) {
        return this.fail(0, 'anchor-mismatch', 'an anchor at seq 0 must be the genesis hash (64 zeros)');
      }
    }
    if (this.modeMismatch && this.rows > 0) {
      return this.fail(this.firstSeq ?? 1, 'wrong-key', this.metaMismatchDetail(true));
    }
    return { ok: true, rows: this.rows, head: last, mode: this.key ? 'hmac-sha256' : 'sha256' };
  }

  fail(seq: number, reason: VerifyReason, detail: string): VerifyFailure {
    return { ok: false, seq, reason, detail, rows: this.rows };
  }

  /** Why the file's recorded mode and this verifier disagree; `rowsVerified`: the rows hash as this verifier expects. */
  metaMismatchDetail(rowsVerified: boolean): string {
    const stored = this.storedMode ?? '';
    const storedText = stored === 'sha256' ? 'plain SHA-256' : 'HMAC-SHA256';
    const mine = this.key ? 'with the HMAC key given' : 'without an HMAC key';
    if (!rowsVerified) {
      if (stored.startsWith('hmac') && this.key) return 'the log was written with a different HMAC key than the one given';
      if (stored.startsWith('hmac')) return 'the log is HMAC-SHA256: verify it with its key (set audit.hmacKeyEnv and that variable)';
      return `the log is ${storedText}, but it was verified ${mine}`;
    }
    return (
      `audit_meta says the log is ${storedText}${stored.startsWith('hmac') && this.key ? ' with another key' : ''}, ` +
      `but its rows verify ${mine}: the log was rewritten ${this.key ? 'with this key' : 'without the key'} or audit_meta was altered`
    );
  }
}

/**
 * Names the problem a walker stopped at. `seqOfHash` finds the row that has a hash (a query, run
 * only for a broken link, once the walker's cursor is closed).
 */
function classify(seqOfHash: (hash: string) => number | undefined, w: ChainWalker, p: Problem): VerifyFailure {
  const { row } = p;
  const s = row.seq;
  switch (p.kind) {
    case 'unchained':
      return w.fail(s, 'unchained', 'the log was written with audit.hashChain off: its rows carry no hashes and cannot be verified');
    case 'anchor':
      return w.fail(
        s,
        'anchor-mismatch',
        `row ${s} has hash ${row.hash}, not the anchor's ${w.anchor!.hash}: the log was rewritten up to row ${s}`,
      );
    case 'gap': {
      if (s <= w.prevSeq) return w.fail(s, 'modified', `row ${s} has a seq out of order (the chain starts at 1)`);
      const from = w.prevSeq + 1;
      const to = s - 1;
      return w.fail(s, 'missing', from === to ? `row ${from} is missing` : `rows ${from} to ${to} are missing`);
    }
    case 'link': {
      if (row.prev_hash === GENESIS_HASH) {
        return w.fail(s, 'reordered', `row ${s} holds the first entry of the chain (its prev_hash is the genesis): rows were reordered`);
      }
      // Which row does it link to? No index on hash: one scan, paid only on a broken chain.
      const target = seqOfHash(row.prev_hash);
      if (target !== undefined) {
        return w.fail(
          s,
          'reordered',
          `row ${s} links to row ${target}, not to row ${s - 1}: ${target > s ? 'it was moved before a row that preceded it' : 'rows between were moved'}`,
        );
      }
      if (rowHash(w.prevHash, row, w.key) === row.hash) return w.fail(s, 'modified', `row ${s}: its prev_hash column was changed`);
      return w.fail(
        s,
        'missing',
        `row ${s} links to a row that is no longer in the log (rows deleted and the rest renumbered, or row ${s - 1} replaced)`,
      );
    }
    case 'hash': {
      if (w.modeMismatch && w.rows === 0) return w.fail(s, 'wrong-key', w.metaMismatchDetail(false));
      if (w.key && rowHash(row.prev_hash, row, null) === row.hash) {
        return w.fail(
          s,
          'wrong-key',
          `row ${s} is hashed with plain SHA-256, not with the HMAC key: it was written (or rewritten) without the key`,
        );
      }
      const orNoKey = !w.key && w.storedMode === null && w.rows === 0 ? ' (or the log is HMAC-SHA256 and no key was given)' : '';
      return w.fail(s, 'modified', `row ${s} does not match its hash: a column was changed after it was written${orNoKey}`);
    }
  }
}

/** Rows read per query by the streamed verification. */
const STREAM_BATCH = 2_000;

/**
 * The verification on PostgreSQL: rows are read in seq order, a batch at a time (memory stays flat
 * however long the log), and each row's hash is recomputed with `rowHash`, the definition. Rows
 * appended by running replicas meanwhile are verified too. The head the replicas keep
 * (`audit_head`, read first) must be in the log with its hash: a log that ends before it lost rows
 * from its end.
 */
export async function verifyChainStreamed(db: Reader, options: VerifyOptions): Promise<VerifyResult> {
  const mode = (await db.get<{ value: string }>("SELECT value FROM audit_meta WHERE key = 'chain'"))?.value ?? null;
  const head = await db.get<ChainHead>('SELECT seq, hash FROM audit_head WHERE id = 1');
  const w = new ChainWalker(mode, options);
  if (!head) {
    const any = await db.get<{ seq: number }>('SELECT seq FROM audit_log ORDER BY seq LIMIT 1');
    if (any) return w.fail(any.seq, 'modified', 'the audit_head row is gone: the database was altered (a replica refuses to append)');
  }
  let headSeen = head === undefined || head.seq === 0;
  let after = 0;
  for (;;) {
    const rows = await db.all<AuditRow>('SELECT * FROM audit_log WHERE seq > @after ORDER BY seq LIMIT @limit', {
      after,
      limit: STREAM_BATCH,
    });
    for (const row of rows) {
      const kind = w.check(row.seq, row.prev_hash, row.hash, () => rowHash(row.prev_hash, row, w.key));
      if (kind) {
        const target =
          kind === 'link' && row.prev_hash !== GENESIS_HASH
            ? (await db.get<{ seq: number }>('SELECT seq FROM audit_log WHERE hash = @hash LIMIT 1', { hash: row.prev_hash }))?.seq
            : undefined;
        return classify(() => target, w, { kind, row });
      }
      if (head && row.seq === head.seq) {
        if (row.hash !== head.hash) {
          return w.fail(
            row.seq,
            'modified',
            `row ${row.seq} is not the row audit_head recorded (hash ${head.hash}): the log was rewritten`,
          );
        }
        headSeen = true;
      }
      after = row.seq;
    }
    if (rows.length < STREAM_BATCH) break;
    await yieldToLoop();
  }
  if (!headSeen && head) {
    return w.fail(
      head.seq,
      'truncated',
      `audit_head records row ${head.seq}, but the log ends at ${w.rows > 0 ? `row ${w.prevSeq}` : 'no row (it is empty)'}: rows were deleted from the end`,
    );
  }
  return w.finish();
}

/** The last row's seq and hash on either engine (`audit head`). */
export async function chainHeadOf(db: Reader): Promise<ChainHead> {
  const row = await db.get<ChainHead>('SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1');
  return row ?? { seq: 0, hash: GENESIS_HASH };
}
