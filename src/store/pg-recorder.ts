/**
 * The recorder on PostgreSQL. One commit at a time per process: the rows of every request that
 * ends while a commit is in flight wait for the next one and share it (group commit), so a replica
 * pays one round of transaction, lock and fsync for many calls. Each commit locks the chain head
 * (`audit_head`, FOR UPDATE), which serialises appends from all replicas into one gapless chain,
 * inserts its rows and the usage counters, moves the head, and commits; only then do the replies
 * of those requests go out.
 *
 * When the database goes away, the commit is tried again (with backoff) for up to a
 * `retryWindowMs`: the records of requests already forwarded are kept and written once it is back,
 * and new requests are refused (`canAccept`) meanwhile. A commit whose outcome is unknown (the
 * connection broke during COMMIT) is not written twice: the next attempt finds its last row by
 * seq and hash.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { chainRow, storable, type AuditDraft, type ChainOptions } from '../audit/store.js';
import type { Logger } from '../log.js';
import type { UsageDelta } from '../metering/store.js';
import type { PgDatabase } from './pg.js';
import { isConnectionError } from './pg.js';
import { UsageBuffer, type Recorder, type UsageSum } from './recorder.js';

interface Entry {
  readonly audit: AuditDraft;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

/** Rows in one commit at most (19 parameters each, under PostgreSQL's 65,535). */
const MAX_BATCH = 1_000;
/** Usage rows in one statement at most (11 parameters each). */
const USAGE_CHUNK = 2_000;
const USAGE_FLUSH_MS = 1_000;
const PROBE_INTERVAL_MS = 1_000;
/** How often an idle recorder checks that the database answers. */
const HEALTH_INTERVAL_MS = 2_000;

const AUDIT_COLUMNS =
  'seq, ts, consumer_id, key_id, auth_method, roles, server, kind, name, arguments, result, status, error, latency_ms, decided_by, method, meta, prev_hash, hash';
const USAGE_COLUMNS = 'hour, consumer_id, server, tool, calls, errors, denied, rate_limited, latency_sum_ms, latency_max_ms, cost';
const USAGE_CONFLICT = `ON CONFLICT (hour, consumer_id, server, tool) DO UPDATE SET
  calls = usage_hourly.calls + excluded.calls,
  errors = usage_hourly.errors + excluded.errors,
  denied = usage_hourly.denied + excluded.denied,
  rate_limited = usage_hourly.rate_limited + excluded.rate_limited,
  latency_sum_ms = usage_hourly.latency_sum_ms + excluded.latency_sum_ms,
  latency_max_ms = greatest(usage_hourly.latency_max_ms, excluded.latency_max_ms),
  cost = usage_hourly.cost + excluded.cost`;

export interface PgRecorderOptions {
  /** The audit chain, or null when audit is off (usage only). */
  readonly chain: ChainOptions | null;
  readonly meterUsage: boolean;
  /** How long records of forwarded requests wait for an unreachable database (ms). */
  readonly retryWindowMs?: number;
}

/** Where a commit that may have landed left the chain: its last row. */
interface Attempt {
  seq: number;
  hash: string;
}

export class PgRecorder implements Recorder {
  onCommit: ((seconds: number) => void) | undefined;
  private queue: Entry[] = [];
  private running = false;
  private readonly usage = new UsageBuffer();
  private usageDue = false;
  private usageTimer: NodeJS.Timeout | null = null;
  private degraded: { since: number; reason: string } | null = null;
  private lastProbe = 0;
  private probing = false;
  private idle: (() => void)[] = [];
  /** The head as this recorder last wrote it (or read it under the lock): where the next rows go. */
  private known: { seq: number; hash: string } | undefined;
  private readonly retryWindowMs: number;

  constructor(
    private readonly db: PgDatabase,
    private readonly options: PgRecorderOptions,
    private readonly log: Logger,
  ) {
    this.retryWindowMs = options.retryWindowMs ?? 30_000;
    // A database that went away is noticed between requests too: new requests are refused at
    // once (not after a failed commit) and /readyz says so.
    this.health = setInterval(() => this.ping(), HEALTH_INTERVAL_MS);
    this.health.unref();
  }

  private readonly health: NodeJS.Timeout;

  private ping(): void {
    if (this.probing || this.running) return;
    this.probing = true;
    this.lastProbe = Date.now();
    this.db
      .query('SELECT 1')
      .then(
        () => this.recovered(),
        (err: Error) => this.degrade(err),
      )
      .finally(() => (this.probing = false));
  }

  get refusal(): string | null {
    return this.degraded?.reason ?? null;
  }

  canAccept(now = Date.now()): boolean {
    if (!this.degraded) return true;
    // Retries of queued records say when the database is back; with none queued, a probe does.
    if (now - this.lastProbe >= PROBE_INTERVAL_MS) this.ping();
    return false;
  }

  audit(draft: AuditDraft): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ audit: draft, resolve, reject });
      this.kick();
    });
  }

  addUsage(delta: UsageDelta): void {
    if (!this.options.meterUsage) return;
    this.usage.add(delta);
    if (!this.usageTimer) {
      this.usageTimer = setTimeout(() => {
        this.usageTimer = null;
        this.usageDue = true;
        this.kick();
      }, USAGE_FLUSH_MS);
      this.usageTimer.unref();
    }
  }

  async flush(withUsage = false): Promise<void> {
    if (withUsage && this.usage.size > 0) this.usageDue = true;
    this.kick();
    if (this.running) await new Promise<void>((resolve) => this.idle.push(resolve));
  }

  async close(): Promise<void> {
    clearInterval(this.health);
    if (this.usageTimer) clearTimeout(this.usageTimer);
    this.usageTimer = null;
    await this.flush(true);
  }

  private kick(): void {
    if (this.running) return;
    if (this.queue.length === 0 && !(this.usageDue && this.usage.size > 0)) return;
    this.running = true;
    // After the promise chains of the current input settle: everything that ended with it shares one commit.
    process.nextTick(() => void this.run());
  }

  private async run(): Promise<void> {
    try {
      while (this.queue.length > 0 || (this.usageDue && this.usage.size > 0)) {
        const entries = this.queue.splice(0, MAX_BATCH);
        let usage: UsageSum[] = [];
        if (this.usageDue || this.usage.size > 64) {
          this.usageDue = false;
          if (this.usageTimer) clearTimeout(this.usageTimer);
          this.usageTimer = null;
          usage = this.usage.take();
        }
        await this.commitWithRetry(entries, usage);
      }
    } finally {
      this.running = false;
      for (const resolve of this.idle.splice(0)) resolve();
    }
  }

  private async commitWithRetry(entries: readonly Entry[], usage: readonly UsageSum[]): Promise<void> {
    const started = Date.now();
    let delay = 100;
    const attempt: Attempt = { seq: 0, hash: '' };
    let maybeLanded = false;
    for (;;) {
      try {
        const t0 = performance.now();
        await this.commit(entries, usage, attempt, maybeLanded);
        this.onCommit?.((performance.now() - t0) / 1000);
        this.recovered();
        for (const e of entries) e.resolve();
        return;
      } catch (err) {
        this.degrade(err as Error);
        const transient = isConnectionError(err);
        maybeLanded ||= transient && attempt.seq > 0;
        if (!transient || Date.now() - started + delay > this.retryWindowMs) {
          for (const e of entries) e.reject(err as Error);
          // Counters are kept for the next commit when the database was away; ones it refused
          // would fail every later commit with them, so they are dropped (and said so).
          if (transient) for (const u of usage) this.usage.add(u);
          else if (usage.length > 0)
            this.log.error(`dropped ${usage.length} usage counters the database refused (${(err as Error).message})`);
          return;
        }
        await sleep(delay);
        delay = Math.min(delay * 2, 2_000);
      }
    }
  }

  /**
   * Writes the rows after the head and moves it, with the usage counters, atomically. The usual
   * way is one statement (one round trip, no wait for a lock): the rows are chained after the head
   * this recorder last wrote, and the statement moves the head only if it is still that one. When
   * another replica appended meanwhile (or this recorder knows no head yet, or an earlier attempt
   * may have landed), a transaction locks the head, reads it and appends after it.
   */
  private async commit(entries: readonly Entry[], usage: readonly UsageSum[], attempt: Attempt, maybeLanded: boolean): Promise<void> {
    const chain = this.options.chain;
    const appending = chain !== null && entries.length > 0;
    if (!appending && usage.length <= USAGE_CHUNK) {
      const values: unknown[] = [];
      if (usage.length > 0) await this.db.query(usageInsert(usage, values, false), values);
      return;
    }
    if (chain && appending && this.known && !maybeLanded && usage.length <= USAGE_CHUNK) {
      const values: unknown[] = [];
      const rows = this.chainRows(entries, this.known, chain, values, attempt);
      const [from, to] = [values.length + 1, values.length + 3];
      values.push(this.known.seq, this.known.hash, attempt.seq, attempt.hash);
      const sql =
        `WITH h AS (UPDATE audit_head SET seq = $${to}, hash = $${to + 1} WHERE id = 1 AND seq = $${from} AND hash = $${from + 1} RETURNING 1), ` +
        `a AS (INSERT INTO audit_log (${AUDIT_COLUMNS}) SELECT * FROM (VALUES ${rows}) AS v WHERE EXISTS (SELECT 1 FROM h))` +
        (usage.length > 0 ? `, u AS (${usageInsert(usage, values, true)})` : '') +
        ' SELECT count(*)::int AS n FROM h';
      // Prepared once per connection for the common shapes (a few rows, no usage): not planned per call.
      const name = usage.length === 0 && entries.length <= 8 ? `mcp_gateway_append_${entries.length}` : undefined;
      const moved = (await this.db.pool.query<{ n: number }>({ text: sql, values, ...(name ? { name } : {}) })).rows[0]?.n === 1;
      if (moved) {
        this.known = { seq: attempt.seq, hash: attempt.hash };
        return;
      }
      this.known = undefined; // another replica appended: read the head under its lock
    }
    // The head is locked in the round trip that begins the transaction.
    const lockHead = appending ? 'SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE' : undefined;
    await this.db.transaction(async (client, headRows) => {
      let values: unknown[] = [];
      const statements: string[] = [];
      if (chain && appending) {
        const head = headRows[0] as { seq: number; hash: string } | undefined;
        if (!head) throw new Error('audit_head has no row: the database was altered');
        if (maybeLanded && head.seq >= attempt.seq) {
          const landed = await client.query<{ hash: string }>('SELECT hash FROM audit_log WHERE seq = $1', [attempt.seq]);
          if (landed.rows[0]?.hash === attempt.hash) return; // the earlier attempt went through
        }
        const rows = this.chainRows(entries, head, chain, values, attempt);
        statements.push(`a AS (INSERT INTO audit_log (${AUDIT_COLUMNS}) VALUES ${rows})`);
        statements.push(`h AS (UPDATE audit_head SET seq = $${values.length + 1}, hash = $${values.length + 2} WHERE id = 1)`);
        values.push(attempt.seq, attempt.hash);
      }
      // The rows, the head and the first usage rows in one statement.
      const first = usage.slice(0, USAGE_CHUNK);
      if (first.length > 0 || statements.length > 0) {
        const tail = first.length > 0 ? usageInsert(first, values, false) : 'SELECT 1';
        await client.query(statements.length > 0 ? `WITH ${statements.join(', ')} ${tail}` : tail, values);
      }
      for (let i = USAGE_CHUNK; i < usage.length; i += USAGE_CHUNK) {
        values = [];
        await client.query(usageInsert(usage.slice(i, i + USAGE_CHUNK), values, false), values);
      }
    }, lockHead);
    if (appending) this.known = { seq: attempt.seq, hash: attempt.hash };
  }

  /**
   * The entries chained after `head`: their VALUES list (parameters appended to `values`), and the
   * new head in `attempt`.
   */
  private chainRows(
    entries: readonly Entry[],
    head: { seq: number; hash: string },
    chain: ChainOptions,
    values: unknown[],
    attempt: Attempt,
  ): string {
    let seq = head.seq;
    let prev = head.hash;
    const rows: string[] = [];
    for (const e of entries) {
      seq++;
      const row = chainRow(storable(e.audit, true), seq, prev, chain);
      rows.push(placeholders(values, row.values, AUDIT_TYPES));
      prev = row.hash;
    }
    attempt.seq = seq;
    attempt.hash = prev;
    return rows.join(', ');
  }

  private degrade(err: Error): void {
    if (this.degraded) return;
    this.degraded = { since: Date.now(), reason: `cannot write the audit database: ${err.message}` };
    this.lastProbe = Date.now();
    this.log.error(`cannot write the database (${err.message}); refusing new requests until it can`);
  }

  private recovered(): void {
    if (!this.degraded) return;
    this.log.warn(`the database is writable again after ${Math.round((Date.now() - this.degraded.since) / 1000)} s; accepting requests`);
    this.degraded = null;
  }
}

/** Text as PostgreSQL can hold it: U+0000 (which an agent can put in a tool name) becomes U+FFFD. */
function pgText(text: string): string {
  return text.includes('\u0000') ? text.replaceAll('\u0000', '\uFFFD') : text;
}

/**
 * `($n::type, …)` for one row, its values appended to `values`. The types are written out: in a
 * VALUES list under SELECT, PostgreSQL would not take them from the target columns.
 */
function placeholders(values: unknown[], row: readonly unknown[], types: readonly string[]): string {
  const base = values.length;
  values.push(...row);
  return `(${row.map((_, i) => `$${base + i + 1}::${types[i]}`).join(', ')})`;
}

/** The types of audit_log's columns, in AUDIT_COLUMNS order. */
const AUDIT_TYPES = AUDIT_COLUMNS.split(', ').map((c) => (c === 'seq' || c === 'latency_ms' ? 'bigint' : 'text'));
/** The types of usage_hourly's columns, in USAGE_COLUMNS order. */
const USAGE_TYPES = ['text', 'text', 'text', 'text', 'bigint', 'bigint', 'bigint', 'bigint', 'float8', 'float8', 'float8'];

/**
 * An INSERT … ON CONFLICT of usage rows, its values appended to `values`; `guarded`: only if the
 * statement's `h` (the head moved) returned a row.
 */
function usageInsert(usage: readonly UsageSum[], values: unknown[], guarded: boolean): string {
  const rows = usage
    .map((u) =>
      placeholders(
        values,
        [
          u.hour,
          pgText(u.consumer_id),
          pgText(u.server),
          pgText(u.tool),
          u.calls,
          u.errors,
          u.denied,
          u.rate_limited,
          u.latency_ms,
          u.latency_max_ms,
          u.cost,
        ],
        USAGE_TYPES,
      ),
    )
    .join(', ');
  const source = guarded ? `SELECT * FROM (VALUES ${rows}) AS v WHERE EXISTS (SELECT 1 FROM h)` : `VALUES ${rows}`;
  return `INSERT INTO usage_hourly (${USAGE_COLUMNS}) ${source} ${USAGE_CONFLICT}`;
}
