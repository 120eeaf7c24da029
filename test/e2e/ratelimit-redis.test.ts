/**
 * rateLimit.store: redis with real gateway processes and the machine's Redis: two gateways (think
 * replicas) share one bucket exactly, and with Redis unreachable a call is refused
 * SERVER_UNAVAILABLE (fail closed), recorded, and never forwarded. Skipped, with a message naming
 * it, where no Redis answers.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { REDIS_URL, dropRedisPrefix, redisAnswers, redisPrefix } from '../helpers/redis.js';
import { call, errorCode, fixture, startGateway, testConfig, textOf, waitListed } from '../helpers/gateway.js';
import { auditRows } from '../helpers/security.js';

const PREFIX = redisPrefix('e2e');
const redisUp = await redisAnswers('ratelimit-redis e2e');

afterAll(async () => {
  if (!redisUp) return;
  await dropRedisPrefix(PREFIX);
});

const config = (redis: Record<string, unknown>, rateLimit: Record<string, unknown> = {}) =>
  testConfig({
    servers: [{ id: 'echo', ...fixture('echo.js') }],
    rateLimit: { store: 'redis', defaultPerMinute: 3, ...rateLimit },
    redis: { keyPrefix: PREFIX, ...redis },
  });

describe.skipIf(!redisUp)('rateLimit.store: redis across gateway processes', () => {
  it('two gateways with one bucket of 3 admit 3 calls between them, not 6', async () => {
    const a = await startGateway({ config: config({ url: REDIS_URL }) });
    const b = await startGateway({ config: config({ url: REDIS_URL }) });
    try {
      await waitListed(a.client, 'echo__echo');
      await waitListed(b.client, 'echo__echo');
      const outcomes: (string | undefined)[] = [];
      for (let i = 0; i < 3; i++) {
        outcomes.push(errorCode(await call(a.client, 'echo__echo', { message: 'a' })) ?? 'ok');
        outcomes.push(errorCode(await call(b.client, 'echo__echo', { message: 'b' })) ?? 'ok');
      }
      expect(outcomes.filter((o) => o === 'ok')).toHaveLength(3);
      expect(outcomes.filter((o) => o === 'RATE_LIMITED')).toHaveLength(3);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('rateLimit.store: redis, Redis unreachable', () => {
  it('refuses SERVER_UNAVAILABLE (fail closed), records the refusal and forwards nothing; onStoreError: open admits', async () => {
    const closed = await startGateway({ config: config({ url: 'redis://127.0.0.1:1', timeoutMs: 200 }) });
    try {
      await waitListed(closed.client, 'echo__echo');
      const result = await call(closed.client, 'echo__echo', { message: 'not forwarded' });
      expect(errorCode(result)).toBe('SERVER_UNAVAILABLE');
      expect(textOf(result)).toMatch(/rate-limit store/);
      const rows = auditRows(closed.dir).filter((r) => r['name'] === 'echo');
      expect(rows.map((r) => [r['status'], r['decided_by']])).toEqual([[expect.any(String), 'ratelimit:store']]);
    } finally {
      await closed.close();
    }
    const open = await startGateway({ config: config({ url: 'redis://127.0.0.1:1', timeoutMs: 200 }, { onStoreError: 'open' }) });
    try {
      await waitListed(open.client, 'echo__echo');
      expect(textOf(await call(open.client, 'echo__echo', { message: 'admitted' }))).toBe('admitted');
    } finally {
      await open.close();
    }
  });
});
