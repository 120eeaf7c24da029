/** The usage report (design §7) that `mcp-gateway usage` and the `usage` gateway tool present. */
import type { UsageGroup, UsageRow, UsageStore } from './store.js';

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
  readonly avg_latency_ms: number | null;
  readonly max_latency_ms: number | null;
  readonly cost: number;
}

/** The usage report: the query, its rows, and their total. */
export interface UsageReport {
  readonly since: string | null;
  readonly until: string | null;
  readonly consumerId: string | null;
  readonly by: UsageBy;
  readonly rows: readonly UsageReportRow[];
  readonly total: UsageReportRow;
}

/**
 * Usage totals for the `usage` command and tool (design §7), grouped as asked, with a total.
 * It reads usage_hourly (whole hours: `since` is rounded down to its hour) through UsageStore; the
 * CLI and the gateway tool both present it.
 */
export function usageReport(
  store: UsageStore,
  q: { since?: string | undefined; until?: string | undefined; consumerId?: string | undefined; by: UsageBy },
): UsageReport {
  const group: UsageGroup[] = q.by === 'tool' ? ['server', 'tool'] : [q.by];
  const rows = store.query({ since: q.since, until: q.until, consumerId: q.consumerId, by: group });
  const shape = (
    r: Omit<UsageRow, 'consumer_id' | 'server' | 'tool'>,
    keys: Partial<Record<'consumer' | 'server' | 'tool', string>>,
  ): UsageReportRow => ({
    ...keys,
    calls: r.calls,
    errors: r.errors,
    denied: r.denied,
    rate_limited: r.rate_limited,
    avg_latency_ms: r.calls > 0 ? Math.round((r.latency_sum_ms / r.calls) * 10) / 10 : null,
    max_latency_ms: r.calls > 0 ? r.latency_max_ms : null,
    cost: Math.round(r.cost * 1e9) / 1e9,
  });
  const total = { calls: 0, errors: 0, denied: 0, rate_limited: 0, latency_sum_ms: 0, latency_max_ms: 0, cost: 0 };
  for (const r of rows) {
    total.calls += r.calls;
    total.errors += r.errors;
    total.denied += r.denied;
    total.rate_limited += r.rate_limited;
    total.latency_sum_ms += r.latency_sum_ms;
    total.latency_max_ms = Math.max(total.latency_max_ms, r.latency_max_ms);
    total.cost += r.cost;
  }
  return {
    since: q.since ?? null,
    until: q.until ?? null,
    consumerId: q.consumerId ?? null,
    by: q.by,
    rows: rows.map((r) =>
      shape(r, {
        ...(group.includes('consumer') ? { consumer: r.consumer_id } : {}),
        ...(group.includes('server') ? { server: r.server } : {}),
        ...(group.includes('tool') ? { tool: r.tool } : {}),
      }),
    ),
    total: shape(total, {}),
  };
}
