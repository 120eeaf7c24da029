/**
 * The identify stage: confirms the session's credential is still valid for this request (a key
 * revoked, disabled, rotated or expired since the session began is refused here).
 */
import { isGatewayError } from '../errors.js';
import type { CallContext } from '../pipeline/context.js';
import { DONE, type Stage } from '../pipeline/compose.js';

export function identify(): Stage<CallContext> {
  // Not async: a check that passes hands on the inner stages' promise instead of wrapping it.
  return function identify(ctx, next) {
    try {
      ctx.identity = ctx.session.verify();
    } catch (err) {
      if (!isGatewayError(err)) throw err;
      ctx.fail(err, 'identity');
      return DONE;
    }
    return next();
  };
}
