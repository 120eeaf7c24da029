/**
 * Which buckets a request draws from (design §5): one per consumer (`defaultPerMinute`, `burst`,
 * or the key's own limit), plus one for every matching rule, per consumer, key or globally. A
 * request needs a token from every bucket it matches; it takes them all or none.
 */
import { compileGlob } from '../config/glob.js';
import type { RateLimitConfig } from '../config/schema.js';
import type { Identity } from '../identity/identity.js';
import type { Target } from '../policy/types.js';
import { TokenBucket } from './bucket.js';

/** Admitted, or refused with when to retry and the bucket that refused. */
export type BucketAdmission = { readonly ok: true } | { readonly ok: false; readonly retryAfterMs: number; readonly bucket: string };

/** Also: the store of the buckets (Redis) could not be asked; `rateLimit.onStoreError` decided to refuse. */
export type Admission = BucketAdmission | { readonly ok: false; readonly storeError: string };

/** A bucket a request draws from: its id and size. */
export interface BucketSpec {
  readonly id: string;
  readonly perMinute: number;
  readonly burst: number;
}

/** What the throttle stage asks: the memory limiter below, or the Redis one (redis.ts). */
export interface Limiter {
  readonly enabled: boolean;
  admit(identity: Identity, target: Target, keyLimit: KeyLimit | null): Admission | Promise<Admission>;
  close?(): Promise<void>;
}

export interface KeyLimit {
  readonly perMinute: number;
  readonly burst?: number | undefined;
}

interface CompiledRule {
  readonly index: number;
  readonly server: ((s: string) => boolean) | null;
  readonly tool: ((s: string) => boolean) | null;
  readonly roles: ReadonlySet<string> | null;
  readonly perMinute: number;
  readonly burst: number;
  readonly per: 'consumer' | 'key' | 'global';
}

/** Sweep full buckets (which carry no state) every this many requests, so memory stays bounded. */
const SWEEP_EVERY = 10_000;

/** The buckets a request matches (design §5), whatever store holds them. */
export class BucketPlan {
  private readonly rules: readonly CompiledRule[];

  constructor(private readonly config: RateLimitConfig) {
    const glob = (g: string | undefined) => (g === undefined ? null : compileGlob(g));
    this.rules = config.rules.map((r, index) => ({
      index,
      server: glob(r.server),
      tool: glob(r.tool),
      roles: r.roles ? new Set(r.roles) : null,
      perMinute: r.perMinute,
      burst: r.burst ?? r.perMinute,
      per: r.per,
    }));
  }

  /** The caller's own bucket, then one per matching rule. A bucket holds at least one call. */
  match(identity: Identity, target: Target, keyLimit: KeyLimit | null): BucketSpec[] {
    const perMinute = keyLimit?.perMinute ?? this.config.defaultPerMinute;
    const burst = keyLimit?.burst ?? (keyLimit ? keyLimit.perMinute : (this.config.burst ?? perMinute));
    const own = keyLimit && identity.keyId ? `key:${identity.keyId}` : `consumer:${identity.consumerId}`;
    // A call takes a whole token: a bucket smaller than one would refuse every call forever while
    // promising a retry (`burst: 0.5` passes the schema's "positive").
    const specs: BucketSpec[] = [{ id: own, perMinute, burst: Math.max(1, burst) }];
    for (const rule of this.rules) {
      if (rule.server && !rule.server(target.server)) continue;
      if (rule.tool && (target.kind !== 'tool' || !rule.tool(target.name))) continue;
      if (rule.roles && !identity.roles.some((r) => rule.roles!.has(r))) continue;
      const scope =
        rule.per === 'global' ? '*' : rule.per === 'key' && identity.keyId ? `key:${identity.keyId}` : `consumer:${identity.consumerId}`;
      specs.push({ id: `rule${rule.index}:${scope}`, perMinute: rule.perMinute, burst: Math.max(1, rule.burst) });
    }
    return specs;
  }
}

export class RateLimiter implements Limiter {
  private readonly buckets = new Map<string, TokenBucket>();
  private readonly plan: BucketPlan;
  private requests = 0;

  constructor(
    private readonly config: RateLimitConfig,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.plan = new BucketPlan(config);
  }

  get enabled(): boolean {
    return this.config.enabled;
  }

  /** Admits the request (taking one token from each matching bucket) or says when to retry. */
  admit(identity: Identity, target: Target, keyLimit: KeyLimit | null): BucketAdmission {
    if (!this.config.enabled) return { ok: true };
    const now = this.now();
    if (++this.requests % SWEEP_EVERY === 0) this.sweep(now);
    const matched = this.plan.match(identity, target, keyLimit).map((b) => [b.id, this.bucket(b.id, b.perMinute, b.burst, now)] as const);

    let refusal: { retryAfterMs: number; bucket: string } | null = null;
    for (const [id, bucket] of matched) {
      const wait = bucket.waitMs(now);
      if (wait > 0 && (!refusal || wait > refusal.retryAfterMs)) refusal = { retryAfterMs: wait, bucket: id };
    }
    if (refusal) return { ok: false, ...refusal };
    for (const [, bucket] of matched) bucket.take(now);
    return { ok: true };
  }

  private bucket(id: string, perMinute: number, burst: number, now: number): TokenBucket {
    let bucket = this.buckets.get(id);
    if (!bucket || bucket.perMinute !== perMinute || bucket.burst !== burst) {
      bucket = new TokenBucket(perMinute, burst, now);
      this.buckets.set(id, bucket);
    }
    return bucket;
  }

  private sweep(now: number): void {
    for (const [id, bucket] of this.buckets) if (bucket.isFull(now)) this.buckets.delete(id);
  }
}
