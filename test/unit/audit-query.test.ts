/**
 * Reading the audit log: `auditLog` filters and limits (newest first), the seq bound derived from
 * `since`, `auditStats` counts and percentiles, `exportAudit` JSONL/CSV content and backpressure,
 * and the usage report. On both engines: a real SQLite file (rows written by the real AuditStore) and
 * a real PostgreSQL database (rows written by the real PgRecorder), read through the store's Reader.
 */
import { Writable } from 'node:stream';
import { expect, test } from 'vitest';
import type { AuditRow } from '../../src/audit/chain.js';
import { AUDIT_COLUMNS, csvField, exportAudit } from '../../src/audit/export.js';
import { auditLog, auditStats, instantOf, presentRow, seqFloor, SKEW_MS } from '../../src/audit/query.js';
import type { AuditDraft } from '../../src/audit/store.js';
import { usageReport } from '../../src/metering/report.js';
import { describeEngines, engineCases, type TestEngine } from '../helpers/engines.js';

const BASE = Date.parse('2026-03-01T10:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

const engines = await engineCases('audit-query');

const consumers = ['alice', 'bob', 'carol'];
const servers = ['github', 'stripe'];
const statuses = ['ok', 'ok', 'ok', 'error', 'denied'];

/** Row i: one a second from BASE, cycling through consumers, servers, statuses; latency i ms. */
function draft(i: number, extra: Partial<AuditDraft> = {}): AuditDraft {
  return {
    ts: iso(BASE + i * 1000),
    consumer_id: consumers[i % 3]!,
    key_id: 'k1',
    auth_method: 'api-key',
    roles: '["reader"]',
    server: servers[i % 2]!,
    kind: 'tool',
    name: i % 4 === 0 ? 'create_charge' : 'search',
    arguments: JSON.stringify({ i }),
    result: JSON.stringify({ content: [{ type: 'text', text: `r${i}` }] }),
    status: statuses[i % 5]!,
    error: null,
    latency_ms: i,
    decided_by: 'p#0',
    ...extra,
  };
}

/** Appending and reading, over one engine. */
function on(t: TestEngine) {
  const append = (drafts: AuditDraft[]) => t.append(drafts);
  return {
    append,
    /** n rows, i = 1..n (the chain mode recorded first, as a gateway does). */
    fill: async (n: number): Promise<AuditDraft[]> => {
      const drafts = Array.from({ length: n }, (_, k) => draft(k + 1));
      await t.fill(drafts);
      return drafts;
    },
    log: (filters: Parameters<typeof auditLog>[1]) => auditLog(t.store.reader, filters),
    seqs: async (rows: Promise<AuditRow[]>) => (await rows).map((r) => r.seq),
  };
}

describeEngines(engines, 'auditLog', (t) => {
  const { append, fill, log, seqs } = on(t);

  test('newest first, default limit 50, explicit limit', async () => {
    await fill(120);
    const rows = await log({});
    expect(rows).toHaveLength(50);
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 50 }, (_, k) => 120 - k));
    expect(await seqs(log({ limit: 3 }))).toEqual([120, 119, 118]);
    expect(await log({ limit: 1000 })).toHaveLength(120);
    await expect(log({ limit: 0 })).rejects.toThrow(RangeError);
  });

  test('each filter, and all of them together', async () => {
    const drafts = await fill(60);
    const expectSeqs = async (rows: Promise<AuditRow[]>, pred: (d: AuditDraft, seq: number) => boolean) =>
      expect(await seqs(rows)).toEqual(
        drafts
          .map((d, k) => [d, k + 1] as const)
          .filter(([d, seq]) => pred(d, seq))
          .map(([, seq]) => seq)
          .reverse(),
      );
    await expectSeqs(log({ consumer: 'bob', limit: 500 }), (d) => d.consumer_id === 'bob');
    await expectSeqs(log({ server: 'stripe', limit: 500 }), (d) => d.server === 'stripe');
    await expectSeqs(log({ tool: 'create_charge', limit: 500 }), (d) => d.name === 'create_charge');
    await expectSeqs(log({ status: 'denied', limit: 500 }), (d) => d.status === 'denied');
    const since = iso(BASE + 20_000);
    const until = iso(BASE + 40_000);
    await expectSeqs(log({ since, until, limit: 500 }), (d) => d.ts >= since && d.ts < until);
    await expectSeqs(
      log({ consumer: 'alice', server: 'github', status: 'ok', since, limit: 500 }),
      (d) => d.consumer_id === 'alice' && d.server === 'github' && d.status === 'ok' && d.ts >= since,
    );
    expect(await log({ consumer: 'nobody' })).toEqual([]);
  });

  test('a limit stops at the newest matching rows', async () => {
    await fill(60);
    const rows = await log({ status: 'denied', limit: 2 });
    expect(rows.map((r) => [r.seq, r.status])).toEqual([
      [59, 'denied'],
      [54, 'denied'],
    ]);
  });

  test('rows appended out of ts order within the skew, and a long request, are still found', async () => {
    await fill(100);
    // A request that started long ago and ended now: its ts is old, but it was appended last.
    await append([draft(0, { ts: iso(BASE - 3_600_000), latency_ms: 3_600_000 + 101_000, name: 'slow' })]);
    // Rows from another process whose clock is 30 s behind.
    await append([draft(0, { ts: iso(BASE + 72_000), name: 'behind' }), draft(0, { ts: iso(BASE + 73_000), name: 'behind' })]);
    const since = iso(BASE + 90_000);
    expect(await seqs(log({ since, limit: 500 }))).toEqual([100, 99, 98, 97, 96, 95, 94, 93, 92, 91, 90]);
    expect(await seqs(log({ since: iso(BASE + 72_000), tool: 'behind' }))).toEqual([103, 102]);
    expect(await seqs(log({ since: iso(BASE - 3_600_000), tool: 'slow' }))).toEqual([101]);
  });

  test('seqFloor: no row below it starts at or after since, and it is close to the first that does', async () => {
    await fill(1000);
    const since = iso(BASE + 500_000);
    const floor = await seqFloor(t.store.reader, since);
    const firstInside = 500;
    expect(floor).toBeLessThanOrEqual(firstInside);
    expect(firstInside - floor).toBeLessThanOrEqual(SKEW_MS / 1000 + 1);
    expect(await seqFloor(t.store.reader, iso(BASE + 5_000_000))).toBe(1001);
    expect(await seqFloor(t.store.reader, iso(BASE - 5_000_000))).toBe(1);
  });

  test('presentRow parses the JSON columns', async () => {
    await fill(1);
    const row = presentRow((await log({}))[0]!);
    expect(row).toMatchObject({ seq: 1, roles: ['reader'], arguments: { i: 1 }, result: { content: [{ type: 'text', text: 'r1' }] } });
  });
});

describeEngines(engines, 'auditStats', (t) => {
  const { append, fill } = on(t);
  const stats = (range: Parameters<typeof auditStats>[1]) => auditStats(t.store.reader, range);

  test('counts by status, server and consumer, and nearest-rank percentiles', async () => {
    await fill(200); // latencies 1..200
    const result = await stats({});
    expect(result.total).toBe(200);
    expect(result.byStatus).toEqual([
      { status: 'ok', count: 120 },
      { status: 'denied', count: 40 },
      { status: 'error', count: 40 },
    ]);
    expect(result.byServer).toEqual([
      { server: 'github', count: 100 },
      { server: 'stripe', count: 100 },
    ]);
    expect(result.byConsumer).toEqual([
      { consumer: 'bob', count: 67 },
      { consumer: 'carol', count: 67 },
      { consumer: 'alice', count: 66 },
    ]);
    expect(result.latencyMs).toEqual({ p50: 100, p95: 190, max: 200, avg: 100.5 });
  });

  test('percentiles with repeated values and a time range', async () => {
    await append([5, 5, 5, 7, 100].map((latency, k) => draft(k + 1, { latency_ms: latency })));
    expect((await stats({})).latencyMs).toMatchObject({ p50: 5, p95: 100, max: 100 });
    const ranged = await stats({ since: iso(BASE + 4_000) });
    expect(ranged.total).toBe(2);
    expect(ranged.latencyMs).toMatchObject({ p50: 7, p95: 100 });
  });

  test('an empty range', async () => {
    await fill(5);
    expect(await stats({ since: iso(BASE + 10_000_000) })).toMatchObject({
      total: 0,
      byStatus: [],
      latencyMs: { p50: null, p95: null, max: null, avg: null },
    });
  });
});

/** A writable that keeps what it is given, taking `delayMs` per write (so it pushes back). */
class SlowSink extends Writable {
  text = '';
  maxBuffered = 0;
  constructor(private readonly delayMs: number) {
    super({ highWaterMark: 1024, decodeStrings: false });
  }
  override _write(chunk: string | Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.maxBuffered = Math.max(this.maxBuffered, this.writableLength);
    this.text += chunk.toString();
    setTimeout(done, this.delayMs);
  }
}

/** RFC 4180 parser (for checking what the exporter wrote). */
function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let fields: string[] = [];
  let i = 0;
  while (i < text.length) {
    let value = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (text[i] === '"' && text[i + 1] === '"') {
          value += '"';
          i += 2;
        } else if (text[i] === '"') {
          i++;
          break;
        } else value += text[i++];
      }
    } else {
      while (i < text.length && text[i] !== ',' && text[i] !== '\r') value += text[i++];
    }
    fields.push(value);
    if (text[i] === ',') i++;
    else if (text.startsWith('\r\n', i)) {
      records.push(fields);
      fields = [];
      i += 2;
    } else throw new Error(`bad CSV at ${i}: ${JSON.stringify(text.slice(i, i + 20))}`);
  }
  return records;
}

describeEngines(engines, 'exportAudit', (t) => {
  const { append, fill } = on(t);

  test('JSONL: one object per line with every column, exactly as stored', async () => {
    await fill(30);
    const sink = new SlowSink(0);
    expect(await exportAudit(t.store.reader, 'jsonl', sink, {})).toBe(30);
    const lines = sink.text
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(30);
    const stored = await t.store.reader.all('SELECT * FROM audit_log ORDER BY seq');
    expect(lines).toEqual(stored);
    expect(Object.keys(lines[0]!).sort()).toEqual([...AUDIT_COLUMNS].sort());
  });

  // Known divergence (src/audit/export.ts writes `SELECT *` rows as they come, and the PostgreSQL
  // schema has method and meta before prev_hash and hash): marked failing so that it is seen, and
  // so that this test says so once the export writes the columns in AUDIT_COLUMNS order.
  test('JSONL: the keys of each line in AUDIT_COLUMNS order (the CSV header)', async () => {
    await fill(1);
    const sink = new SlowSink(0);
    await exportAudit(t.store.reader, 'jsonl', sink);
    expect(Object.keys(JSON.parse(sink.text) as Record<string, unknown>)).toEqual([...AUDIT_COLUMNS]);
  });

  test('JSONL with a time range', async () => {
    await fill(30);
    const sink = new SlowSink(0);
    expect(await exportAudit(t.store.reader, 'jsonl', sink, { since: iso(BASE + 10_000), until: iso(BASE + 20_000) })).toBe(10);
    expect(
      sink.text
        .trimEnd()
        .split('\n')
        .map((l) => (JSON.parse(l) as { seq: number }).seq),
    ).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
  });

  test('CSV: header, RFC 4180 quoting of commas, quotes and newlines, NULL as empty', async () => {
    const nasty = 'a, "quoted" value\nover two lines\r\nand a CR';
    await append([draft(1), draft(2, { error: nasty, arguments: JSON.stringify({ text: nasty }), key_id: null })]);
    const sink = new SlowSink(0);
    expect(await exportAudit(t.store.reader, 'csv', sink)).toBe(2);
    expect(sink.text.startsWith(`${AUDIT_COLUMNS.join(',')}\r\n`)).toBe(true);
    const records = parseCsv(sink.text);
    expect(records).toHaveLength(3);
    expect(records[0]).toEqual([...AUDIT_COLUMNS]);
    const row = Object.fromEntries(AUDIT_COLUMNS.map((c, k) => [c, records[2]![k]]));
    expect(row).toMatchObject({ seq: '2', error: nasty, arguments: JSON.stringify({ text: nasty }), key_id: '', latency_ms: '2' });
    expect(csvField('plain')).toBe('plain');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField(null)).toBe('');
  });

  test('every row is exported, in seq order, across many cursor batches', async () => {
    await fill(2500);
    const sink = new SlowSink(0);
    expect(await exportAudit(t.store.reader, 'csv', sink)).toBe(2500);
    const records = parseCsv(sink.text).slice(1);
    expect(records.map((r) => Number(r[0]))).toEqual(Array.from({ length: 2500 }, (_, k) => k + 1));
  });

  test('waits for drain: the writable never holds much more than one chunk', async () => {
    const big = 'x'.repeat(2_000);
    await append(Array.from({ length: 400 }, (_, k) => draft(k + 1, { result: JSON.stringify({ big }) })));
    const sink = new SlowSink(1);
    expect(await exportAudit(t.store.reader, 'jsonl', sink)).toBe(400);
    expect(sink.text.split('\n').length - 1).toBe(400);
    // ~900 KB in all; without backpressure it would all sit in the writable's buffer.
    expect(sink.maxBuffered).toBeLessThan(200 * 1024);
  });

  test('a writable that fails ends the export with its error and frees the connection', async () => {
    await fill(2000);
    const failing = new Writable({
      highWaterMark: 16,
      write(_chunk, _enc, done) {
        setTimeout(() => done(new Error('disk full')), 1);
      },
    });
    failing.on('error', () => {});
    await expect(exportAudit(t.store.reader, 'jsonl', failing)).rejects.toThrow();
    // The cursor was closed: the connection is usable.
    expect(await t.store.verify({ hmacKey: null })).toMatchObject({ ok: true, rows: 2000 });
    expect(await exportAudit(t.store.reader, 'jsonl', new SlowSink(0))).toBe(2000);
  });
});

describeEngines(engines, 'usageReport', (t) => {
  test('groups by consumer, server or tool (with its server), with a total', async () => {
    const hour = '2026-03-01T10:00:00Z';
    const row = (consumer_id: string, server: string, tool: string, calls: number, latency: number, cost: number) => ({
      hour,
      consumer_id,
      server,
      tool,
      calls,
      errors: 1,
      denied: 0,
      rate_limited: 0,
      latency_ms: latency,
      latency_max_ms: latency / calls + 5,
      cost,
    });
    await t.addUsage([
      row('alice', 'github', 'search', 4, 400, 0.01),
      row('alice', 'stripe', 'search', 1, 50, 0.5),
      row('bob', 'github', 'search', 5, 100, 0.02),
    ]);
    const byTool = await usageReport(t.store.reader, { by: 'tool' });
    expect(byTool.rows).toEqual([
      {
        server: 'github',
        tool: 'search',
        calls: 9,
        errors: 2,
        denied: 0,
        rate_limited: 0,
        avg_latency_ms: 55.56,
        max_latency_ms: 105,
        cost: 0.03,
      },
      {
        server: 'stripe',
        tool: 'search',
        calls: 1,
        errors: 1,
        denied: 0,
        rate_limited: 0,
        avg_latency_ms: 50,
        max_latency_ms: 55,
        cost: 0.5,
      },
    ]);
    expect(byTool.total).toMatchObject({ calls: 10, errors: 3, max_latency_ms: 105, cost: 0.53 });
    expect((await usageReport(t.store.reader, { by: 'consumer', consumerId: 'bob' })).rows).toEqual([
      expect.objectContaining({ consumer: 'bob', calls: 5 }),
    ]);
    expect((await usageReport(t.store.reader, { by: 'server', since: '2026-03-01T11:00:00.000Z' })).rows).toEqual([]);
  });
});

test('instantOf: ISO dates and durations ago', () => {
  const now = Date.parse('2026-03-02T00:00:00.000Z');
  expect(instantOf('24h', now)).toBe('2026-03-01T00:00:00.000Z');
  expect(instantOf('2026-01-05', now)).toBe('2026-01-05T00:00:00.000Z');
  expect(instantOf('2026-01-05T10:00:00+02:00', now)).toBe('2026-01-05T08:00:00.000Z');
  expect(instantOf('yesterday', now)).toBeNull();
});
