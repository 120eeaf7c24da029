/**
 * Calls of a 2026-07-28 agent to a 2025-era child that may push requests to the agent (sampling,
 * elicitation, roots) before answering. The 2026-07-28 agent has no channel for such pushes: the
 * call answers with an input-required result carrying them, and the agent's retry brings the
 * answers, which the gateway hands to the child's waiting requests. Meanwhile the child's call
 * stays pending here (design §9: a push reaches only the agent whose call the child is serving).
 */
import { GatewayError } from '../errors.js';
import type { ResultObject } from './context.js';

let flowIds = 0;

/** A request of the child, as the agent gets it inside an input-required result. */
export interface InputRequest {
  readonly method: string;
  readonly params?: Record<string, unknown> | undefined;
}

interface Pending extends InputRequest {
  readonly resolve: (result: Record<string, unknown>) => void;
  readonly reject: (error: Error) => void;
}

/** What a round of the flow ends with: the call's answer, or requests for the agent. */
export type FlowStep = { readonly done: ResultObject } | { readonly input: Record<string, InputRequest> };

/** One such call. */
export class InputFlow {
  /** Known only inside this process's sealed request states, so a counter is enough. */
  readonly id = `f${++flowIds}`;
  /** Aborts the child's call: the flow expired, or the agent cancelled a round. */
  readonly abort = new AbortController();
  private readonly queued: Pending[] = [];
  private readonly handedOut = new Map<string, Pending>();
  private outcome: { result: ResultObject } | { error: unknown } | undefined;
  private wake: (() => void) | undefined;
  private seq = 0;
  private onprogress: ((progress: Record<string, unknown>) => void) | undefined;
  /** The child's progress between two rounds, for the next one (the latest MAX_HELD_PROGRESS). */
  private readonly heldProgress: Record<string, unknown>[] = [];
  private readonly call: Promise<ResultObject>;

  constructor(
    readonly server: string,
    /** The calling agent's capabilities (of its latest round): what the child may ask of it. */
    public capabilities: Readonly<Record<string, unknown>> | undefined,
    start: (flow: InputFlow) => Promise<ResultObject>,
  ) {
    this.call = start(this);
    this.call.then(
      (result) => this.settle({ result }),
      (error: unknown) => this.settle({ error }),
    );
  }

  /** Where the child's progress goes: the round in progress; between rounds it waits for the next. */
  set progress(onprogress: ((progress: Record<string, unknown>) => void) | undefined) {
    this.onprogress = onprogress;
    if (onprogress) for (const p of this.heldProgress.splice(0)) onprogress(p);
  }

  /** Progress the child sent for the call. */
  reportProgress(progress: Record<string, unknown>): void {
    if (this.onprogress) return this.onprogress(progress);
    if (this.heldProgress.length >= MAX_HELD_PROGRESS) this.heldProgress.shift();
    this.heldProgress.push(progress);
  }

  /** Whether the child's call has answered (then the flow has nothing more to ask). */
  get finished(): boolean {
    return this.outcome !== undefined;
  }

  /** A request the child pushed during the call: answered when the agent retries with its answer. */
  push(request: InputRequest): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      this.queued.push({ ...request, resolve, reject });
      this.wake?.();
    });
  }

  /** Waits until the child answers, or has requests for the agent (those first). */
  async next(): Promise<FlowStep> {
    for (;;) {
      if (this.queued.length > 0) return { input: this.handOut() };
      if (this.outcome) {
        if ('error' in this.outcome) throw this.outcome.error;
        return { done: this.outcome.result };
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  /** The agent's answers to the requests of the last round (a missing one is refused to the child). */
  answer(responses: Readonly<Record<string, unknown>>): void {
    for (const [key, pending] of this.handedOut) {
      const response = responses[key];
      if (response !== null && typeof response === 'object' && !Array.isArray(response))
        pending.resolve(response as Record<string, unknown>);
      else pending.reject(new Error(`the agent gave no answer to ${pending.method}`));
    }
    this.handedOut.clear();
  }

  /** Ends the flow: the child's waiting requests are refused and its call is cancelled. */
  fail(reason: string): void {
    for (const pending of [...this.queued, ...this.handedOut.values()]) pending.reject(new Error(reason));
    this.queued.length = 0;
    this.handedOut.clear();
    if (!this.outcome) this.abort.abort(new Error(reason));
  }

  private handOut(): Record<string, InputRequest> {
    const requests: Record<string, InputRequest> = {};
    for (const pending of this.queued.splice(0)) {
      const key = `r${++this.seq}`;
      this.handedOut.set(key, pending);
      requests[key] = pending.params === undefined ? { method: pending.method } : { method: pending.method, params: pending.params };
    }
    return requests;
  }

  private settle(outcome: { result: ResultObject } | { error: unknown }): void {
    this.outcome = outcome;
    this.wake?.();
  }
}

/** Most calls of 2026-07-28 agents to 2025 children that may be open at once (flows). */
const MAX_OPEN_FLOWS = 4_096;

/** How many progress notifications of a child a flow keeps between two rounds. */
const MAX_HELD_PROGRESS = 64;

/**
 * The open flows of the gateway, by id. A flow waiting for the agent's next round expires; during a
 * round the agent's request is alive, and its end (answer, cancellation) closes the flow.
 */
export class InputFlows {
  private readonly byId = new Map<string, { flow: InputFlow; timer: NodeJS.Timeout | undefined }>();

  constructor(
    private readonly ttlMs = 5 * 60_000,
    /** Most flows open at once (in progress, or waiting for the agent): calls past it are refused. */
    private readonly maxOpen = MAX_OPEN_FLOWS,
  ) {}

  /** Starts a flow: `start` sends the call to the child (with the flow's signal and progress). */
  open(
    server: string,
    capabilities: Readonly<Record<string, unknown>> | undefined,
    start: (flow: InputFlow) => Promise<ResultObject>,
  ): InputFlow {
    // Calls left waiting for the agent's answers hold a child's call each until they expire: an
    // agent that never answers cannot make the gateway hold more than this many.
    if (this.byId.size >= this.maxOpen)
      throw new GatewayError(
        'RATE_LIMITED',
        `${this.maxOpen} calls already wait for the agent's input; answer or cancel some, then retry`,
        {
          retryAfterMs: 1_000,
          bucket: 'input-flows',
        },
      );
    const flow = new InputFlow(server, capabilities, start);
    this.byId.set(flow.id, { flow, timer: undefined });
    return flow;
  }

  /** The flow waits for the agent to continue the call: it ends unless that happens in time. */
  awaitAgent(flow: InputFlow): void {
    const entry = this.byId.get(flow.id);
    if (!entry) return;
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => this.close(flow, 'the agent did not continue the call in time'), this.ttlMs);
    entry.timer.unref();
  }

  /** A flow to resume; undefined when it ended or expired. */
  resume(id: string): InputFlow | undefined {
    const entry = this.byId.get(id);
    if (!entry) return undefined;
    clearTimeout(entry.timer);
    entry.timer = undefined;
    return entry.flow;
  }

  /** The flow is over (its answer went to the agent, or it failed). */
  close(flow: InputFlow, reason?: string): void {
    const entry = this.byId.get(flow.id);
    if (entry) clearTimeout(entry.timer);
    this.byId.delete(flow.id);
    if (reason !== undefined) flow.fail(reason);
  }

  /** The flows whose call is pending at this child: a push belongs to one only when it is the only one. */
  pendingAt(server: string): InputFlow[] {
    const pending: InputFlow[] = [];
    for (const { flow } of this.byId.values()) if (flow.server === server && !flow.finished) pending.push(flow);
    return pending;
  }
}
