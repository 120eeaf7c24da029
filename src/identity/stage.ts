/**
 * The identify stage: confirms the session's credential is still valid for this request (a key
 * revoked, disabled, rotated or expired since the session began is refused here).
 */
import { isGatewayError } from '../errors.js';
import type { CallContext } from '../pipeline/context.js';
import { DONE, type Stage } from '../pipeline/compose.js';

export function identify(): Stage<CallContext> {
  const refuse = (ctx: CallContext, err: unknown) => {
    if (!isGatewayError(err)) throw err;
    ctx.fail(err, 'identity');
    return DONE;
  };
  // Not async: a check that passes hands on the inner stages' promise instead of wrapping it. The
  // check is a promise only where the key store is shared (PostgreSQL).
  return function identify(ctx, next) {
    let identity;
    try {
      identity = ctx.session.verify();
    } catch (err) {
      return refuse(ctx, err);
    }
    if (identity instanceof Promise) {
      return identity.then(
        (id) => {
          ctx.identity = id;
          return next();
        },
        (err: unknown) => refuse(ctx, err),
      );
    }
    ctx.identity = identity;
    return next();
  };
}
