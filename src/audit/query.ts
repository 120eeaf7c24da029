/**
 * Reading the audit log (`audit log`, `audit stats`, the audit_log and audit_stats tools).
 *
 * audit_log has no secondary index on purpose (each one is a page written on every call), so every
 * query walks seq, the rowid. Time bounds become a seq bound first: rows are appended in the order
 * their requests end, so `ts + latency_ms` (when a request ended) grows with seq, give or take
 * SKEW_MS (clocks of several gateway processes, rows committed together). A binary search over seq
 * finds the first row that can be inside `since`, and SQLite scans backwards from the newest row
 * and stops at `limit`.
 */
import type { Reader } from '../store/sql.js';
import type { AuditStatus } from '../errors.js';
import type { AuditRow } from './chain.js';

/** How far out of order (by end time) rows may be appended. */
export const SKEW_MS = 60_000;

/** Rows `audit log` returns when no limit is given. */
export const DEFAULT_LIMIT = 50;

/** Every status a row can have (design §6). */
export const AUDIT_STATUSES: readonly AuditStatus[] = [
  'ok',
  'error',
  'denied',
  'rate_limited',
  'unauthenticated',
  'invalid',
  'timeout',
  'unavailable',
  'cancelled',
];

/** A time range over `ts`: since inclusive, until exclusive, both ISO 8601 UTC (as `ts` is stored). */
export interface TimeRange {
  readonly since?: string | undefined;
  readonly until?: string | undefined;
}

/** The filters of `audit log`; every one given must match. */
export interface AuditFilters extends TimeRange {
  /** Most rows returned, newest first (default 50). */
  readonly limit?: number | undefined;
  readonly consumer?: string | undefined;
  readonly server?: string | undefined;
  /** The `name` column: a tool or prompt name, or a resource URI. */
  readonly tool?: string | undefined;
  readonly status?: string | undefined;
}

/** The rows matching every filter, newest first, at most `limit`. */
export async function auditLog(db: Reader, filters: AuditFilters): Promise<AuditRow[]> {
  const limit = filters.limit ?? DEFAULT_LIMIT;
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`limit must be a positive integer, not ${limit}`);
  const { where, params } = await rangeWhere(db, filters);
  const eq = { consumer: 'consumer_id', server: 'server', tool: 'name', status: 'status' } as const;
  for (const [field, column] of Object.entries(eq) as [keyof typeof eq, string][]) {
    const value = filters[field];
    if (value === undefined) continue;
    where.push(`${column} = @${field}`);
    params[field] = value;
  }
  params['limit'] = limit;
  return db.all<AuditRow>(`SELECT * FROM audit_log WHERE ${where.join(' AND ')} ORDER BY seq DESC LIMIT @limit`, params);
}

/** What `audit stats` reports over a time range. */
export interface AuditStats {
  readonly since: string | null;
  readonly until: string | null;
  readonly total: number;
  readonly byStatus: readonly { status: string; count: number }[];
  readonly byServer: readonly { server: string | null; count: number }[];
  readonly byConsumer: readonly { consumer: string | null; count: number }[];
  /** Nearest-rank percentiles of latency_ms; null when there are no rows. */
  readonly latencyMs: {
    readonly p50: number | null;
    readonly p95: number | null;
    readonly max: number | null;
    readonly avg: number | null;
  };
}

/**
 * Counts by status, server and consumer, and latency percentiles, over a time range. Two scans of
 * the range in SQLite; JavaScript sees only the groups and one row per distinct latency.
 */
export async function auditStats(db: Reader, range: TimeRange): Promise<AuditStats> {
  const { where, params } = await rangeWhere(db, range);
  const clause = where.join(' AND ');
  const groups = await db.all<{ status: string; server: string | null; consumer_id: string | null; n: number; sum: number; max: number }>(
    `SELECT status, server, consumer_id, count(*) AS n, sum(latency_ms) AS sum, max(latency_ms) AS max
     FROM audit_log WHERE ${clause} GROUP BY status, server, consumer_id`,
    params,
  );

  const byStatus = new Map<string, number>();
  const byServer = new Map<string | null, number>();
  const byConsumer = new Map<string | null, number>();
  let total = 0;
  let sum = 0;
  let max: number | null = null;
  for (const g of groups) {
    total += g.n;
    sum += g.sum;
    max = max === null ? g.max : Math.max(max, g.max);
    byStatus.set(g.status, (byStatus.get(g.status) ?? 0) + g.n);
    byServer.set(g.server, (byServer.get(g.server) ?? 0) + g.n);
    byConsumer.set(g.consumer_id, (byConsumer.get(g.consumer_id) ?? 0) + g.n);
  }

  // Percentiles from the histogram of latencies (milliseconds: few distinct values), walked in order.
  const ranks = [Math.ceil(0.5 * total), Math.ceil(0.95 * total)];
  const found: (number | null)[] = [null, null];
  if (total > 0) {
    let seen = 0;
    let i = 0;
    const histogram = db.iterate<{ v: number; n: number }>(
      `SELECT latency_ms AS v, count(*) AS n FROM audit_log WHERE ${clause} GROUP BY latency_ms ORDER BY latency_ms`,
      params,
    );
    for await (const { v, n } of histogram) {
      seen += n;
      while (i < ranks.length && seen >= ranks[i]!) found[i++] = v;
      if (i === ranks.length) break;
    }
  }

  const sorted = <K extends string>(m: Map<string | null, number>, name: K) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1] || String(a[0]).localeCompare(String(b[0])))
      .map(([key, count]) => ({ [name]: key, count }) as { [P in K]: string | null } & { count: number });
  return {
    since: range.since ?? null,
    until: range.until ?? null,
    total,
    byStatus: sorted(byStatus, 'status') as { status: string; count: number }[],
    byServer: sorted(byServer, 'server'),
    byConsumer: sorted(byConsumer, 'consumer'),
    latencyMs: { p50: found[0] ?? null, p95: found[1] ?? null, max, avg: total > 0 ? Math.round((sum / total) * 10) / 10 : null },
  };
}

/**
 * The WHERE terms (and named parameters) for a time range: a seq bound from `seqFloor` so the scan
 * starts near `since`, plus the exact ts comparisons. Always at least one term.
 */
export async function rangeWhere(db: Reader, range: TimeRange): Promise<{ where: string[]; params: Record<string, string | number> }> {
  const where: string[] = [];
  const params: Record<string, string | number> = {};
  if (range.since !== undefined) {
    where.push('seq >= @fromSeq', 'ts >= @since');
    params['fromSeq'] = await seqFloor(db, range.since);
    params['since'] = range.since;
  }
  if (range.until !== undefined) {
    where.push('ts < @until');
    params['until'] = range.until;
  }
  if (where.length === 0) where.push('TRUE');
  return { where, params };
}

/**
 * A seq below which no row has `ts >= since`, found in O(log n) point reads. If a row ended
 * (ts + latency_ms) more than SKEW_MS before `since`, every row appended before it started before
 * `since`. An until bound has no such shortcut (a long request appended late can start early), so
 * `until` filters without cutting the scan.
 */
export async function seqFloor(db: Reader, since: string): Promise<number> {
  const bounds = await db.get<{ lo: number | null; hi: number | null }>('SELECT min(seq) AS lo, max(seq) AS hi FROM audit_log');
  if (!bounds || bounds.lo === null || bounds.hi === null) return 0;
  const probe = (seq: number) =>
    db.get<{ seq: number; ts: string; latency_ms: number }>(
      'SELECT seq, ts, latency_ms FROM audit_log WHERE seq >= @seq ORDER BY seq LIMIT 1',
      {
        seq,
      },
    );
  const limit = Date.parse(since) - SKEW_MS;
  if (Number.isNaN(limit)) return bounds.lo;
  let lo = bounds.lo;
  let hi = bounds.hi + 1;
  while (lo < hi) {
    const mid = lo + Math.floor((hi - lo) / 2);
    const row = await probe(mid);
    if (!row) break;
    // A row whose ts does not parse (tampered) counts as "maybe inside": the search moves left.
    if (Date.parse(row.ts) + row.latency_ms < limit) lo = row.seq + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * A row for people and models: roles, arguments and result parsed from their JSON text (kept as
 * text when it does not parse).
 */
export function presentRow(row: AuditRow): Record<string, unknown> {
  const parse = (text: string | null): unknown => {
    if (text === null) return null;
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return text;
    }
  };
  return { ...row, roles: parse(row.roles), arguments: parse(row.arguments), result: parse(row.result) };
}

const DURATION = /^(\d+(?:\.\d+)?)\s*([smhdw])$/;
const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * An instant given to a gateway tool: an ISO 8601 date or date-time, or a duration ago (`24h`,
 * `7d`). Returns ISO 8601 UTC with milliseconds (as `ts` is stored), or null when it is neither.
 */
export function instantOf(text: string, now = Date.now()): string | null {
  const d = DURATION.exec(text.trim());
  if (d) return new Date(now - Number(d[1]) * UNIT_MS[d[2]!]!).toISOString();
  const t = Date.parse(text);
  return Number.isNaN(t) ? null : new Date(t).toISOString();
}
