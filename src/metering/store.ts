/**
 * Usage counters (design §7): per consumer, server, tool and hour. Written in the same
 * transaction as the audit rows of the same requests.
 */
import type { Db } from '../store/db.js';
import type { Reader } from '../store/sql.js';

/** What a usage row counts, for one consumer, server and tool. */
interface UsageCounts {
  readonly consumer_id: string;
  readonly server: string;
  readonly tool: string;
  readonly calls: number;
  readonly errors: number;
  readonly denied: number;
  readonly rate_limited: number;
  readonly cost: number;
}

/** One request's (or several requests') contribution to a usage row. */
export interface UsageDelta extends UsageCounts {
  readonly hour: string;
  /** Sum of the latencies. */
  readonly latency_ms: number;
  /** Largest single latency (defaults to latency_ms for one request). */
  readonly latency_max_ms?: number;
}

/** A usage row as reported (summed over the hours of a range). */
export interface UsageRow extends UsageCounts {
  /** Sum of the latencies, unrounded. */
  readonly latency_sum_ms: number;
  /** Largest single latency, unrounded. */
  readonly latency_max_ms: number;
  /** Start of the first and of the last hour with counters in this row (as stored). */
  readonly first_hour: string;
  readonly last_hour: string;
}

export type UsageGroup = 'consumer' | 'server' | 'tool';

export interface UsageQuery {
  readonly since?: string | undefined;
  readonly until?: string | undefined;
  readonly consumerId?: string | undefined;
  readonly by: readonly UsageGroup[];
}

/** Writes usage counters into the SQLite file (inside the recorder's transaction). */
export class UsageStore {
  private readonly upsert;

  constructor(db: Db) {
    this.upsert = db.prepare<Required<UsageDelta>>(
      `INSERT INTO usage_hourly (hour, consumer_id, server, tool, calls, errors, denied, rate_limited, latency_sum_ms, latency_max_ms, cost)
       VALUES (@hour, @consumer_id, @server, @tool, @calls, @errors, @denied, @rate_limited, @latency_ms, @latency_max_ms, @cost)
       ON CONFLICT (hour, consumer_id, server, tool) DO UPDATE SET
         calls = calls + excluded.calls,
         errors = errors + excluded.errors,
         denied = denied + excluded.denied,
         rate_limited = rate_limited + excluded.rate_limited,
         latency_sum_ms = latency_sum_ms + excluded.latency_sum_ms,
         latency_max_ms = max(latency_max_ms, excluded.latency_max_ms),
         cost = cost + excluded.cost`,
    );
  }

  /** Adds deltas; call inside the recorder's transaction. */
  addInTransaction(deltas: readonly UsageDelta[]): void {
    for (const d of deltas) this.upsert.run({ ...d, latency_max_ms: d.latency_max_ms ?? d.latency_ms });
  }
}

/**
 * Totals over whole hours, grouped by the given columns (empty: one total row): the hours from
 * `hourFloor(since)` to `hourCeil(until)`, so an hour that `since` or `until` falls inside is
 * counted whole.
 */
export async function usageQuery(db: Reader, q: UsageQuery): Promise<UsageRow[]> {
  const where: string[] = [];
  const params: Record<string, string> = {};
  if (q.since) {
    where.push('hour >= @since');
    params['since'] = hourOf(new Date(q.since));
  }
  if (q.until) {
    // Snapped up to the hour's end in the stored form: compared as text, a raw instant such as
    // 10:00:00.500Z sorts before the stored "10:00:00Z" and would leave out the hour it is in.
    where.push('hour < @until');
    params['until'] = hourOf(new Date(hourCeil(q.until)));
  }
  if (q.consumerId) {
    where.push('consumer_id = @consumer');
    params['consumer'] = q.consumerId;
  }
  const columns = { consumer: 'consumer_id', server: 'server', tool: 'tool' } as const;
  const group = q.by.map((g) => columns[g]);
  const select = (['consumer_id', 'server', 'tool'] as const).map((c) => (group.includes(c) ? c : `'*' AS ${c}`));
  const sql = `SELECT ${select.join(', ')},
      sum(calls) AS calls, sum(errors) AS errors, sum(denied) AS denied, sum(rate_limited) AS rate_limited,
      sum(latency_sum_ms) AS latency_sum_ms, max(latency_max_ms) AS latency_max_ms, sum(cost) AS cost,
      min(hour) AS first_hour, max(hour) AS last_hour
    FROM usage_hourly ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
    ${group.length ? `GROUP BY ${group.join(', ')} ORDER BY ${group.join(', ')}` : ''}`;
  const rows = (await db.all<UsageRow>(sql, params)).filter((r) => r.calls !== null);
  // Ordered here, by code unit, the same on both engines (a PostgreSQL collation may order otherwise).
  const key = (r: UsageRow) => group.map((c) => r[c as 'consumer_id' | 'server' | 'tool']).join('\u0000');
  return rows.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

/** The length of a usage bucket. */
export const HOUR_MS = 3_600_000;

/** Start (epoch ms) of the UTC hour that the instant `iso` falls inside. */
export function hourFloor(iso: string): number {
  return Math.floor(Date.parse(iso) / HOUR_MS) * HOUR_MS;
}

/** End (epoch ms) of the UTC hour that `iso` falls inside; `iso` itself when it starts an hour. */
export function hourCeil(iso: string): number {
  return Math.ceil(Date.parse(iso) / HOUR_MS) * HOUR_MS;
}

let cachedHour = -1;
let cachedHourText = '';

/** Start of the UTC hour of `d`, as stored in `usage_hourly.hour` (the last one is cached). */
export function hourOf(d: Date): string {
  const hour = Math.floor(d.getTime() / HOUR_MS);
  if (hour !== cachedHour) {
    cachedHour = hour;
    cachedHourText = `${new Date(hour * HOUR_MS).toISOString().slice(0, 13)}:00:00Z`;
  }
  return cachedHourText;
}
