/**
 * Security: bounded memory (docs/security.md C5). A child that floods log notifications faster
 * than the agent reads them, or answers tools/list with a catalog of hundreds of megabytes, must
 * not grow the gateway without bound: the gateway drops what the agent cannot take (and counts it,
 * `droppedNotifications` in server_status), and cuts a catalog to its limit (`catalogLimited`),
 * relaying lists to the agent in pages of its own, never one reply larger than 16 MiB.
 */
import { afterAll, describe, expect, test } from 'vitest';
import { anyResult, call, fixture, testConfig, textOf, waitFor, waitListed, type Obj, MODERN } from '../helpers/gateway.js';
import { Gateways, request, rssBytes, statusOf } from '../helpers/security.js';

const MiB = 1024 * 1024;
const gateways = new Gateways();
afterAll(() => gateways.closeAll());

describe('a child flooding notifications/message', () => {
  // A 2025-era mechanism (the 2026-07-28 one is tested in eras.test.ts).
  test.skipIf(MODERN)(
    '200,000 × 1 KiB log messages to an agent at level debug: the gateway stays under 300 MiB, still answers, and counts drops',
    async () => {
      let logged = 0;
      const gw = await gateways.start({
        config: testConfig({
          limits: { listWaitMs: 30_000 },
          servers: [
            { id: 'flood', ...fixture('hostile-flood.js'), timeoutMs: 600_000 },
            { id: 'echo', ...fixture('echo.js') },
          ],
        }),
        beforeConnect: (client) => {
          client.fallbackNotificationHandler = async (n) => {
            if (n.method === 'notifications/message') logged++;
          };
        },
      });
      await waitListed(gw.client, ['flood__flood', 'echo__echo']);
      await gw.client.setLoggingLevel('debug');

      let maxRss = rssBytes(gw.pid) ?? 0;
      const sampler = setInterval(() => {
        const rss = rssBytes(gw.pid);
        if (rss !== null && rss > maxRss) maxRss = rss;
      }, 100);
      let flooded: Obj;
      try {
        flooded = (await gw.client.request(
          { method: 'tools/call', params: { name: 'flood__flood', arguments: { count: 200_000, bytes: 1024 } } } as never,
          anyResult,
          { timeout: 600_000 },
        )) as Obj;
      } finally {
        clearInterval(sampler);
      }
      expect(textOf(flooded)).toBe('sent 200000');
      expect(maxRss / MiB, `the gateway's largest VmRSS in MiB (the agent got ${logged} messages)`).toBeLessThan(300);

      // Still answering, and the drops are counted.
      expect(textOf(await call(gw.client, 'echo__echo', { message: 'after the flood' }))).toBe('after the flood');
      const status = await statusOf(gw.client, 'flood');
      expect(typeof status['droppedNotifications']).toBe('number');
      expect(status['droppedNotifications']).toBeGreaterThanOrEqual(0);
    },
    600_000,
  );
});

describe('a child answering tools/list with 60 pages of about 4 MB', () => {
  test('the agent gets pages of the gateway (nextCursor), each under 4 MiB; server_status says the catalog was cut', async () => {
    const gw = await gateways.start({
      config: testConfig({
        limits: { listWaitMs: 30_000 },
        servers: [
          { id: 'catalog', ...fixture('hostile-catalog.js'), startTimeoutMs: 300_000, timeoutMs: 300_000 },
          { id: 'echo', ...fixture('echo.js') },
        ],
      }),
    });
    // Ready, seen through server_status: a tools/list before the walk below would be the first page.
    for (const id of ['catalog', 'echo']) {
      await waitFor(async () => (await statusOf(gw.client, id))['state'] === 'ready', 300_000, `${id} to be ready`);
    }

    const pages: { bytes: number; tools: number; cursor: unknown }[] = [];
    let cursor: string | undefined;
    do {
      const page = await request(gw.client, 'tools/list', cursor === undefined ? {} : { cursor }, 120_000).catch((err: Error) => {
        // The SDK client gives up on a line over 10 MiB and closes the connection.
        throw new Error(`tools/list page ${pages.length + 1} failed: ${err.message}`);
      });
      const bytes = Buffer.byteLength(JSON.stringify(page));
      pages.push({ bytes, tools: (page['tools'] as unknown[]).length, cursor: page['nextCursor'] });
      expect(bytes, `page ${pages.length}`).toBeLessThan(4 * MiB);
      cursor = typeof page['nextCursor'] === 'string' ? page['nextCursor'] : undefined;
      expect(pages.length, 'pages walked').toBeLessThan(1_000);
    } while (cursor !== undefined);
    expect(pages.length, 'the first page has a nextCursor').toBeGreaterThan(1);
    expect(pages.reduce((n, p) => n + p.tools, 0)).toBeGreaterThan(0);

    const status = await statusOf(gw.client, 'catalog');
    expect(typeof status['catalogLimited'], 'catalogLimited').toBe('string');
    expect(String(status['catalogLimited']).length).toBeGreaterThan(0);
    // The gateway is still fine.
    expect(textOf(await call(gw.client, 'echo__echo', { message: 'ok' }))).toBe('ok');
  }, 600_000);
});
