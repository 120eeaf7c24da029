import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { RequestStateError, RequestStates, callBinding } from '../../src/pipeline/request-state.js';

const CALL = callBinding('tools/call', 'pay', 'refund', { amount: 10 });
const CALLER = { consumer: 'ana', keyId: 'k1', call: CALL };

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RequestStateError);
    return (err as Error).message;
  }
  throw new Error('the state was accepted');
}

describe('request states (input-required retries)', () => {
  it('round-trips what it sealed, and the agent cannot read it', () => {
    const states = new RequestStates();
    const state = states.seal({ ...CALLER, childState: 'secret-child-state', answered: { r1: { roots: [] } } });
    expect(state).not.toContain('secret-child-state');
    for (const part of state.split('.')) expect(Buffer.from(part, 'base64url').toString('latin1')).not.toContain('secret');
    expect(states.open(state, CALLER)).toMatchObject({ childState: 'secret-child-state', answered: { r1: { roots: [] } } });
  });

  it('is good once; a refused attempt does not spend it', () => {
    const states = new RequestStates();
    const state = states.seal({ ...CALLER, flow: 'f1' });
    expect(refusal(() => states.open(state, { ...CALLER, consumer: 'bob' }))).toBe('issued to another caller');
    expect(refusal(() => states.open(state, { ...CALLER, keyId: 'k2' }))).toBe('issued to another caller');
    expect(refusal(() => states.open(state, { ...CALLER, call: callBinding('tools/call', 'pay', 'refund', { amount: 10_000 }) }))).toBe(
      'issued for another call',
    );
    expect(states.open(state, CALLER).flow).toBe('f1');
    expect(refusal(() => states.open(state, CALLER))).toBe('already used');
  });

  it('refuses an altered state, one of another key, and garbage', () => {
    const states = new RequestStates();
    const state = states.seal(CALLER);
    const [v, iv, body, tag] = state.split('.') as [string, string, string, string];
    const flipped = Buffer.from(body, 'base64url');
    flipped[0] = flipped[0]! ^ 1;
    expect(refusal(() => states.open([v, iv, flipped.toString('base64url'), tag].join('.'), CALLER))).toBe(
      'altered, or sealed with another key',
    );
    expect(refusal(() => states.open(new RequestStates().seal(CALLER), CALLER))).toBe('altered, or sealed with another key');
    for (const junk of ['', 'g1', 'g1.a.b', 'x1.a.b.c', 'g1...', `g1.${iv}.${body}.`]) {
      expect(() => states.open(junk, CALLER)).toThrow(RequestStateError);
    }
  });

  it('expires', () => {
    const time = clock();
    const states = new RequestStates(5 * 60_000, randomBytes(32), time.now);
    const fresh = states.seal(CALLER);
    const old = states.seal(CALLER);
    time.advance(5 * 60_000 - 1);
    expect(states.open(fresh, CALLER)).toMatchObject({ consumer: 'ana' });
    time.advance(1);
    expect(refusal(() => states.open(old, CALLER))).toBe('expired');
  });

  it('forgets spent nonces once their states have expired (memory stays bounded)', () => {
    const time = clock();
    const states = new RequestStates(1_000, randomBytes(32), time.now);
    for (let i = 0; i < 1_000; i++) states.open(states.seal(CALLER), CALLER);
    time.advance(2_000);
    states.open(states.seal(CALLER), CALLER);
    expect((states as unknown as { used: Map<string, number> }).used.size).toBe(1);
  });

  it('binds a call by method, target and arguments', () => {
    const a = callBinding('tools/call', 's', 't', { x: 1 });
    expect(callBinding('tools/call', 's', 't', { x: 1 })).toBe(a);
    expect(callBinding('tools/call', 's', 't', { x: 2 })).not.toBe(a);
    expect(callBinding('prompts/get', 's', 't', { x: 1 })).not.toBe(a);
    expect(callBinding('tools/call', 'other', 't', { x: 1 })).not.toBe(a);
    expect(callBinding('tools/call', null, 't', undefined)).toBe(callBinding('tools/call', null, 't', null));
  });

  it('wants a 32-byte key', () => {
    expect(() => new RequestStates(1_000, randomBytes(16))).toThrow(/32 bytes/);
  });
});
