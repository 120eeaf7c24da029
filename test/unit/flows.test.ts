import { describe, expect, it } from 'vitest';
import { isGatewayError } from '../../src/errors.js';
import { InputFlows } from '../../src/pipeline/flows.js';

const never = () => new Promise<never>(() => {});

describe('input flows (2026-07-28 agents, 2025 children)', () => {
  it("hands the child's pushes to the agent in order and the answers back", async () => {
    const flows = new InputFlows();
    let answers: unknown[] = [];
    const flow = flows.open('s', { elicitation: {} }, async (f) => {
      answers = await Promise.all([f.push({ method: 'elicitation/create', params: { message: 'a' } }), f.push({ method: 'roots/list' })]);
      return { content: [] };
    });
    const step = await flow.next();
    expect(step).toEqual({ input: { r1: { method: 'elicitation/create', params: { message: 'a' } }, r2: { method: 'roots/list' } } });
    flow.answer({ r1: { action: 'accept' }, r2: { roots: [] } });
    expect(await flow.next()).toEqual({ done: { content: [] } });
    expect(answers).toEqual([{ action: 'accept' }, { roots: [] }]);
    flows.close(flow);
    expect(flows.pendingAt('s')).toEqual([]);
  });

  it('refuses a missing answer to the child', async () => {
    const flows = new InputFlows();
    let refused: unknown;
    const flow = flows.open('s', {}, async (f) => {
      refused = await f.push({ method: 'sampling/createMessage' }).catch((err: Error) => err.message);
      return { content: [] };
    });
    await flow.next();
    flow.answer({});
    await flow.next();
    expect(refused).toBe('the agent gave no answer to sampling/createMessage');
  });

  it('holds at most maxOpen flows: the next call is RATE_LIMITED until one closes', () => {
    const flows = new InputFlows(60_000, 3);
    const open = [0, 1, 2].map(() => flows.open('s', {}, never));
    let error: unknown;
    try {
      flows.open('s', {}, never);
    } catch (err) {
      error = err;
    }
    expect(isGatewayError(error) && error.code).toBe('RATE_LIMITED');
    flows.close(open[0]!, 'done');
    expect(() => flows.open('s', {}, never)).not.toThrow();
  });

  it("a flow waiting for the agent expires and fails the child's waiting request", async () => {
    const flows = new InputFlows(20);
    let refused: unknown;
    const flow = flows.open('s', {}, async (f) => {
      refused = await f.push({ method: 'roots/list' }).catch((err: Error) => err.message);
      return { content: [] };
    });
    await flow.next();
    flows.awaitAgent(flow);
    await new Promise((r) => setTimeout(r, 60));
    expect(refused).toBe('the agent did not continue the call in time');
    expect(flows.resume(flow.id)).toBeUndefined();
  });
});
