/**
 * The one mapping from a GatewayError to what goes on the wire (design §10): an `isError` tool
 * result for tool calls, a JSON-RPC error for requests that have no such form.
 */
import { ERROR_CODES, ERROR_META_KEY, errorText, type GatewayError } from '../errors.js';
import type { CallKind, ResultObject } from '../pipeline/context.js';

/** A refused or failed tool call as the agent sees it. */
export function toolErrorResult(error: GatewayError): ResultObject {
  const err = error.shown;
  return {
    content: [{ type: 'text', text: errorText(err) }],
    isError: true,
    _meta: { [ERROR_META_KEY]: { code: err.code, ...err.details } },
  };
}

/**
 * An error the SDK's Protocol sends as a JSON-RPC error response as it is (it reads `code`,
 * `message` and `data`); unlike McpError, the message is not prefixed.
 */
export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: Record<string, unknown>,
  ) {
    super(message);
  }
}

/** MCP's code for "resource not found": Invalid Params since SEP-2164 (it was -32002, which the SDK v2 rewrites to this). */
const RESOURCE_NOT_FOUND = -32602;

/**
 * A refused or failed request without an isError form (prompts/get, resources/read, …). A child's
 * own error keeps the child's code; an unknown resource gets MCP's resource-not-found code.
 */
export function toRpcError(error: GatewayError, kind: CallKind): RpcError {
  const err = error.shown;
  const upstream = err.code === 'UPSTREAM_ERROR' ? err.details.upstreamCode : undefined;
  const rpcCode =
    typeof upstream === 'number'
      ? upstream
      : err.code === 'UNKNOWN_TOOL' && kind === 'resource'
        ? RESOURCE_NOT_FOUND
        : ERROR_CODES[err.code].rpcCode;
  return new RpcError(rpcCode, errorText(err), { code: err.code, ...err.details });
}
