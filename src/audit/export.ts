/**
 * `audit export`: the log as JSON Lines or CSV, streamed in seq order from a cursor into a
 * writable, waiting for 'drain' whenever it pushes back, so a million rows never sit in memory.
 * Values are written exactly as stored (arguments and result stay JSON text), so an export carries
 * everything needed to re-verify the chain elsewhere (docs/audit.md).
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import type { Reader } from '../store/sql.js';
import type { AuditRow } from './chain.js';
import { rangeWhere, type TimeRange } from './query.js';

/** JSON Lines or CSV. */
export type ExportFormat = 'jsonl' | 'csv';

/** Every value `--format` takes. */
export const EXPORT_FORMATS: readonly ExportFormat[] = ['jsonl', 'csv'];

/** The columns of audit_log in table order (the CSV header). */
export const AUDIT_COLUMNS = [
  'seq',
  'ts',
  'consumer_id',
  'key_id',
  'auth_method',
  'roles',
  'server',
  'kind',
  'name',
  'arguments',
  'result',
  'status',
  'error',
  'latency_ms',
  'decided_by',
  'prev_hash',
  'hash',
  // Added by schema 2 (ALTER TABLE puts them last).
  'method',
  'meta',
] as const satisfies readonly (keyof AuditRow)[];

/** Text is handed to the writable in pieces of about this size (one write per row is slow). */
const CHUNK_CHARS = 64 * 1024;

/**
 * Writes the rows of a time range to `out` (which it does not end) and resolves with the number
 * written. JSONL: one object per line with every column. CSV: a header, then RFC 4180 (CRLF line
 * ends, fields with a comma, quote, CR or LF quoted, quotes doubled; NULL is an empty field).
 * Rejects when the writable fails (the cursor is closed either way).
 */
export async function exportAudit(db: Reader, format: ExportFormat, out: Writable, range: TimeRange = {}): Promise<number> {
  const line = format === 'csv' ? csvLine : jsonLine;
  const { where, params } = await rangeWhere(db, range);
  // The columns named, in one order on both engines (PostgreSQL's table has method and meta earlier).
  const rows = db.iterate<AuditRow>(`SELECT ${AUDIT_COLUMNS.join(', ')} FROM audit_log WHERE ${where.join(' AND ')} ORDER BY seq`, params);

  let count = 0;
  let chunk = format === 'csv' ? `${AUDIT_COLUMNS.join(',')}\r\n` : '';
  const flush = async () => {
    const text = chunk;
    chunk = '';
    if (text && !out.write(text)) await drained(out);
  };
  // Leaving this loop early (a write error) closes the cursor, freeing the connection.
  for await (const row of rows) {
    chunk += line(row);
    count++;
    if (chunk.length >= CHUNK_CHARS) await flush();
  }
  await flush();
  return count;
}

function jsonLine(row: AuditRow): string {
  return `${JSON.stringify(row)}\n`;
}

function csvLine(row: AuditRow): string {
  let text = '';
  for (let i = 0; i < AUDIT_COLUMNS.length; i++) {
    if (i > 0) text += ',';
    text += csvField(row[AUDIT_COLUMNS[i]!]);
  }
  return `${text}\r\n`;
}

/** One RFC 4180 field. */
export function csvField(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return '';
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** Resolves on 'drain'; rejects if the writable errors or closes first. */
async function drained(out: Writable): Promise<void> {
  const closed = new AbortController();
  const onClose = () => closed.abort();
  out.once('close', onClose);
  try {
    await once(out, 'drain', { signal: closed.signal });
  } catch (err) {
    if (closed.signal.aborted) throw Object.assign(new Error('the output was closed before the export finished'), { code: 'EPIPE' });
    throw err;
  } finally {
    out.off('close', onClose);
  }
}
