/**
 * The innermost stage: sends an authorized, admitted request to its child server (or to the
 * gateway's own tools) and puts the redacted answer on the context.
 */
import { GatewayError } from '../errors.js';
import type { CallContext, ResultObject } from '../pipeline/context.js';
import type { Stage } from '../pipeline/compose.js';
import type { Redactor } from '../secrets/redactor.js';
import type { Registry } from './registry.js';
import type { ArgumentValidator } from './validate.js';

/** Runs one of the gateway's own tools (server "gateway"). */
export type AdminHandler = (ctx: CallContext) => Promise<ResultObject>;

export interface ForwardOptions {
  readonly registry: Registry;
  readonly validator: ArgumentValidator;
  readonly redactor: Redactor;
  readonly admin: AdminHandler;
}

export function forward({ registry, validator, redactor, admin }: ForwardOptions): Stage<CallContext> {
  return async function forward(ctx) {
    const { server, kind, name, progressToken, invalid } = ctx.request;
    // Refusals before any server is involved are decided by routing (audit `decided_by`).
    if (invalid !== undefined) {
      ctx.fail(new GatewayError('INVALID_ARGUMENTS', `the request is malformed: ${invalid}`), 'route');
      return;
    }
    if (server === null) {
      ctx.fail(new GatewayError('UNKNOWN_TOOL', `no server offers "${name}"; list_tools shows what you can call`, { tool: name }), 'route');
      return;
    }
    if (kind === 'admin') {
      ctx.result = await admin(ctx);
      return;
    }
    const child = registry.get(server);
    if (!child) throw new GatewayError('UNKNOWN_TOOL', `no server "${server}"`, { server });
    if (child.state !== 'ready') await child.ready();

    let method: string;
    let params: Record<string, unknown>;
    switch (kind) {
      case 'tool': {
        const tool = child.catalog.toolsByName.get(name);
        if (!tool) {
          throw new GatewayError('UNKNOWN_TOOL', `server "${server}" has no tool "${name}"; list_tools shows what you can call`, {
            server,
            tool: name,
          });
        }
        validator.check(server, tool, ctx.arguments);
        method = 'tools/call';
        params = ctx.arguments === undefined ? { name } : { name, arguments: ctx.arguments };
        break;
      }
      case 'prompt': {
        if (!child.catalog.promptsByName.has(name)) {
          throw new GatewayError('UNKNOWN_TOOL', `server "${server}" has no prompt "${name}"`, { server, prompt: name });
        }
        method = 'prompts/get';
        params = ctx.arguments === undefined ? { name } : { name, arguments: ctx.arguments };
        break;
      }
      case 'resource':
        method = 'resources/read';
        params = { uri: name };
        break;
    }
    if (ctx.request.meta) params['_meta'] = ctx.request.meta;

    const onprogress =
      progressToken === undefined
        ? undefined
        : (progress: Record<string, unknown>) => {
            void ctx.request.notify('notifications/progress', { ...redactor.value(progress), progressToken });
          };
    ctx.forwarded = true;
    const result: ResultObject = await child.request(method, params, { signal: ctx.signal, onprogress });
    ctx.result = redactor.value(result);
  };
}
