/**
 * The usage report (design §7): the hours it counts (`from`/`to`, snapped outwards to whole UTC
 * hours), its arithmetic (avg from the unrounded sums, never above max) and rounding, and the
 * table `mcp-gateway usage` prints. On both engines: a real SQLite database (rows written by the
 * real UsageStore) and a real PostgreSQL database (rows written by the real PgRecorder).
 */
import { beforeEach, expect, test } from 'vitest';
import { formatUtc } from '../../src/cli/time.js';
import { usageText } from '../../src/cli/commands/usage.js';
import { usageReport as readUsageReport, type UsageReport } from '../../src/metering/report.js';
import type { UsageDelta } from '../../src/metering/store.js';
import { describeEngines, engineCases, type TestEngine } from '../helpers/engines.js';

const engines = await engineCases('usage-report');

const NOW = Date.parse('2026-03-01T10:27:14.500Z');

/** Adding counters and reading the report, over one engine. */
function on(t: TestEngine) {
  return {
    add: (...deltas: Partial<UsageDelta>[]) =>
      t.addUsage(
        deltas.map((d) => ({
          hour: '2026-03-01T10:00:00Z',
          consumer_id: 'alice',
          server: 'github',
          tool: 'search',
          calls: 1,
          errors: 0,
          denied: 0,
          rate_limited: 0,
          latency_ms: 10,
          cost: 0,
          ...d,
        })),
      ),
    usageReport: (q: Parameters<typeof readUsageReport>[1]) => readUsageReport(t.store.reader, q),
  };
}

/** Every number anywhere in the JSON text, as written. */
const numbersIn = (value: unknown) => JSON.stringify(value).match(/-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?=[,}\]])/g) ?? [];

describeEngines(engines, 'arithmetic and rounding', (t) => {
  const { add, usageReport } = on(t);

  test('the reported case: one call of 5.357 ms and one of 16.5512 ms show avg = max, never 5.40 > 5.36', async () => {
    // The latencies as performance.now() gives them. Before: avg was rounded to 0.1 (5.4, 16.6)
    // and max not at all (5.357, 16.5512), then both printed with two decimals: 5.40 > 5.36.
    await add({ consumer_id: 'alice', latency_ms: 5.357 }, { consumer_id: 'bob', latency_ms: 16.5512 });
    const report = await usageReport({ by: 'consumer', now: NOW });
    expect(report.rows).toEqual([
      expect.objectContaining({ consumer: 'alice', calls: 1, avg_latency_ms: 5.36, max_latency_ms: 5.36 }),
      expect.objectContaining({ consumer: 'bob', calls: 1, avg_latency_ms: 16.55, max_latency_ms: 16.55 }),
    ]);
    expect(report.total).toMatchObject({ calls: 2, avg_latency_ms: 10.95, max_latency_ms: 16.55 });
    const table = usageText(report);
    expect(table).toMatch(/^alice\s+1\s+0\s+0\s+0\s+5\.36\s+5\.36\s+0\.000000$/m);
    expect(table).toMatch(/^bob\s+1\s+0\s+0\s+0\s+16\.55\s+16\.55\s+0\.000000$/m);
    expect(table).toMatch(/^TOTAL\s+2\s+0\s+0\s+0\s+10\.95\s+16\.55\s+0\.000000$/m);
  });

  test('a floating-point sum a hair above calls × max does not make avg exceed max', async () => {
    // 1.655 ms as measured is 1.6549999999999998; three of them sum to 4.965, whose third rounds
    // to 1.66 while the max rounds to 1.65.
    const one = 1.6549999999999998;
    const sum = one + one + one;
    expect(sum / 3).toBeGreaterThan(one);
    await add({ calls: 3, latency_ms: sum, latency_max_ms: one });
    const [row] = (await usageReport({ by: 'tool', now: NOW })).rows;
    expect(row).toMatchObject({ avg_latency_ms: 1.65, max_latency_ms: 1.65 });
  });

  test('avg is the sum over the calls, computed once (not an average of averages)', async () => {
    await add(
      { server: 'a', calls: 1, latency_ms: 1 },
      { server: 'b', hour: '2026-03-01T09:00:00Z', calls: 1, latency_ms: 1 },
      { server: 'b', calls: 3, latency_ms: 9, latency_max_ms: 3 },
    );
    const report = await usageReport({ by: 'server', now: NOW });
    expect(report.rows).toEqual([
      expect.objectContaining({ server: 'a', calls: 1, avg_latency_ms: 1, max_latency_ms: 1 }),
      // (1 + 9) / 4, not the average of the hours' averages (1 + 3) / 2.
      expect.objectContaining({ server: 'b', calls: 4, avg_latency_ms: 2.5, max_latency_ms: 3 }),
    ]);
    // (1 + 1 + 9) / 5, not the average of the rows' averages (1 + 2.5) / 2.
    expect(report.total).toMatchObject({ calls: 5, avg_latency_ms: 2.2, max_latency_ms: 3 });
  });

  test('JSON values are rounded: ms to 0.01, cost to 6 decimals, counts whole; no float noise', async () => {
    await add(
      { latency_ms: 22.448361999999634, cost: 0.1 },
      { latency_ms: 0.2, cost: 0.2 },
      { tool: 'other', latency_ms: 107, cost: 0.0000004 },
      { tool: 'other', latency_ms: 0.004, cost: 0.0000006 },
    );
    const report = await usageReport({ by: 'tool', now: NOW });
    expect(report.rows).toEqual([
      expect.objectContaining({ tool: 'other', calls: 2, avg_latency_ms: 53.5, max_latency_ms: 107, cost: 0.000001 }),
      expect.objectContaining({ tool: 'search', calls: 2, avg_latency_ms: 11.32, max_latency_ms: 22.45, cost: 0.3 }),
    ]);
    expect(report.total).toMatchObject({ calls: 4, avg_latency_ms: 32.41, max_latency_ms: 107, cost: 0.300001 });
    for (const n of numbersIn(report)) expect(n).toMatch(/^-?\d+(\.\d{1,6})?$/);
    for (const r of [...report.rows, report.total]) {
      for (const ms of [r.avg_latency_ms, r.max_latency_ms]) expect(Math.round(ms! * 100) / 100).toBe(ms);
    }
  });

  test('avg ≤ max in every row and the total, over many random latencies', async () => {
    let seed = 42;
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    const deltas: Partial<UsageDelta>[] = [];
    for (let i = 0; i < 300; i++) {
      const calls = 1 + Math.floor(random() * 5);
      const latencies = Array.from({ length: calls }, () => random() * (random() < 0.5 ? 2 : 200));
      // Some rows hold calls of one latency each: their float sum may land above calls × max.
      if (i % 3 === 0) latencies.fill(latencies[0]!);
      deltas.push({
        server: `s${i % 7}`,
        tool: `t${i % 11}`,
        consumer_id: `c${i % 5}`,
        hour: `2026-03-01T0${i % 10}:00:00Z`,
        calls,
        latency_ms: latencies.reduce((a, b) => a + b, 0),
        latency_max_ms: Math.max(...latencies),
      });
    }
    await add(...deltas);
    for (const by of ['consumer', 'server', 'tool'] as const) {
      const report = await usageReport({ by, now: NOW });
      for (const r of [...report.rows, report.total]) expect(r.avg_latency_ms!).toBeLessThanOrEqual(r.max_latency_ms!);
    }
  });

  test('counters of one hour written in separate commits add up: counts and cost summed, latency summed, max kept', async () => {
    await add({ calls: 2, errors: 1, latency_ms: 30, latency_max_ms: 20, cost: 0.25 });
    await add({ calls: 3, denied: 2, rate_limited: 1, latency_ms: 15, latency_max_ms: 9, cost: 0.5 });
    await add({ hour: '2026-03-01T09:00:00Z', calls: 5, latency_ms: 5, latency_max_ms: 1 });
    const report = await usageReport({ by: 'tool', now: NOW });
    expect(report.rows).toEqual([
      {
        server: 'github',
        tool: 'search',
        calls: 10,
        errors: 1,
        denied: 2,
        rate_limited: 1,
        avg_latency_ms: 5,
        max_latency_ms: 20,
        cost: 0.75,
      },
    ]);
    const rows = await t.store.reader.all<{ hour: string; calls: number; latency_sum_ms: number; latency_max_ms: number }>(
      'SELECT hour, calls, latency_sum_ms, latency_max_ms FROM usage_hourly ORDER BY hour',
    );
    expect(rows).toEqual([
      { hour: '2026-03-01T09:00:00Z', calls: 5, latency_sum_ms: 5, latency_max_ms: 1 },
      { hour: '2026-03-01T10:00:00Z', calls: 5, latency_sum_ms: 45, latency_max_ms: 20 },
    ]);
  });

  test('no calls: avg and max are null, shown as "-"', async () => {
    const report = await usageReport({ by: 'consumer', now: NOW });
    expect(report.rows).toEqual([]);
    expect(report.total).toMatchObject({ calls: 0, avg_latency_ms: null, max_latency_ms: null, cost: 0 });
    expect(usageText(report)).toMatch(/\(none\)\n$/);
  });
});

describeEngines(engines, 'hour buckets', (t) => {
  const { add, usageReport } = on(t);

  beforeEach(() =>
    add(
      { hour: '2026-03-01T08:00:00Z', calls: 1 },
      { hour: '2026-03-01T09:00:00Z', calls: 10 },
      { hour: '2026-03-01T10:00:00Z', calls: 100 },
    ),
  );
  const calls = (r: UsageReport) => r.total.calls;

  test('`--since 1m` at 10:27 counts the hour from 10:00 whole, and says so', async () => {
    const since = new Date(NOW - 60_000).toISOString();
    const report = await usageReport({ by: 'consumer', since, now: NOW });
    expect(report).toMatchObject({
      bucket: 'hour',
      from: '2026-03-01T10:00:00.000Z',
      to: '2026-03-01T11:00:00.000Z',
      since: '2026-03-01T10:26:14.500Z',
      until: null,
    });
    expect(calls(report)).toBe(100);
    const [header, note] = usageText(report).split('\n');
    expect(header).toBe('usage from 2026-03-01 10:00 to 11:00 UTC (counted per hour)');
    expect(note).toBe('--since 2026-03-01 10:26:14 is inside the hour 10:00–11:00 UTC, which is counted whole');
  });

  test('an until inside an hour counts that hour whole; one on the hour stops there', async () => {
    const inside = await usageReport({ by: 'consumer', since: '2026-03-01T08:59:00Z', until: '2026-03-01T09:00:00.500Z', now: NOW });
    expect(inside).toMatchObject({ from: '2026-03-01T08:00:00.000Z', to: '2026-03-01T10:00:00.000Z' });
    expect(calls(inside)).toBe(11);
    expect(usageText(inside).split('\n').slice(0, 3)).toEqual([
      'usage from 2026-03-01 08:00 to 10:00 UTC (counted per hour)',
      '--since 2026-03-01 08:59 is inside the hour 08:00–09:00 UTC, which is counted whole',
      '--until 2026-03-01 09:00:00 is inside the hour 09:00–10:00 UTC, which is counted whole',
    ]);

    const onTheHour = await usageReport({ by: 'consumer', since: '2026-03-01T09:00:00Z', until: '2026-03-01T10:00:00Z', now: NOW });
    expect(onTheHour).toMatchObject({ from: '2026-03-01T09:00:00.000Z', to: '2026-03-01T10:00:00.000Z' });
    expect(calls(onTheHour)).toBe(10);
    expect(usageText(onTheHour).split('\n').slice(0, 2)).toEqual(['usage from 2026-03-01 09:00 to 10:00 UTC (counted per hour)', '']);
  });

  test('without since: from the first hour counted; without until: to the end of the current hour', async () => {
    const all = await usageReport({ by: 'consumer', now: NOW });
    expect(all).toMatchObject({ from: '2026-03-01T08:00:00.000Z', to: '2026-03-01T11:00:00.000Z', since: null, until: null });
    expect(calls(all)).toBe(111);
    // A later hour with counters (another replica's clock ahead) is counted and reported.
    await add({ hour: '2026-03-01T12:00:00Z', calls: 1000 });
    expect(await usageReport({ by: 'consumer', now: NOW })).toMatchObject({ to: '2026-03-01T13:00:00.000Z' });
    // One consumer's rows only.
    await add({ hour: '2026-03-01T05:00:00Z', consumer_id: 'bob' });
    expect(await usageReport({ by: 'consumer', consumerId: 'alice', now: NOW })).toMatchObject({ from: '2026-03-01T08:00:00.000Z' });
  });

  test('nothing counted and no since: from is null', async () => {
    const report = await usageReport({ by: 'consumer', consumerId: 'nobody', now: NOW });
    expect(report).toMatchObject({ from: null, to: '2026-03-01T11:00:00.000Z', rows: [] });
    expect(usageText(report).split('\n')[0]).toBe('usage up to 2026-03-01 11:00 UTC (counted per hour)');
  });

  test('a range across midnight names both days', async () => {
    const report = await usageReport({ by: 'consumer', since: '2026-02-28T23:30:00Z', until: '2026-03-01T00:00:00Z', now: NOW });
    expect(report).toMatchObject({ from: '2026-02-28T23:00:00.000Z', to: '2026-03-01T00:00:00.000Z' });
    expect(usageText(report).split('\n')[0]).toBe('usage from 2026-02-28 23:00 to 2026-03-01 00:00 UTC (counted per hour)');
  });
});

describeEngines(engines, 'the table', (t) => {
  const { add, usageReport } = on(t);

  test('one format per kind of column: ms with two decimals, cost with six, counts whole; aligned right', async () => {
    await add(
      { consumer_id: 'alice', calls: 5, errors: 1, latency_ms: 1, latency_max_ms: 0.2, cost: 0.002 * 5 },
      { consumer_id: 'bob', calls: 1, denied: 1, latency_ms: 107, cost: 0.01 },
    );
    const text = usageText(await usageReport({ by: 'consumer', now: NOW }));
    expect(text.split('\n').slice(2)).toEqual([
      'consumer  calls  errors  denied  rate_limited  avg_ms  max_ms      cost',
      'alice         5       1       0             0    0.20    0.20  0.010000',
      'bob           1       0       1             0  107.00  107.00  0.010000',
      'TOTAL         6       1       1             0   18.00  107.00  0.020000',
      '',
    ]);
  });

  test('--by tool shows the server beside each tool', async () => {
    await add({ server: 'github', tool: 'search' }, { server: 'stripe', tool: 'search' });
    const text = usageText(await usageReport({ by: 'tool', now: NOW }));
    expect(text).toMatch(/^server\s+tool\s+calls/m);
    expect(text).toMatch(/^github\s+search\s+1\s/m);
    expect(text).toMatch(/^TOTAL\s+-\s+2\s/m);
  });
});

test('formatUtc: to the minute, to the second when it has seconds, without the date on the same day', () => {
  expect(formatUtc('2026-03-01T10:00:00.000Z')).toBe('2026-03-01 10:00');
  expect(formatUtc('2026-03-01T10:27:14.999Z')).toBe('2026-03-01 10:27:14');
  expect(formatUtc('2026-03-01T11:00:00.000Z', '2026-03-01T10:00:00.000Z')).toBe('11:00');
  expect(formatUtc('2026-03-02T00:00:00.000Z', '2026-03-01T23:00:00.000Z')).toBe('2026-03-02 00:00');
});
