/**
 * The typed context of one request as it passes the pipeline. The request fields are fixed when it
 * is built; stages fill in the outcome (identity, decision, result or error).
 */
import type { Identity } from '../identity/identity.js';
import type { Decision } from '../policy/types.js';
import { GatewayError, type AuditStatus } from '../errors.js';

/**
 * Who is asking, as far as the protocol tells: the agent's protocol era, and its capabilities, log
 * level, name and protocol version, per connection (2025 era, from `initialize`) or per request
 * (2026-07-28, from the request's `_meta` envelope).
 */
export interface AgentInfo {
  readonly era: 'legacy' | 'modern';
  readonly capabilities: Readonly<Record<string, unknown>> | undefined;
  readonly logLevel: string | undefined;
  readonly client: { readonly name: string; readonly version: string } | undefined;
  readonly protocol: string | undefined;
}

/** What the audit log calls the kind of a request (design §6). */
export type CallKind = 'tool' | 'prompt' | 'resource' | 'admin';

/** A JSON-RPC result as sent to the agent. */
export type ResultObject = Record<string, unknown>;

export interface CallRequest {
  /** The JSON-RPC method (tools/call, prompts/get, resources/read, resources/subscribe, …). */
  readonly method: string;
  /** The agent that sent it (era, capabilities, client info, protocol version). */
  readonly agent: AgentInfo;
  readonly kind: CallKind;
  /** Target server id ("gateway" for the gateway's own tools); null when the name matched no server. */
  readonly server: string | null;
  /** The child's own tool or prompt name, the resource URI, or the name as asked when unresolved. */
  readonly name: string;
  readonly arguments: Readonly<Record<string, unknown>> | undefined;
  /**
   * An entry point with no permission of its own (`call` with unusable arguments, `list_tools`):
   * the authorize stage lets it through; what it reaches is authorized by itself.
   */
  readonly entryPoint: boolean;
  /** Set when the request itself is malformed: the forward stage refuses it with INVALID_ARGUMENTS. */
  readonly invalid?: string | undefined;
  /** Aborted when the agent cancels the request. */
  readonly signal: AbortSignal;
  /** The agent's progress token, if it asked for progress. */
  readonly progressToken: string | number | undefined;
  /** The request's `_meta` without the progress token, as passed on to the child (servers[].metaAllow applied). */
  readonly meta: Readonly<Record<string, unknown>> | undefined;
  /** The request's `_meta` as the agent sent it, for the audit log. */
  readonly receivedMeta: Readonly<Record<string, unknown>> | undefined;
  /**
   * The params of a request that is not a name with arguments (completion/complete), forwarded as
   * they are once the forward stage has put in the server's own name; `arguments` then holds
   * what policy conditions see.
   */
  readonly params?: Readonly<Record<string, unknown>> | undefined;
  /** The name as the agent gave it, where it is not `<server><sep><name>` (a bare name given to `call`). */
  readonly askedAs?: string | undefined;
  /** For a request the gateway answers itself, without a child or a gateway tool (logging/setLevel). */
  readonly run?: (() => Promise<ResultObject>) | undefined;
  /** Sends a notification tied to this request (progress) to the agent. */
  readonly notify: (method: string, params: Record<string, unknown>) => Promise<void>;
  /**
   * A 2026-07-28 agent's retry after an input-required answer: the `requestState` it echoes (as
   * sent: the forward stage opens it) and its `inputResponses`.
   */
  readonly retry?: { readonly state: string | undefined; readonly responses: Readonly<Record<string, unknown>> | undefined } | undefined;
  /** Asks a 2025-era agent, as part of this request, for input a 2026-07-28 child needs. */
  readonly ask?:
    ((request: { method: string; params?: Record<string, unknown> | undefined }) => Promise<Record<string, unknown>>) | undefined;
}

/** Who is asking: established once per session, re-checked per request by the identify stage. */
export interface SessionRef {
  readonly identity: Identity;
  /** The key's own rate limit, when it has one (overrides rateLimit.defaultPerMinute). */
  readonly rateLimit: { readonly perMinute: number; readonly burst?: number | undefined } | null;
  /** The identity, if its credential is still valid now; throws UNAUTHENTICATED otherwise. */
  verify(now?: number): Identity | Promise<Identity>;
}

export class CallContext {
  readonly startedAt = performance.now();
  /** Wall-clock start (a number: no Date is made unless a recorder asks for `ts`). */
  private readonly startedAtMs = Date.now();
  private tsValue: Date | undefined;
  /** Set by the identify stage once the session's credential is confirmed valid. */
  identity: Identity | null = null;
  /** Set by the authorize stage. */
  decision: Decision | null = null;
  /** The answer for the agent (already redacted). */
  result: ResultObject | undefined = undefined;
  /** Why the request failed or was refused. */
  error: GatewayError | undefined = undefined;
  /** The stage that refused the request, when no policy decision did (audit `decided_by`). */
  refusedBy: string | undefined = undefined;
  /** True once the request was sent to a child (it may have had effects there). */
  forwarded = false;

  constructor(
    readonly session: SessionRef,
    readonly request: CallRequest,
  ) {}

  /** When the request entered the gateway (made on first use: only the recorders need it). */
  get ts(): Date {
    return (this.tsValue ??= new Date(this.startedAtMs));
  }

  get server(): string | null {
    return this.request.server;
  }
  get kind(): CallKind {
    return this.request.kind;
  }
  get method(): string {
    return this.request.method;
  }
  get name(): string {
    return this.request.name;
  }
  get arguments(): Readonly<Record<string, unknown>> | undefined {
    return this.request.arguments;
  }
  get signal(): AbortSignal {
    return this.request.signal;
  }

  /** Ends the request with a refusal or failure; `stage` names who refused, for the audit. */
  fail(error: GatewayError, stage?: string): void {
    this.error = error;
    if (stage !== undefined) this.refusedBy = stage;
  }

  /** The audit status of the outcome so far (design §6). */
  get status(): AuditStatus {
    if (this.error) return this.error.status;
    if (this.result === undefined) return 'error';
    return this.result['isError'] === true ? 'error' : 'ok';
  }

  /** What decided the outcome: the policy rule, or the stage that refused. */
  get decidedBy(): string {
    return this.refusedBy ?? this.decision?.decidedBy ?? '';
  }

  /** Milliseconds since the request entered the gateway. */
  elapsedMs(): number {
    return performance.now() - this.startedAt;
  }
}
