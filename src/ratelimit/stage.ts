/**
 * The throttle stage: a request the buckets refuse is not forwarded; it ends RATE_LIMITED with
 * `retryAfterMs`.
 */
import { GatewayError } from '../errors.js';
import type { CallContext } from '../pipeline/context.js';
import { DONE, type Stage } from '../pipeline/compose.js';
import type { Admission, Limiter } from './limiter.js';

export function throttle(limiter: Limiter): Stage<CallContext> {
  const decide = (ctx: CallContext, admission: Admission, next: () => Promise<void>): Promise<void> => {
    if (admission.ok) return next();
    if ('storeError' in admission) {
      ctx.fail(
        new GatewayError('SERVER_UNAVAILABLE', `the rate-limit store cannot be reached (${admission.storeError}); retry shortly`),
        'ratelimit:store',
      );
      return DONE;
    }
    return refuse(ctx, admission);
  };
  return function throttle(ctx, next) {
    if (limiter.enabled && ctx.identity) {
      const target = { server: ctx.server ?? '', kind: ctx.kind === 'admin' ? ('tool' as const) : ctx.kind, name: ctx.name };
      const admission = limiter.admit(ctx.identity, target, ctx.session.rateLimit);
      // The memory store answers at once; Redis after a round trip.
      if (admission instanceof Promise) return admission.then((a) => decide(ctx, a, next));
      return decide(ctx, admission, next);
    }
    return next();
  };
}

function refuse(ctx: CallContext, admission: { retryAfterMs: number; bucket: string }): Promise<void> {
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
