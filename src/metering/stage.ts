/**
 * The metering stage: adds every request to its consumer/server/tool/hour counters (design §7),
 * with the price of calls that reached a server (`pricing`). The recorder sums them in memory and
 * writes them within a second.
 */
import { compileGlob } from '../config/glob.js';
import type { ServerConfig } from '../config/schema.js';
import type { CallContext } from '../pipeline/context.js';
import type { Stage } from '../pipeline/compose.js';
import type { Recorder } from '../store/recorder.js';
import type { Redactor } from '../secrets/redactor.js';
import { hourOf } from './store.js';

const ERROR_STATUSES: ReadonlySet<string> = new Set(['error', 'invalid', 'timeout', 'unavailable', 'unauthenticated']);

/** Price of one forwarded call to `server`'s `tool`: first matching glob of `pricing.tools`, else `perCall`. */
export function pricer(servers: readonly ServerConfig[]): (server: string, tool: string) => number {
  const table = new Map(
    servers.map((s) => [
      s.id,
      {
        perCall: s.pricing?.perCall ?? 0,
        tools: Object.entries(s.pricing?.tools ?? {}).map(([glob, price]) => [compileGlob(glob), price] as const),
      },
    ]),
  );
  return (server, tool) => {
    const p = table.get(server);
    if (!p) return 0;
    for (const [match, price] of p.tools) if (match(tool)) return price;
    return p.perCall;
  };
}

/** The methods a request is counted and priced by its name alone: the use of a tool, prompt or resource. */
const USES: ReadonlySet<string> = new Set(['tools/call', 'prompts/get', 'resources/read']);

export function meter(recorder: Recorder, servers: readonly ServerConfig[], redactor: Redactor): Stage<CallContext> {
  const price = pricer(servers);
  return async function meter(ctx, next) {
    try {
      await next();
    } finally {
      const status = ctx.status;
      const server = ctx.server ?? '(unknown)';
      const use = USES.has(ctx.method);
      recorder.addUsage({
        hour: hourOf(ctx.ts),
        consumer_id: ctx.session.identity.consumerId,
        server,
        // The name is as the agent sent it: it may hold a secret (`nosuch__<key>`). Other requests
        // (subscriptions, completions, log level) are counted apart from the uses of the same name.
        tool: redactor.text(use || ctx.kind === 'admin' ? ctx.name : `${ctx.method} ${ctx.name}`),
        calls: 1,
        errors: ERROR_STATUSES.has(status) ? 1 : 0,
        denied: status === 'denied' ? 1 : 0,
        rate_limited: status === 'rate_limited' ? 1 : 0,
        latency_ms: ctx.elapsedMs(),
        cost: ctx.forwarded && use ? price(server, ctx.name) : 0,
      });
    }
  };
}
