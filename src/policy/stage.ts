/**
 * The authorize stage: asks the policy engine about the request's target and arguments, and
 * refuses with FORBIDDEN (naming the deciding rule) when it is not allowed. What the caller may
 * never use is refused as if it did not exist, with the very answer a name that exists nowhere
 * gets: a refusal must not tell a caller what is behind it (the audit row keeps the truth).
 */
import { GATEWAY_SERVER_ID } from '../config/schema.js';
import { GatewayError, unknownTarget, type TargetNoun } from '../errors.js';
import type { CallContext } from '../pipeline/context.js';
import { DONE, type Stage } from '../pipeline/compose.js';
import type { Decision, Target } from './types.js';
import type { Identity } from '../identity/identity.js';

export interface Decider {
  decide(identity: Identity, target: Target, args: Readonly<Record<string, unknown>> | undefined): Decision;
  /** Whether some arguments could make `decide` allow the target (whether it is listed to the caller). */
  mayAllow(identity: Identity, target: Target): boolean;
}

/**
 * `exposedName` is how the agent sees a server's tool or prompt (registry.exposedName: the
 * server's prefix, or its own name with `prefix: ""`), for messages.
 */
export function authorize(engine: Decider, exposedName: (server: string, name: string) => string): Stage<CallContext> {
  /** The name as the agent knows it: `<server><sep><name>`, a gateway tool's own name, or a URI. */
  const shownName = (ctx: CallContext) =>
    ctx.request.askedAs ??
    (ctx.kind === 'resource' || ctx.server === null || ctx.server === GATEWAY_SERVER_ID ? ctx.name : exposedName(ctx.server, ctx.name));

  return function authorize(ctx, next) {
    // A malformed request is refused by the forward stage (INVALID_ARGUMENTS); an entry point has
    // no permission of its own (what it reaches is authorized by itself).
    if (ctx.request.invalid !== undefined || ctx.request.entryPoint || !ctx.identity) return next();
    const noun: TargetNoun = ctx.kind === 'admin' ? 'tool' : ctx.kind;
    if (ctx.server === null) {
      // Refused here, before the rate limit, like a target the caller may never see: the two
      // must not differ even in the tokens they take.
      ctx.fail(unknownTarget(noun, shownName(ctx)), 'route');
      return DONE;
    }
    const target: Target = { server: ctx.server, kind: noun, name: ctx.name };
    const decision = engine.decide(ctx.identity, target, ctx.arguments);
    ctx.decision = decision;
    if (!decision.allowed) {
      const name = shownName(ctx);
      const what = ctx.kind === 'resource' ? `read ${name}` : `use ${noun} ${name}`;
      const hidden = !engine.mayAllow(ctx.identity, target);
      ctx.fail(
        new GatewayError(
          'FORBIDDEN',
          `you may not ${what} (decided by ${decision.decidedBy})`,
          { decidedBy: decision.decidedBy },
          hidden ? unknownTarget(noun, name) : undefined,
        ),
      );
      return DONE;
    }
    return next();
  };
}
