/**
 * `mcp-gateway usage [consumerId]`: calls, errors, refusals, latency and cost per consumer, server or
 * tool (design §7), read-only. Counters reach the file within a second of a call.
 */
import { USAGE_GROUPS, usageReport, type UsageBy } from '../../metering/report.js';
import { UsageStore } from '../../metering/store.js';
import { usageError } from '../errors.js';
import { printJson, printTable } from '../output.js';
import { rangeOf, withReadOnlyDb } from './audit.js';

/** `usage [consumerId]`: a table with a TOTAL line, or `--json`. */
export async function usageCommand(
  consumerId: string | undefined,
  options: { config?: string; json?: boolean; since?: string; until?: string; by?: string },
): Promise<void> {
  const by = (options.by ?? 'consumer') as UsageBy;
  if (!USAGE_GROUPS.includes(by)) throw usageError(`--by: "${options.by}" is not one of ${USAGE_GROUPS.join(', ')}`);
  if (consumerId !== undefined && !consumerId.trim()) throw usageError('consumerId must not be empty');
  const range = rangeOf(options);
  await withReadOnlyDb(options, (db) => {
    const report = usageReport(new UsageStore(db), { ...range, consumerId, by });
    if (options.json) {
      printJson(report);
      return;
    }
    const keys = by === 'tool' ? ['server', 'tool'] : [by];
    const columns = [...keys, 'calls', 'errors', 'denied', 'rate_limited', 'avg_ms', 'max_ms', 'cost'];
    const line = (r: (typeof report.rows)[number]) => ({ ...r, avg_ms: r.avg_latency_ms, max_ms: r.max_latency_ms });
    if (report.rows.length === 0) {
      printTable([], columns);
      return;
    }
    printTable([...report.rows.map(line), { ...line(report.total), [keys[0]!]: 'TOTAL' }], columns);
  });
}
