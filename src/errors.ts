/**
 * The one catalogue of errors the gateway reports to agents (design §10), and the audit status each
 * maps to (design §6). Code elsewhere throws `GatewayError` with a code from here; `src/front`
 * turns it into what goes on the wire. Tests assert codes, never message text.
 */

/** Audit status of a request (design §6). */
export type AuditStatus =
  'ok' | 'error' | 'denied' | 'rate_limited' | 'unauthenticated' | 'invalid' | 'timeout' | 'unavailable' | 'cancelled';

interface CodeInfo {
  /** Status written to the audit log for a request refused with this code. */
  readonly status: AuditStatus;
  /** JSON-RPC error code used where a request has no `isError` result form. */
  readonly rpcCode: number;
  /** One line for the docs. */
  readonly meaning: string;
}

export const ERROR_CODES = {
  UNAUTHENTICATED: {
    status: 'unauthenticated',
    rpcCode: -32001,
    meaning: 'No valid credential: missing, wrong, revoked, disabled or expired.',
  },
  FORBIDDEN: { status: 'denied', rpcCode: -32003, meaning: 'The policy does not allow this caller to do this.' },
  RATE_LIMITED: { status: 'rate_limited', rpcCode: -32029, meaning: 'A rate limit bucket is empty; retry after retryAfterMs.' },
  UNKNOWN_TOOL: { status: 'invalid', rpcCode: -32602, meaning: 'No such tool, prompt or resource on any server.' },
  INVALID_ARGUMENTS: { status: 'invalid', rpcCode: -32602, meaning: 'The arguments do not match the input schema.' },
  SERVER_UNAVAILABLE: {
    status: 'unavailable',
    rpcCode: -32010,
    meaning: 'The server is starting, restarting, failed, or exited during the request.',
  },
  TIMEOUT: { status: 'timeout', rpcCode: -32011, meaning: 'The server did not answer within timeoutMs.' },
  CANCELLED: { status: 'cancelled', rpcCode: -32012, meaning: 'The agent cancelled the request.' },
  UPSTREAM_ERROR: { status: 'error', rpcCode: -32013, meaning: 'The server answered with an error.' },
  INTERNAL_ERROR: {
    status: 'error',
    rpcCode: -32603,
    meaning: 'The gateway itself failed (a bug); details are in its log, not in the reply.',
  },
} as const satisfies Record<string, CodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Extra machine-readable fields that travel in `_meta["mcp-gateway/error"]` or JSON-RPC `data`. */
export interface ErrorDetails {
  readonly retryAfterMs?: number;
  readonly server?: string;
  readonly tool?: string;
  readonly field?: string;
  /** For UPSTREAM_ERROR: the server's own JSON-RPC error code. */
  readonly upstreamCode?: number;
  readonly [key: string]: unknown;
}

/**
 * An error the gateway reports to an agent. `message` is written for the agent and must never hold
 * a secret, a stack trace or an internal detail: it says what happened and what to do.
 */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetails;
  /**
   * What the agent is told instead, when the truth would tell it something it may not know (that a
   * tool it may never use exists). The audit log keeps this error; the wire gets `shown`.
   */
  readonly disguise: GatewayError | undefined;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}, disguise?: GatewayError) {
    super(message);
    this.name = 'GatewayError';
    this.code = code;
    this.details = details;
    this.disguise = disguise;
  }

  get status(): AuditStatus {
    return ERROR_CODES[this.code].status;
  }

  /** The error as the agent sees it. */
  get shown(): GatewayError {
    return this.disguise ?? this;
  }
}

/** The kinds of thing an agent names in a request: what an unknown-target error names. */
export type TargetNoun = 'tool' | 'prompt' | 'resource';

/**
 * The one answer for a name the caller cannot use because nothing by that name exists, or because
 * it may never see it: the same code, wording and fields either way, so a refusal tells nothing
 * of what is behind it (design §4: what a caller can never be allowed is invisible).
 */
export function unknownTarget(noun: TargetNoun, name: string): GatewayError {
  const where = noun === 'tool' ? 'tools/list (or list_tools)' : noun === 'prompt' ? 'prompts/list' : 'resources/list';
  return new GatewayError('UNKNOWN_TOOL', `there is no ${noun} "${name}" that you can use; ${where} shows what you can`, { [noun]: name });
}

export function isGatewayError(err: unknown): err is GatewayError {
  return err instanceof GatewayError;
}

/** Key of the error object in a refused tool result's `_meta`. */
export const ERROR_META_KEY = 'mcp-gateway/error';

/**
 * A refused call as the agent sees it: the text an agent (and a model) reads, and the structured
 * form a program reads.
 */
export function errorText(err: GatewayError): string {
  return `mcp-gateway ${err.code}: ${err.message}`;
}
