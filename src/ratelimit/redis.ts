/**
 * Token buckets in Redis (`rateLimit.store: redis`), shared by every replica: one Lua script per
 * request checks every bucket the request matches on the Redis server's clock and takes a token
 * from each, or from none, atomically, so N replicas admit exactly what one would. When Redis
 * cannot be asked in time, `rateLimit.onStoreError` decides: refuse (closed, the default) or admit.
 */
import { Redis } from 'ioredis';
import type { GatewayConfig, RateLimitConfig } from '../config/schema.js';
import type { Identity } from '../identity/identity.js';
import type { Logger } from '../log.js';
import type { Target } from '../policy/types.js';
import { BucketPlan, type Admission, type KeyLimit, type Limiter } from './limiter.js';

/**
 * KEYS: one hash per bucket {t: tokens, ts: ms}; ARGV: perMinute and burst of each. Returns {0}
 * (admitted, a token taken from each) or {1, wait ms, index of the bucket that refused}.
 */
const TAKE = `
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local tokens = {}
local worst, worstAt = 0, 0
for i = 1, #KEYS do
  local rate = tonumber(ARGV[2 * i - 1]) / 60000
  local burst = tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', KEYS[i], 't', 'ts')
  local t, ts = tonumber(state[1]), tonumber(state[2])
  if t == nil or ts == nil then t, ts = burst, now end
  t = math.min(burst, t + math.max(0, now - ts) * rate)
  tokens[i] = t
  if t < 1 then
    local wait = math.ceil((1 - t) / rate)
    if wait > worst then worst, worstAt = wait, i end
  end
end
if worstAt > 0 then return {1, worst, worstAt} end
for i = 1, #KEYS do
  local rate = tonumber(ARGV[2 * i - 1]) / 60000
  local burst = tonumber(ARGV[2 * i])
  redis.call('HSET', KEYS[i], 't', tostring(tokens[i] - 1), 'ts', now)
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate) + 1000)
end
return {0}
`;

type TakeCommand = (numKeys: number, ...args: (string | number)[]) => Promise<number[]>;

export class RedisRateLimiter implements Limiter {
  private readonly plan: BucketPlan;
  private readonly redis: Redis & { bucketTake: TakeCommand };
  private lastWarned = 0;
  private waiting: Promise<void> | undefined;
  private readonly timeoutMs: number;

  constructor(
    private readonly config: RateLimitConfig,
    redis: NonNullable<GatewayConfig['redis']>,
    private readonly log: Logger,
  ) {
    this.plan = new BucketPlan(config);
    this.timeoutMs = redis.timeoutMs;
    this.redis = new Redis(redis.url, {
      keyPrefix: redis.keyPrefix,
      // A request never waits for a reconnection: it fails now and onStoreError decides.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: redis.timeoutMs,
      connectTimeout: Math.max(redis.timeoutMs, 2_000),
      retryStrategy: (times) => Math.min(100 * times, 2_000),
    }) as Redis & { bucketTake: TakeCommand };
    this.redis.defineCommand('bucketTake', { lua: TAKE });
    this.redis.on('error', (err: Error) => this.warn(`redis: ${err.message}`));
  }

  get enabled(): boolean {
    return this.config.enabled;
  }

  async admit(identity: Identity, target: Target, keyLimit: KeyLimit | null): Promise<Admission> {
    if (!this.config.enabled) return { ok: true };
    const buckets = this.plan.match(identity, target, keyLimit);
    const args: (string | number)[] = buckets.map((b) => `bucket:${b.id}`);
    for (const b of buckets) args.push(b.perMinute, b.burst);
    let answer: number[];
    try {
      if (this.redis.status !== 'ready') await this.connected();
      answer = await this.redis.bucketTake(buckets.length, ...args);
    } catch (err) {
      const reason = (err as Error).message;
      this.warn(`rate-limit store: ${reason}${this.config.onStoreError === 'open' ? ' (requests admitted: onStoreError open)' : ''}`);
      return this.config.onStoreError === 'open' ? { ok: true } : { ok: false, storeError: reason };
    }
    if (answer[0] === 0) return { ok: true };
    return { ok: false, retryAfterMs: Number(answer[1]), bucket: buckets[Number(answer[2]) - 1]!.id };
  }

  /**
   * Waits (at most redis.timeoutMs) for the connection to be up: while it is being made, or made
   * again, a request waits for it rather than fail at once. One wait shared by all requests.
   */
  private connected(): Promise<void> {
    return (this.waiting ??= new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.redis.off('ready', onReady);
        reject(new Error(`no connection to Redis within ${this.timeoutMs} ms (${this.redis.status})`));
      }, this.timeoutMs);
      const onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      this.redis.once('ready', onReady);
    }).finally(() => (this.waiting = undefined)));
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  /** At most one warning every 10 s: an unreachable store must not flood the log. */
  private warn(message: string): void {
    const now = Date.now();
    if (now - this.lastWarned < 10_000) return;
    this.lastWarned = now;
    this.log.warn(message);
  }
}
