/**
 * Token buckets in Redis (rateLimit.store: redis), against the machine's Redis (127.0.0.1:6379,
 * REDIS_URL to change it): exact across replicas (three limiters, one bucket of 100: 100 calls
 * admitted, not 300), a refusal says which bucket and when, and an unreachable store refuses
 * (onStoreError: closed) or admits (open). Each run uses a key prefix of its own, deleted afterwards.
 * Where no Redis answers, the suite is skipped with a message naming it.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { REDIS_URL, dropRedisPrefix, redisAnswers, redisPrefix } from '../helpers/redis.js';
import { configSchema, type GatewayConfig } from '../../src/config/schema.js';
import type { Identity } from '../../src/identity/identity.js';
import { createLogger } from '../../src/log.js';
import { RedisRateLimiter } from '../../src/ratelimit/redis.js';

const PREFIX = redisPrefix('test');
const redisUp = await redisAnswers('ratelimit-redis');

const log = createLogger({ level: 'silent' });
const limiters: RedisRateLimiter[] = [];

function limiter(rateLimit: Record<string, unknown>, redis: Record<string, unknown> = {}): RedisRateLimiter {
  const config: GatewayConfig = configSchema.parse({
    rateLimit: { store: 'redis', ...rateLimit },
    redis: { url: REDIS_URL, keyPrefix: PREFIX, ...redis },
  });
  const l = new RedisRateLimiter(config.rateLimit, config.redis!, log);
  limiters.push(l);
  return l;
}

const caller = (consumerId: string): Identity =>
  Object.freeze({
    consumerId,
    keyId: `${consumerId}-key`,
    method: 'api-key' as const,
    roles: Object.freeze(['user']),
    claims: {},
    expiresAt: null,
  });
const echo = { server: 'echo', kind: 'tool' as const, name: 'echo' };

afterAll(async () => {
  await Promise.all(limiters.map((l) => l.close()));
  if (!redisUp) return;
  await dropRedisPrefix(PREFIX);
});

describe.skipIf(!redisUp)('rateLimit.store: redis', () => {
  it('three replicas sharing one bucket of 100 admit exactly 100 of 300 concurrent calls', async () => {
    const replicas = [limiter({ defaultPerMinute: 100 }), limiter({ defaultPerMinute: 100 }), limiter({ defaultPerMinute: 100 })];
    const who = caller('shared-bucket');
    const outcomes = await Promise.all(Array.from({ length: 300 }, (_, i) => replicas[i % 3]!.admit(who, echo, null)));
    expect(outcomes.filter((a) => a.ok)).toHaveLength(100);
    // Another consumer has a bucket of its own.
    expect((await replicas[0]!.admit(caller('someone-else'), echo, null)).ok).toBe(true);
  });

  it('a refusal names the bucket and when to retry; a rule bucket and the caller bucket are taken together or not at all', async () => {
    const l = limiter({ defaultPerMinute: 60, rules: [{ tool: 'echo', perMinute: 2, per: 'global' }] });
    const who = caller('rules');
    expect((await l.admit(who, echo, null)).ok).toBe(true);
    expect((await l.admit(who, echo, null)).ok).toBe(true);
    const third = await l.admit(who, echo, null);
    expect(third).toMatchObject({ ok: false, bucket: 'rule0:*' });
    expect((third as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(0);
    expect((third as { retryAfterMs: number }).retryAfterMs).toBeLessThanOrEqual(30_000);
    // The refused call took nothing from the caller's own bucket: 57 more calls of another tool pass.
    const other = { server: 'echo', kind: 'tool' as const, name: 'add' };
    let ok = 0;
    for (let i = 0; i < 60; i++) if ((await l.admit(who, other, null)).ok) ok++;
    expect(ok).toBe(58);
  });

  it("a key's own limit (keys create --rate) is its bucket", async () => {
    const l = limiter({ defaultPerMinute: 1_000 });
    const who = caller('keyed');
    const outcomes = [];
    for (let i = 0; i < 5; i++) outcomes.push(await l.admit(who, echo, { perMinute: 3 }));
    expect(outcomes.map((a) => a.ok)).toEqual([true, true, true, false, false]);
    expect(outcomes[3]).toMatchObject({ bucket: 'key:keyed-key' });
  });
});

describe('rateLimit.store: redis, when Redis cannot be reached', () => {
  it('refuses with a store error by default (fail closed), and admits with onStoreError: open', async () => {
    const closed = limiter({}, { url: 'redis://127.0.0.1:1', timeoutMs: 200 });
    const open = limiter({ onStoreError: 'open' }, { url: 'redis://127.0.0.1:1', timeoutMs: 200 });
    const refused = await closed.admit(caller('nobody'), echo, null);
    expect(refused.ok).toBe(false);
    expect('storeError' in refused && refused.storeError).toBeTruthy();
    expect((await open.admit(caller('nobody'), echo, null)).ok).toBe(true);
  });
});
