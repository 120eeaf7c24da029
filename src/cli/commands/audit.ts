/**
 * `mcp-gateway audit …`: log, stats, verify, head, export. Every one opens the store read-only:
 * they run beside live gateways (SQLite's WAL, or PostgreSQL) and never change it.
 */
import { createWriteStream, fchmodSync, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { finished } from 'node:stream/promises';
import { exportAudit, EXPORT_FORMATS, type ExportFormat } from '../../audit/export.js';
import { AUDIT_STATUSES, DEFAULT_LIMIT, auditLog, auditStats, presentRow, type TimeRange } from '../../audit/query.js';
import { parseAnchor } from '../../audit/verify.js';
import { loadConfig, type LoadedConfig } from '../../config/load.js';
import { gatewaySecrets, MissingSecretError } from '../../secrets/secrets.js';
import { openStore, type Store } from '../../store/store.js';
import { checkFailed, usageError } from '../errors.js';
import { printJson, printTable } from '../output.js';
import { parseInstant } from '../time.js';

interface Common {
  config?: string;
  json?: boolean;
}

interface RangeOptions {
  since?: string;
  until?: string;
}

/** Loads the config and opens its store (file or PostgreSQL) read-only for `fn`. */
export async function withReadOnlyStore<T>(options: Common, fn: (store: Store, loaded: LoadedConfig) => T | Promise<T>): Promise<T> {
  const loaded = loadConfig(options.config, process.env, process.cwd(), { withoutServerSecrets: true });
  const store = await openStore(loaded.config.database, { readonly: true, connections: 2 });
  try {
    return await fn(store, loaded);
  } finally {
    await store.close();
  }
}

/** `--since` / `--until` as ISO instants; exit 2 when they do not parse or are the wrong way round. */
export function rangeOf(options: RangeOptions): TimeRange {
  const since = options.since === undefined ? undefined : parseInstant(options.since, '--since');
  const until = options.until === undefined ? undefined : parseInstant(options.until, '--until');
  if (since !== undefined && until !== undefined && since >= until)
    throw usageError(`--since (${since}) must be before --until (${until})`);
  return { since, until };
}

/** `audit log`: rows newest first, as a table or `--json`. */
export async function auditLogCommand(
  options: Common & RangeOptions & { limit?: string; consumer?: string; server?: string; tool?: string; status?: string },
): Promise<void> {
  let limit = DEFAULT_LIMIT;
  if (options.limit !== undefined) {
    limit = Number(options.limit);
    if (!/^\d+$/.test(options.limit.trim()) || !Number.isSafeInteger(limit) || limit < 1) {
      throw usageError(`--limit: "${options.limit}" is not a positive whole number`);
    }
  }
  if (options.status !== undefined && !(AUDIT_STATUSES as readonly string[]).includes(options.status)) {
    throw usageError(`--status: "${options.status}" is not a status (${AUDIT_STATUSES.join(', ')})`);
  }
  const range = rangeOf(options);
  await withReadOnlyStore(options, async (store) => {
    const rows = await auditLog(store.reader, {
      ...range,
      limit,
      consumer: options.consumer,
      server: options.server,
      tool: options.tool,
      status: options.status,
    });
    if (options.json) {
      printJson({ entries: rows.map(presentRow) });
      return;
    }
    printTable(
      rows.map((r) => ({ ...r })),
      ['seq', 'ts', 'consumer_id', 'server', 'kind', 'name', 'status', 'latency_ms', 'decided_by', 'error'],
    );
  });
}

/** `audit stats`: counts and latency percentiles. */
export async function auditStatsCommand(options: Common & RangeOptions): Promise<void> {
  const range = rangeOf(options);
  await withReadOnlyStore(options, async (store) => {
    const stats = await auditStats(store.reader, range);
    if (options.json) {
      printJson(stats);
      return;
    }
    const out = process.stdout;
    const span = `${stats.since ? `from ${stats.since}` : 'from the start'} ${stats.until ? `until ${stats.until}` : 'to now'}`;
    out.write(`${stats.total} requests ${span}\n`);
    if (stats.total === 0) return;
    const l = stats.latencyMs;
    out.write(`latency ms: p50 ${l.p50}  p95 ${l.p95}  max ${l.max}  avg ${l.avg}\n\n`);
    printTable(stats.byStatus, ['status', 'count']);
    out.write('\n');
    printTable(stats.byServer, ['server', 'count']);
    out.write('\n');
    printTable(stats.byConsumer, ['consumer', 'count']);
  });
}

/** `audit verify`: exit 0 when the chain (and the anchor) hold, 1 naming the first bad seq. */
export async function auditVerifyCommand(options: Common & { anchor?: string }): Promise<void> {
  const anchor = options.anchor === undefined ? undefined : parseAnchor(options.anchor);
  if (anchor === null) {
    throw usageError(
      `--anchor: "${options.anchor}" is not seq:hash as printed by \`audit head\`, with at least the first 16 hex digits of the hash (e.g. 1042:9f86d081884c7d65)`,
    );
  }
  await withReadOnlyStore(options, async (store, loaded) => {
    let hmacKey: Buffer | null;
    try {
      hmacKey = gatewaySecrets(loaded.config, process.env).hmacKey;
    } catch (err) {
      if (err instanceof MissingSecretError) throw usageError(`${loaded.file}: ${err.message}`);
      throw err;
    }
    const started = performance.now();
    const result = await store.verify({ hmacKey, anchor });
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    if (options.json) printJson(result);
    if (result.ok) {
      if (!options.json) {
        const head = result.head ? `${result.head.seq}:${result.head.hash}` : '(empty log)';
        process.stdout.write(
          `ok: ${result.rows} rows verified (${result.mode}${anchor ? `, anchor ${anchor.seq} held` : ''}) in ${seconds} s\nhead ${head}\n`,
        );
      }
      return;
    }
    const hint =
      result.reason === 'wrong-key' && !hmacKey && !loaded.config.audit.hmacKeyEnv ? ' (this config sets no audit.hmacKeyEnv)' : '';
    throw checkFailed(`audit chain fails at seq ${result.seq}: ${result.reason}: ${result.detail}${hint}`);
  });
}

/** `audit head`: the last row as `seq:hash` (`0:<64 zeros>` for an empty log). */
export async function auditHeadCommand(options: Common): Promise<void> {
  await withReadOnlyStore(options, async (store) => {
    const head = await store.head();
    if (head.seq > 0 && head.hash === '')
      throw checkFailed('the audit log was written with audit.hashChain off: it has no hashes to anchor');
    if (options.json) printJson(head);
    else process.stdout.write(`${head.seq}:${head.hash}\n`);
  });
}

/** `audit export`: every row, every column, to stdout or `--out`. */
export async function auditExportCommand(options: Common & RangeOptions & { format?: string; out?: string }): Promise<void> {
  const format = (options.format ?? 'jsonl') as ExportFormat;
  if (!EXPORT_FORMATS.includes(format)) throw usageError(`--format: "${options.format}" is not one of ${EXPORT_FORMATS.join(', ')}`);
  const range = rangeOf(options);
  await withReadOnlyStore(options, async (store) => {
    if (options.out === undefined) {
      try {
        await exportAudit(store.reader, format, process.stdout, range);
      } catch (err) {
        // The reader went away (`| head`): not a failure of the export.
        if ((err as NodeJS.ErrnoException).code === 'EPIPE') return;
        throw err;
      }
      return;
    }
    const file = await openOutput(options.out);
    let count: number;
    try {
      count = await exportAudit(store.reader, format, file, range);
      file.end();
      await finished(file);
    } catch (err) {
      file.destroy();
      throw err;
    }
    process.stderr.write(`exported ${count} rows to ${options.out}\n`);
  });
}

/**
 * A file stream that is open (so a bad path is exit 2 before anything is read), readable by its
 * owner only before the first row is in it: created 0600, and an existing file changed to 0600.
 */
async function openOutput(path: string): Promise<WriteStream> {
  const file = createWriteStream(path, { mode: 0o600 });
  try {
    await once(file, 'open');
    fchmodSync((file as unknown as { fd: number }).fd, 0o600);
  } catch (err) {
    file.destroy();
    throw usageError(`--out: cannot write ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return file;
}
