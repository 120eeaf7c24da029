/** The usage report (design §7) that `mcp-gateway usage` and the `usage` gateway tool present. */
import { HOUR_MS, hourCeil, hourFloor, type UsageGroup, type UsageRow, usageQuery } from './store.js';
import type { Reader } from '../store/sql.js';

/**
 * How `usage` groups: by consumer, by server, or by tool (a tool is always shown with its server,
 * since two servers may have tools of the same name).
 */
export type UsageBy = 'consumer' | 'server' | 'tool';

/** Every value `--by` takes. */
export const USAGE_GROUPS: readonly UsageBy[] = ['consumer', 'server', 'tool'];

/** One line of the usage report: the group's keys (those grouped by) and its totals. */
export interface UsageReportRow {
  readonly consumer?: string;
  readonly server?: string;
  readonly tool?: string;
  readonly calls: number;
  readonly errors: number;
  readonly denied: number;
  readonly rate_limited: number;
  /** latency_sum / calls, never above max_latency_ms; to 0.01 ms. Null without calls. */
  readonly avg_latency_ms: number | null;
  /** Largest single latency, to 0.01 ms. Null without calls. */
  readonly max_latency_ms: number | null;
  /** To 6 decimals. */
  readonly cost: number;
}

/** The usage report: the range counted, the query, its rows, and their total. */
export interface UsageReport {
  /** Counters are kept per UTC hour: the report always covers whole hours. */
  readonly bucket: 'hour';
  /**
   * Start of the first hour counted (ISO): the hour `since` falls inside, or without `since` the
   * first hour that has counters (null when none has).
   */
  readonly from: string | null;
  /**
   * End of the last hour counted (ISO): the end of the hour `until` falls inside (`until` itself
   * when it starts an hour), or without `until` the end of the current hour (or of a later hour
   * that has counters).
   */
  readonly to: string;
  /** The instants asked for (ISO), before snapping to hours. */
  readonly since: string | null;
  readonly until: string | null;
  readonly consumerId: string | null;
  readonly by: UsageBy;
  readonly rows: readonly UsageReportRow[];
  readonly total: UsageReportRow;
}

/** Milliseconds as reported: to 0.01 ms. */
export function roundMs(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/** Cost as reported: to 6 decimals. */
export function roundCost(cost: number): number {
  return Math.round(cost * 1e6) / 1e6;
}

type Sums = Pick<UsageRow, 'calls' | 'errors' | 'denied' | 'rate_limited' | 'latency_sum_ms' | 'latency_max_ms' | 'cost'>;

/**
 * The totals of one row, rounded once from the unrounded sums. The average is capped at the
 * maximum: a sum of floating-point latencies can come out a little above calls × max (three
 * calls of 1.655 ms sum to 4.965, whose third rounds to 1.66 while the max rounds to 1.65), and
 * rounding the two alike keeps avg ≤ max (rounding is monotonic).
 */
function totals(r: Sums): Omit<UsageReportRow, UsageGroup> {
  return {
    calls: r.calls,
    errors: r.errors,
    denied: r.denied,
    rate_limited: r.rate_limited,
    avg_latency_ms: r.calls > 0 ? roundMs(Math.min(r.latency_sum_ms / r.calls, r.latency_max_ms)) : null,
    max_latency_ms: r.calls > 0 ? roundMs(r.latency_max_ms) : null,
    cost: roundCost(r.cost),
  };
}

/**
 * Usage totals for the `usage` command and tool (design §7), grouped as asked, with a total.
 * It reads usage_hourly through UsageStore. Counters are per UTC hour, so the range counted is
 * `since` and `until` snapped outwards to whole hours (`from`, `to`): an hour either of them falls
 * inside is counted whole. The CLI and the gateway tool both present it.
 */
export async function usageReport(
  store: Reader,
  q: { since?: string | undefined; until?: string | undefined; consumerId?: string | undefined; by: UsageBy; now?: number },
): Promise<UsageReport> {
  const group: UsageGroup[] = q.by === 'tool' ? ['server', 'tool'] : [q.by];
  const rows = await usageQuery(store, { since: q.since, until: q.until, consumerId: q.consumerId, by: group });
  const total: { -readonly [K in keyof Sums]: Sums[K] } = {
    calls: 0,
    errors: 0,
    denied: 0,
    rate_limited: 0,
    latency_sum_ms: 0,
    latency_max_ms: 0,
    cost: 0,
  };
  let first: string | null = null;
  let last: string | null = null;
  for (const r of rows) {
    total.calls += r.calls;
    total.errors += r.errors;
    total.denied += r.denied;
    total.rate_limited += r.rate_limited;
    total.latency_sum_ms += r.latency_sum_ms;
    total.latency_max_ms = Math.max(total.latency_max_ms, r.latency_max_ms);
    total.cost += r.cost;
    if (first === null || r.first_hour < first) first = r.first_hour;
    if (last === null || r.last_hour > last) last = r.last_hour;
  }
  const now = q.now ?? Date.now();
  const from = q.since !== undefined ? hourFloor(q.since) : first === null ? null : Date.parse(first);
  const to =
    q.until !== undefined
      ? hourCeil(q.until)
      : Math.max(Math.floor(now / HOUR_MS) * HOUR_MS + HOUR_MS, last === null ? 0 : Date.parse(last) + HOUR_MS);
  return {
    bucket: 'hour',
    from: from === null ? null : new Date(from).toISOString(),
    to: new Date(to).toISOString(),
    since: q.since ?? null,
    until: q.until ?? null,
    consumerId: q.consumerId ?? null,
    by: q.by,
    rows: rows.map((r) => ({
      ...(group.includes('consumer') ? { consumer: r.consumer_id } : {}),
      ...(group.includes('server') ? { server: r.server } : {}),
      ...(group.includes('tool') ? { tool: r.tool } : {}),
      ...totals(r),
    })),
    total: totals(total),
  };
}
