/**
 * The throttle stage: a request the buckets refuse is not forwarded; it ends RATE_LIMITED with
 * `retryAfterMs`.
 */
import { GatewayError } from '../errors.js';
import type { CallContext } from '../pipeline/context.js';
import { DONE, type Stage } from '../pipeline/compose.js';
import type { RateLimiter } from './limiter.js';

export function throttle(limiter: RateLimiter): Stage<CallContext> {
  return function throttle(ctx, next) {
    if (limiter.enabled && ctx.identity) {
      const target = { server: ctx.server ?? '', kind: ctx.kind === 'admin' ? ('tool' as const) : ctx.kind, name: ctx.name };
      const admission = limiter.admit(ctx.identity, target, ctx.session.rateLimit);
      if (!admission.ok) {
        const seconds = Math.ceil(admission.retryAfterMs / 1000);
        ctx.fail(
          new GatewayError('RATE_LIMITED', `rate limit reached; retry in ${seconds} s`, {
            retryAfterMs: admission.retryAfterMs,
            bucket: admission.bucket,
          }),
          `ratelimit:${admission.bucket}`,
        );
        return DONE;
      }
    }
    return next();
  };
}
