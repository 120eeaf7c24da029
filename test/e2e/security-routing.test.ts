/**
 * Security: config order wins in routing (docs/security.md C4). hostile-uri.js as "a", first in config,
 * serves the template evil://t/{x}; as "b", second, lists evil://t/payroll exactly. The
 * URI belongs to A: A serves its reads, B's resources/updated for it does not reach the agent,
 * and both `server_status` and `check --json` report the overlap, served by A.
 */
import type { JSONRPCNotification } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { TEST_KEY, call, fixture, testConfig, waitFor, waitListed, type Obj, type RunningGateway, MODERN } from '../helpers/gateway.js';
import { Gateways, cli, request, serverStatus } from '../helpers/security.js';

const URI = 'evil://t/payroll';
const CONFLICT = { uri: URI, servers: ['a', 'b'], servedBy: 'a' };
const config = testConfig({
  limits: { listWaitMs: 30_000 },
  servers: [
    { id: 'a', ...fixture('hostile-uri.js'), env: { FIXTURE_ROLE: 'a' } },
    { id: 'b', ...fixture('hostile-uri.js'), env: { FIXTURE_ROLE: 'b' } },
  ],
});

const gateways = new Gateways();
afterAll(() => gateways.closeAll());

describe('a URI claimed by a template of the first server and listed by the second', () => {
  let gw: RunningGateway;
  const notifications: JSONRPCNotification[] = [];
  const updates = () => notifications.filter((n) => n.method === 'notifications/resources/updated' && (n.params as Obj)['uri'] === URI);

  beforeAll(async () => {
    gw = await gateways.start({
      config,
      beforeConnect: (client) => {
        client.fallbackNotificationHandler = async (n) => {
          notifications.push(n as JSONRPCNotification);
        };
      },
    });
    await waitListed(gw.client, ['a__poke', 'b__poke']);
  });

  test('reading evil://t/payroll is served by a (first in config order)', async () => {
    const read = await request(gw.client, 'resources/read', { uri: URI });
    expect((read['contents'] as Obj[])[0]).toMatchObject({ uri: URI, text: 'served by a' });
    // Another URI of A's template, for comparison.
    const other = await request(gw.client, 'resources/read', { uri: 'evil://t/other' });
    expect((other['contents'] as Obj[])[0]).toMatchObject({ text: 'served by a' });
  });

  // A 2025-era mechanism (the 2026-07-28 one is tested in eras.test.ts).
  test.skipIf(MODERN)("after the agent subscribes, b's resources/updated for it never reaches the agent; a's does", async () => {
    await request(gw.client, 'resources/subscribe', { uri: URI });
    // B's notification, if relayed, is written before B's result; A's poke is the barrier after it.
    expect((await call(gw.client, 'b__poke'))['isError']).not.toBe(true);
    expect((await call(gw.client, 'a__poke'))['isError']).not.toBe(true);
    await waitFor(() => updates().length > 0, 10_000, "a's resources/updated");
    const by = updates().map((n) => ((n.params as Obj)['_meta'] as Obj | undefined)?.['fixture/by'] ?? 'unmarked');
    expect(by).not.toContain('b');
    expect(updates()).toHaveLength(1);
  });

  test('server_status uriConflicts lists the overlap: servers [a, b], servedBy a', async () => {
    const { uriConflicts } = await serverStatus(gw.client);
    expect(uriConflicts).toContainEqual(expect.objectContaining(CONFLICT));
  });

  test('`check --json` uriConflicts lists the overlap: servers [a, b], servedBy a', async () => {
    const run = await cli(['check', '--json', '--config', gw.configFile], { cwd: gw.dir, env: { TEST_KEY } });
    expect(run.code, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as { uriConflicts: Obj[] };
    expect(report.uriConflicts).toContainEqual(expect.objectContaining(CONFLICT));
  });
});
