/**
 * Security: every request that reaches a child passes the pipeline (design §9, docs/security.md
 * A11). `resources/subscribe`, `resources/unsubscribe` and `completion/complete` are rate-limited
 * and audited like reads, one row per request, with the JSON-RPC method in the new `method`
 * column. A request's `_meta` is recorded (new column `meta`, JSON text), and a server's
 * `metaAllow` globs keep other `_meta` keys from reaching it.
 */
import { afterAll, describe, expect, test } from 'vitest';
import {
  EVERYTHING,
  TEST_KEY,
  anyResult,
  fixture,
  testConfig,
  waitListed,
  type Obj,
  type RunningGateway,
  MODERN,
} from '../helpers/gateway.js';
import { Gateways, auditRows, cli, request, rpcError } from '../helpers/security.js';

const EVERYTHING_SERVER = { id: 'everything', command: process.execPath, args: [EVERYTHING, 'stdio'] };
const LOOSE_SERVER = { id: 'loose', ...fixture('hostile-loose.js') };
/** Lists (and routing) wait for children still starting: the machine may be slow. */
const PATIENT = { limits: { listWaitMs: 30_000 } };
/** One request a minute, one at a time. */
const ONE_A_MINUTE = { rateLimit: { enabled: true, defaultPerMinute: 1, burst: 1 } };
const STATIC_URI = 'demo://resource/static/document/features.md';

const gateways = new Gateways();
afterAll(() => gateways.closeAll());

/** `mcp-gateway audit log --json` as a user runs it: every row, newest first. */
async function auditLogCli(gw: RunningGateway): Promise<Obj[]> {
  const run = await cli(['audit', 'log', '--json', '--limit', '1000', '--config', gw.configFile], { cwd: gw.dir, env: { TEST_KEY } });
  expect(run.code, run.stderr).toBe(0);
  return (JSON.parse(run.stdout) as { entries: Obj[] }).entries;
}

/** Waits until server-everything's resources are listed (its first start is over). */
async function everythingReady(gw: RunningGateway): Promise<void> {
  const listed = (await request(gw.client, 'resources/list', {}))['resources'] as Obj[];
  expect(listed.map((r) => r['uri'])).toContain(STATIC_URI);
}

describe('subscriptions and completions are rate-limited and audited like reads', () => {
  // A 2025-era mechanism (the 2026-07-28 one is tested in eras.test.ts).
  test.skipIf(MODERN)('25 resources/subscribe at 1 a minute: at most 1 admitted, the rest RATE_LIMITED; 25 audit rows', async () => {
    const gw = await gateways.start({ config: testConfig({ ...PATIENT, ...ONE_A_MINUTE, servers: [EVERYTHING_SERVER] }) });
    await everythingReady(gw);

    const outcomes = await Promise.allSettled(
      Array.from({ length: 25 }, () => request(gw.client, 'resources/subscribe', { uri: STATIC_URI })),
    );
    const admitted = outcomes.filter((o) => o.status === 'fulfilled');
    const refused = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as { data?: Obj }] : []));
    expect(admitted.length).toBeLessThanOrEqual(1);
    expect(refused.map((e) => e.data?.['code'])).toEqual(Array.from({ length: 25 - admitted.length }, () => 'RATE_LIMITED'));

    const rows = (await auditLogCli(gw)).filter((r) => r['name'] === STATIC_URI);
    expect(rows).toHaveLength(25);
    expect(rows.every((r) => r['method'] === 'resources/subscribe')).toBe(true);
    expect(rows.filter((r) => r['status'] === 'rate_limited')).toHaveLength(25 - admitted.length);
  });

  // A 2025-era mechanism (the 2026-07-28 one is tested in eras.test.ts).
  test.skipIf(MODERN)(
    'completion/complete and resources/unsubscribe at 1 a minute: the second request is RATE_LIMITED; each is audited',
    async () => {
      const gw = await gateways.start({ config: testConfig({ ...PATIENT, ...ONE_A_MINUTE, servers: [EVERYTHING_SERVER] }) });
      await everythingReady(gw);
      const complete = () =>
        request(gw.client, 'completion/complete', {
          ref: { type: 'ref/prompt', name: 'everything__completable-prompt' },
          argument: { name: 'department', value: 'E' },
        });

      const first = await complete();
      expect((first['completion'] as Obj)['values']).toEqual(['Engineering']);
      expect((await rpcError(complete())).data?.['code']).toBe('RATE_LIMITED');
      expect((await rpcError(request(gw.client, 'resources/unsubscribe', { uri: STATIC_URI }))).data?.['code']).toBe('RATE_LIMITED');

      const rows = auditRows(gw.dir);
      const completions = rows.filter((r) => r['method'] === 'completion/complete');
      expect(completions.map((r) => r['status'])).toEqual(['ok', 'rate_limited']);
      expect(rows.filter((r) => r['method'] === 'resources/unsubscribe').map((r) => r['status'])).toEqual(['rate_limited']);
    },
  );
});

describe('_meta of a request', () => {
  /** loose__meta with this `_meta`; the child answers the `_meta` it received. */
  const callWithMeta = (gw: RunningGateway, meta: Obj) =>
    gw.client.request({ method: 'tools/call', params: { name: 'loose__meta', arguments: { q: 1 }, _meta: meta } } as never, anyResult, {
      timeout: 60_000,
    }) as Promise<Obj>;

  test('is recorded in the audit row (column meta, JSON text); every row names its JSON-RPC method', async () => {
    const gw = await gateways.start({ config: testConfig({ ...PATIENT, servers: [LOOSE_SERVER, EVERYTHING_SERVER] }) });
    await waitListed(gw.client, ['loose__meta']);
    await everythingReady(gw);

    const result = await callWithMeta(gw, { 'x/sql': 'DROP TABLE' });
    // Without metaAllow every key passes (the default).
    expect((result['structuredContent'] as Obj)['meta']).toEqual({ 'x/sql': 'DROP TABLE' });
    await request(gw.client, 'resources/read', { uri: STATIC_URI });

    const rows = auditRows(gw.dir);
    const tool = rows.findLast((r) => r['name'] === 'meta')!;
    expect(tool['method']).toBe('tools/call');
    expect(typeof tool['meta']).toBe('string');
    expect(JSON.parse(String(tool['meta']))).toMatchObject({ 'x/sql': 'DROP TABLE' });
    expect(rows.findLast((r) => r['name'] === STATIC_URI)!['method']).toBe('resources/read');
  });

  test('with metaAllow ["io.modelcontextprotocol/*"], the child does not receive x/sql (but the audit row keeps it)', async () => {
    const gw = await gateways.start({
      config: testConfig({ ...PATIENT, servers: [{ ...LOOSE_SERVER, metaAllow: ['io.modelcontextprotocol/*'] }] }),
    });
    await waitListed(gw.client, ['loose__meta']);

    const result = await callWithMeta(gw, { 'x/sql': 'DROP TABLE', 'io.modelcontextprotocol/related-task': { taskId: 't-1' } });
    expect(result['isError']).not.toBe(true);
    const received = (result['structuredContent'] as Obj)['meta'] as Obj;
    expect(received).toEqual({ 'io.modelcontextprotocol/related-task': { taskId: 't-1' } });

    const row = auditRows(gw.dir).findLast((r) => r['name'] === 'meta')!;
    expect(JSON.parse(String(row['meta']))).toMatchObject({ 'x/sql': 'DROP TABLE' });
  });
});
