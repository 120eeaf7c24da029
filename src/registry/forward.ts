/**
 * The innermost stage: sends an authorized, admitted request to its child server (or to the
 * gateway's own tools) and puts the redacted answer on the context. Every request that reaches a
 * child comes through here: calls, prompts, reads, subscriptions and completions alike.
 */
import { GatewayError, unknownTarget } from '../errors.js';
import type { CallContext, ResultObject } from '../pipeline/context.js';
import type { Stage } from '../pipeline/compose.js';
import type { Redactor } from '../secrets/redactor.js';
import { relayedCapabilities, upstream } from './child.js';
import { exchange, type InputOptions } from './input.js';
import type { Registry } from './registry.js';
import type { ArgumentValidator } from './validate.js';

/** Runs one of the gateway's own tools (server "gateway"). */
export type AdminHandler = (ctx: CallContext) => Promise<ResultObject>;

export interface ForwardOptions {
  readonly registry: Registry;
  readonly validator: ArgumentValidator;
  readonly redactor: Redactor;
  readonly admin: AdminHandler;
  /** Where a call's requests for the agent's input go across protocol eras (registry/input.ts). */
  readonly input: InputOptions;
}

/** How long the answer to a request waits after a progress notification to it (see forward). */
const PROGRESS_GAP_MS = 15;

const NO_COMPLETION: ResultObject = Object.freeze({ completion: Object.freeze({ values: [], hasMore: false }) });

export function forward({ registry, validator, redactor, admin, input }: ForwardOptions): Stage<CallContext> {
  return async function forward(ctx) {
    const { server, kind, name, method, progressToken, invalid } = ctx.request;
    // Refusals before any server is involved are decided by routing (audit `decided_by`).
    if (invalid !== undefined) {
      ctx.fail(new GatewayError('INVALID_ARGUMENTS', `the request is malformed: ${invalid}`), 'route');
      return;
    }
    if (server === null) {
      ctx.fail(unknownTarget(kind === 'admin' ? 'tool' : kind, name), 'route');
      return;
    }
    if (kind === 'admin') {
      ctx.result = await (ctx.request.run ?? (() => admin(ctx)))();
      return;
    }
    const child = registry.childFor(server, ctx.session.identity.consumerId);
    if (!child) throw unknownTarget(kind, name);
    // A child not running holds no subscription: nothing to end there. One another agent still
    // wants stays (the front says so with `run`).
    if (method === 'resources/unsubscribe' && (child.state !== 'ready' || ctx.request.run)) {
      ctx.result = ctx.request.run ? await ctx.request.run() : {};
      return;
    }
    if (child.state !== 'ready') await child.ready();
    const catalog = child.catalog;

    let params: Record<string, unknown>;
    switch (method) {
      case 'tools/call': {
        const tool = catalog.toolsByName.get(name);
        if (!tool) throw unknownTarget('tool', registry.exposedName(server, name));
        validator.check(server, tool, ctx.arguments);
        const own = upstream(catalog, 'tool', name);
        params = ctx.arguments === undefined ? { name: own } : { name: own, arguments: ctx.arguments };
        break;
      }
      case 'prompts/get': {
        if (!catalog.promptsByName.has(name)) throw unknownTarget('prompt', registry.exposedName(server, name));
        const own = upstream(catalog, 'prompt', name);
        params = ctx.arguments === undefined ? { name: own } : { name: own, arguments: ctx.arguments };
        break;
      }
      case 'resources/read':
      case 'resources/subscribe':
      case 'resources/unsubscribe':
        if (method !== 'resources/read' && !child.serverCapabilities?.resources?.subscribe) {
          throw new GatewayError('UPSTREAM_ERROR', `server "${server}" does not support resource subscriptions`, {
            server,
            upstreamCode: -32601,
          });
        }
        params = { uri: upstream(catalog, 'resource', name) };
        break;
      case 'completion/complete': {
        // Answered here when the server cannot complete: an empty completion, as MCP asks.
        if (!child.serverCapabilities?.completions) {
          ctx.result = NO_COMPLETION;
          return;
        }
        const ref = ctx.request.params?.['ref'] as Record<string, unknown>;
        const own = kind === 'prompt' ? { ...ref, name: upstream(catalog, 'prompt', name) } : ref;
        params = { ...ctx.request.params, ref: own };
        break;
      }
      default:
        throw new Error(`forward: no route for ${method}`);
    }
    if (ctx.request.meta) params['_meta'] = ctx.request.meta;

    let lastProgress = -Infinity;
    const onprogress =
      progressToken === undefined
        ? undefined
        : (progress: Record<string, unknown>) => {
            lastProgress = performance.now();
            void ctx.request.notify('notifications/progress', { ...redactor.value(progress), progressToken });
          };
    ctx.forwarded = true;
    const { agent } = ctx.request;
    const caller = { capabilities: relayedCapabilities(agent.capabilities), logLevel: agent.logLevel };
    const result = await exchange(input, ctx, child, method, params, { signal: ctx.signal, onprogress, caller });
    // SDK clients drop a progress notification read in the same chunk as the response (typescript-sdk
    // #2580): the answer to a request that just had progress waits a moment, so the last step shows.
    const sinceProgress = performance.now() - lastProgress;
    if (sinceProgress < PROGRESS_GAP_MS) await new Promise((resolve) => setTimeout(resolve, PROGRESS_GAP_MS - sinceProgress));
    ctx.result = redactor.value(withoutHopFields(result));
  };
}

/**
 * A child's result without what describes the child's own hop: its identity
 * (`_meta["io.modelcontextprotocol/serverInfo"]`) and its cache hints (`ttlMs`, `cacheScope`).
 * Relayed as they are, they would be presented as the gateway's own; the SDK sets the gateway's.
 */
export function withoutHopFields(result: ResultObject): ResultObject {
  const meta = result['_meta'] as Record<string, unknown> | undefined;
  const hasServerInfo = meta !== undefined && typeof meta === 'object' && SERVER_INFO in meta;
  if (!hasServerInfo && !('ttlMs' in result) && !('cacheScope' in result)) return result;
  const { ttlMs: _ttl, cacheScope: _scope, ...rest } = result;
  if (hasServerInfo) {
    const { [SERVER_INFO]: _info, ...others } = meta;
    if (Object.keys(others).length > 0) rest['_meta'] = others;
    else delete rest['_meta'];
  }
  return rest;
}

const SERVER_INFO = 'io.modelcontextprotocol/serverInfo';
