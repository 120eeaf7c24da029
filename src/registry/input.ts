/**
 * Requests for the agent's input (sampling, elicitation, roots) across protocol eras (design §9).
 * A 2025-era server pushes them as requests of its own during a call; a 2026-07-28 server answers
 * the call with an input-required result and takes the answers on a retry. The gateway brings
 * each to the agent whose call it is, in the form that agent speaks:
 *
 * | agent \ child | 2025 (pushes)                                  | 2026-07-28 (input required)                    |
 * |---------------|------------------------------------------------|------------------------------------------------|
 * | 2025          | relayed as they come (front.relayToAgent)       | sent to the agent as requests, child retried    |
 * | 2026-07-28    | held; the call answers input-required (a flow) | passed on, the child's state inside the gateway's |
 *
 * The state given to a 2026-07-28 agent is sealed by the gateway and bound to the caller and the
 * call (pipeline/request-state.ts): every round is a request of its own through the whole pipeline.
 */
import { GatewayError } from '../errors.js';
import type { AgentInfo, CallContext, ResultObject } from '../pipeline/context.js';
import type { InputFlows, InputRequest } from '../pipeline/flows.js';
import { callBinding, RequestStateError, type RequestStatePayload, type RequestStates } from '../pipeline/request-state.js';
import { INPUT_CAPABILITY, INPUT_REQUIRED_METHODS, type ChildServer, type RequestOptions } from './child.js';

export interface InputOptions {
  readonly flows: InputFlows;
  readonly states: RequestStates;
}

/** How many rounds of input a 2026-07-28 child may ask of a 2025-era agent for one call. */
export const MAX_INPUT_ROUNDS = 8;

/** One request to a child on behalf of a call, as the rounds below carry it. */
interface Exchange {
  readonly o: InputOptions;
  readonly ctx: CallContext;
  readonly child: ChildServer;
  readonly method: string;
  readonly params: Record<string, unknown>;
  readonly options: RequestOptions;
}

/** Sends a request to the child for `ctx`, bringing any request for input to the calling agent. */
export async function exchange(
  o: InputOptions,
  ctx: CallContext,
  child: ChildServer,
  method: string,
  params: Record<string, unknown>,
  options: RequestOptions,
): Promise<ResultObject> {
  const { agent } = ctx.request;
  if (!INPUT_REQUIRED_METHODS.has(method)) return child.request(method, params, options);
  const resume = agent.era === 'modern' ? await openState(o, ctx) : undefined;

  const x: Exchange = { o, ctx, child, method, params, options };
  if (child.era === 'modern') return modernChild(x, resume);

  // A 2025-era child: a 2025-era agent gets its pushes as they come (front.relayToAgent); a
  // 2026-07-28 agent that can answer none of them needs no flow (a push is refused).
  if (agent.era === 'legacy' || (resume === undefined && !takesInput(agent))) return child.request(method, params, options);
  return flowRound(x, resume);
}

/** Whether an agent's request declares a capability a child's request could need (sampling, elicitation, roots). */
export function takesInput(agent: AgentInfo): boolean {
  const capabilities = agent.capabilities;
  if (capabilities === undefined) return false;
  return INPUT_CAPABILITIES.some((capability) => capabilities[capability] !== undefined);
}

const INPUT_CAPABILITIES: readonly string[] = [...new Set(Object.values(INPUT_CAPABILITY))];

/** The sealed state of a 2026-07-28 agent's retry, opened and spent; undefined for a first round. */
async function openState(o: InputOptions, ctx: CallContext): Promise<RequestStatePayload | undefined> {
  const state = ctx.request.retry?.state;
  if (state === undefined) return undefined;
  const identity = ctx.identity!;
  try {
    return await o.states.openOnce(state, { consumer: identity.consumerId, keyId: identity.keyId, call: binding(ctx) });
  } catch (err) {
    if (!(err instanceof RequestStateError)) throw err;
    throw new GatewayError(
      'INVALID_ARGUMENTS',
      `the requestState is not valid for this call (${err.message}); make the call again without it`,
      {
        field: 'requestState',
        reason: 'invalid_request_state',
      },
    );
  }
}

function binding(ctx: CallContext): string {
  return callBinding(ctx.method, ctx.server, ctx.name, ctx.arguments ?? ctx.request.params);
}

function seal(o: InputOptions, ctx: CallContext, how: Pick<RequestStatePayload, 'flow' | 'childState' | 'answered'>): string {
  const identity = ctx.identity!;
  return o.states.seal({ consumer: identity.consumerId, keyId: identity.keyId, call: binding(ctx), ...how });
}

function callEnded(): GatewayError {
  return new GatewayError(
    'INVALID_ARGUMENTS',
    'the call this requestState continues has ended (expired, cancelled or restarted); make the call again',
    { field: 'requestState', reason: 'invalid_request_state' },
  );
}

function isInputRequired(result: ResultObject): boolean {
  return result['resultType'] === 'input_required';
}

/** The input requests of a child's input-required result (an object of objects with a method). */
function inputRequestsOf(result: ResultObject, server: string): Record<string, InputRequest> {
  const requests = result['inputRequests'] ?? {};
  if (typeof requests !== 'object' || requests === null || Array.isArray(requests)) throw lying(server, '"inputRequests" is not an object');
  for (const [key, request] of Object.entries(requests)) {
    const m = (request as { method?: unknown } | null)?.method;
    if (typeof m !== 'string' || INPUT_CAPABILITY[m] === undefined)
      throw lying(server, `input request "${key}" is not sampling, elicitation or roots`);
  }
  return requests as Record<string, InputRequest>;
}

function lying(server: string, why: string): GatewayError {
  return new GatewayError('UPSTREAM_ERROR', `server "${server}" answered with a malformed input-required result: ${why}`, { server });
}

/** Refuses an input request the agent did not declare the capability for. */
function checkCapability(ctx: CallContext, server: string, requestMethod: string): void {
  const capability = INPUT_CAPABILITY[requestMethod]!;
  if (ctx.request.agent.capabilities?.[capability] === undefined) {
    throw new GatewayError('UPSTREAM_ERROR', `server "${server}" asks for ${requestMethod}, which this agent does not support`, {
      server,
      upstreamCode: -32021,
    });
  }
}

/** A 2026-07-28 child's params for a retry: the answers to its input requests and its own state. */
function retried(
  params: Record<string, unknown>,
  responses: Readonly<Record<string, unknown>>,
  childState: string | undefined,
): Record<string, unknown> {
  return { ...params, inputResponses: responses, ...(childState !== undefined ? { requestState: childState } : {}) };
}

/**
 * A request to a 2026-07-28 child, round by round while it answers input-required. Roots the
 * config gives the server are answered here; the rest goes to the agent: to a 2026-07-28 agent as
 * an input-required result of its own (the child's state, and the answers given here, sealed in
 * the gateway's), to a 2025-era agent as requests of this call, the child then asked again.
 */
async function modernChild(x: Exchange, resume: RequestStatePayload | undefined): Promise<ResultObject> {
  const { o, ctx, child, method, params, options } = x;
  const { agent } = ctx.request;
  if (resume?.flow !== undefined) throw callEnded();
  let sent = resume ? retried(params, { ...resume.answered, ...ctx.request.retry?.responses }, resume.childState) : params;
  for (let round = 0; ; round++) {
    const result = await child.request(method, sent, options);
    if (!isInputRequired(result)) return result;
    if (round === MAX_INPUT_ROUNDS) break;
    const requests = inputRequestsOf(result, child.id);
    const childState = result['requestState'];
    if (childState !== undefined && typeof childState !== 'string') throw lying(child.id, '"requestState" is not a string');
    const answered: Record<string, unknown> = {};
    const forAgent: Record<string, InputRequest> = {};
    const roots = child.configuredRoots;
    for (const [key, request] of Object.entries(requests)) {
      if (request.method === 'roots/list' && roots !== undefined) answered[key] = { roots: roots.map((r) => ({ ...r })) };
      else {
        checkCapability(ctx, child.id, request.method);
        forAgent[key] = request;
      }
    }
    if (Object.keys(forAgent).length > 0 && agent.era === 'modern') {
      const state = seal(o, ctx, { childState, answered: Object.keys(answered).length > 0 ? answered : undefined });
      return { resultType: 'input_required', inputRequests: forAgent, requestState: state };
    }
    for (const [key, request] of Object.entries(forAgent)) {
      if (!ctx.request.ask)
        throw new GatewayError('UPSTREAM_ERROR', `server "${child.id}" asks for input, which cannot reach this agent`, {
          server: child.id,
        });
      answered[key] = await ctx.request.ask(request);
    }
    if (Object.keys(requests).length === 0) await pause(ctx.signal);
    sent = retried(params, answered, childState);
  }
  throw new GatewayError('UPSTREAM_ERROR', `server "${child.id}" asked for input more than ${MAX_INPUT_ROUNDS} times in one call`, {
    server: child.id,
  });
}

/** A retry with nothing to answer (the child only hands back its state): not at once. */
function pause(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 100);
    signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
  });
}

/**
 * One round of a 2026-07-28 agent's call to a 2025-era child: the first round sends the call;
 * a retry hands the agent's answers to the child's waiting requests. Either way the round ends
 * with the call's answer, or with the child's next requests as an input-required result.
 */
async function flowRound(x: Exchange, resume: RequestStatePayload | undefined): Promise<ResultObject> {
  const { o, ctx, child, method, params, options } = x;
  const { agent } = ctx.request;
  let flow;
  if (resume !== undefined) {
    flow = resume.flow === undefined ? undefined : o.flows.resume(resume.flow);
    if (!flow || flow.server !== child.id) throw callEnded();
    flow.capabilities = agent.capabilities;
    flow.answer(ctx.request.retry?.responses ?? {});
  } else {
    flow = o.flows.open(child.id, agent.capabilities, (f) =>
      child.request(method, params, {
        ...options,
        signal: f.abort.signal,
        onprogress: options.onprogress === undefined ? undefined : (p) => f.reportProgress(p),
      }),
    );
  }
  const current = flow;
  current.progress = options.onprogress;
  const cancel = () => o.flows.close(current, 'the agent cancelled the call');
  ctx.signal.addEventListener('abort', cancel, { once: true });
  try {
    const step = await current.next();
    if ('done' in step) {
      o.flows.close(current);
      return step.done;
    }
    o.flows.awaitAgent(current);
    return { resultType: 'input_required', inputRequests: step.input, requestState: seal(o, ctx, { flow: current.id }) };
  } catch (err) {
    o.flows.close(current);
    throw err;
  } finally {
    current.progress = undefined;
    ctx.signal.removeEventListener('abort', cancel);
  }
}
