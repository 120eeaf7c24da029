/**
 * The authorize stage: asks the policy engine about the request's target and arguments, and
 * refuses with FORBIDDEN (naming the deciding rule) when it is not allowed.
 */
import { GATEWAY_SERVER_ID } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import type { CallContext } from '../pipeline/context.js';
import { DONE, type Stage } from '../pipeline/compose.js';
import type { Decision, Target } from './types.js';
import type { Identity } from '../identity/identity.js';

export interface Decider {
  decide(identity: Identity, target: Target, args: Readonly<Record<string, unknown>> | undefined): Decision;
}

export function authorize(engine: Decider, separator: string): Stage<CallContext> {
  return function authorize(ctx, next) {
    // Nothing to authorize: an unknown name (refused later as UNKNOWN_TOOL) or an entry point.
    if (ctx.server === null || ctx.request.entryPoint || !ctx.identity) return next();
    const kind = ctx.kind === 'admin' ? 'tool' : ctx.kind;
    const decision = engine.decide(ctx.identity, { server: ctx.server, kind, name: ctx.name }, ctx.arguments);
    ctx.decision = decision;
    if (!decision.allowed) {
      const what =
        ctx.kind === 'resource'
          ? `read ${ctx.name}`
          : `use ${kind} ${ctx.server === GATEWAY_SERVER_ID ? ctx.name : `${ctx.server}${separator}${ctx.name}`}`;
      ctx.fail(new GatewayError('FORBIDDEN', `you may not ${what} (decided by ${decision.decidedBy})`, { decidedBy: decision.decidedBy }));
      return DONE;
    }
    return next();
  };
}
