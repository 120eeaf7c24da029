/**
 * `mcp-gateway usage [consumerId]`: calls, errors, refusals, latency and cost per consumer, server or
 * tool (design §7), read-only. Counters reach the file within a second of a call.
 */
import { USAGE_GROUPS, usageReport, type UsageBy, type UsageReport } from '../../metering/report.js';
import { HOUR_MS, hourFloor } from '../../metering/store.js';
import { usageError } from '../errors.js';
import { formatCost, formatCount, formatMs, formatTable, printJson, type Column } from '../output.js';
import { formatUtc } from '../time.js';
import { rangeOf, withReadOnlyStore } from './audit.js';

/** `usage [consumerId]`: the hours counted and a table with a TOTAL line, or `--json`. */
export async function usageCommand(
  consumerId: string | undefined,
  options: { config?: string; json?: boolean; since?: string; until?: string; by?: string },
): Promise<void> {
  const by = (options.by ?? 'consumer') as UsageBy;
  if (!USAGE_GROUPS.includes(by)) throw usageError(`--by: "${options.by}" is not one of ${USAGE_GROUPS.join(', ')}`);
  if (consumerId !== undefined && !consumerId.trim()) throw usageError('consumerId must not be empty');
  const range = rangeOf(options);
  await withReadOnlyStore(options, async (store) => {
    const report = await usageReport(store.reader, { ...range, consumerId, by });
    if (options.json) printJson(report);
    else process.stdout.write(usageText(report));
  });
}

/**
 * The report for people: the hours it covers (counters are per hour, so a `--since` or `--until`
 * inside an hour counts that hour whole, and says so), then the table with a TOTAL line. Every
 * millisecond column uses one format, cost another, counts are whole numbers.
 */
export function usageText(report: UsageReport): string {
  const lines: string[] = [];
  const to = formatUtc(report.to, report.from ?? undefined);
  lines.push(
    report.from === null
      ? `usage up to ${formatUtc(report.to)} UTC (counted per hour)`
      : `usage from ${formatUtc(report.from)} to ${to} UTC (counted per hour)`,
  );
  for (const [option, instant] of [
    ['--since', report.since],
    ['--until', report.until],
  ] as const) {
    if (instant === null || Date.parse(instant) % HOUR_MS === 0) continue;
    const start = new Date(hourFloor(instant)).toISOString();
    const end = new Date(hourFloor(instant) + HOUR_MS).toISOString();
    lines.push(
      `${option} ${formatUtc(instant)} is inside the hour ${formatUtc(start, instant)}–${formatUtc(end, instant)} UTC, which is counted whole`,
    );
  }
  const keys = report.by === 'tool' ? ['server', 'tool'] : [report.by];
  const columns: (string | Column)[] = [
    ...keys,
    ...(['calls', 'errors', 'denied', 'rate_limited'] as const).map((name) => ({ name, format: formatCount })),
    { name: 'avg_ms', format: formatMs },
    { name: 'max_ms', format: formatMs },
    { name: 'cost', format: formatCost },
  ];
  const line = (r: UsageReport['total']) => ({ ...r, avg_ms: r.avg_latency_ms, max_ms: r.max_latency_ms });
  const rows = report.rows.length === 0 ? [] : [...report.rows.map(line), { ...line(report.total), [keys[0]!]: 'TOTAL' }];
  return `${lines.join('\n')}\n\n${formatTable(rows, columns)}`;
}
