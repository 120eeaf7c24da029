/**
 * Turns whatever an inner stage throws into the request's outcome, so the stages around it (the
 * recorders) always see a settled context. A GatewayError is kept as it is; anything else is a
 * gateway bug: logged with its stack, and reported to the agent without detail.
 */
import { GatewayError, isGatewayError } from '../errors.js';
import type { Logger } from '../log.js';
import type { CallContext } from './context.js';
import type { Stage } from './compose.js';

export function settle(log: Logger): Stage<CallContext> {
  return async function settle(ctx, next) {
    try {
      await next();
    } catch (err) {
      if (isGatewayError(err)) {
        ctx.fail(err);
        return;
      }
      log.error(`internal error on ${ctx.kind} ${ctx.server ?? '?'}/${ctx.name}: ${(err as Error)?.stack ?? String(err)}`);
      ctx.fail(new GatewayError('INTERNAL_ERROR', 'the gateway could not handle this request; its operator can find the cause in its log'));
    }
  };
}
