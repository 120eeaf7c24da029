/**
 * Unit tests of RestartTracker (design §8): exponential backoff with equal jitter, capped, and the
 * server given up after maxRestarts within a sliding window.
 */
import { describe, expect, test } from 'vitest';
import { RestartTracker, type RestartPolicy } from '../../src/registry/backoff.js';

const policy = (p: Partial<RestartPolicy> = {}): RestartPolicy => ({
  maxRestarts: 100,
  windowMs: 60_000,
  backoffMs: 100,
  maxBackoffMs: 1_000,
  ...p,
});

function delays(tracker: RestartTracker, n: number, at = (i: number) => i): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const d = tracker.onExit(at(i));
    if (!d.restart) throw new Error(`gave up at exit ${i}`);
    out.push(d.delayMs);
  }
  return out;
}

describe('RestartTracker', () => {
  test('the delay doubles and is capped at maxBackoffMs (no jitter at random = 1)', () => {
    expect(delays(new RestartTracker(policy(), () => 1), 7)).toEqual([100, 200, 400, 800, 1000, 1000, 1000]);
  });

  test('equal jitter: half fixed at random = 0', () => {
    expect(delays(new RestartTracker(policy(), () => 0), 6)).toEqual([50, 100, 200, 400, 500, 500]);
  });

  test('with real randomness every delay lies within [exp/2, exp]', () => {
    for (let run = 0; run < 200; run++) {
      const got = delays(new RestartTracker(policy()), 8);
      got.forEach((d, i) => {
        const exp = Math.min(1000, 100 * 2 ** i);
        expect(d).toBeGreaterThanOrEqual(exp / 2);
        expect(d).toBeLessThanOrEqual(exp);
      });
    }
  });

  test('the jitter varies the delay', () => {
    const seen = new Set<number>();
    for (let run = 0; run < 50; run++) seen.add(delays(new RestartTracker(policy({ backoffMs: 1000, maxBackoffMs: 1000 })), 1)[0]!);
    expect(seen.size).toBeGreaterThan(5);
  });

  test('gives up after maxRestarts within the window', () => {
    const t = new RestartTracker(policy({ maxRestarts: 2, windowMs: 60_000, backoffMs: 50, maxBackoffMs: 200 }), () => 1);
    expect(t.onExit(0)).toEqual({ restart: true, delayMs: 50 });
    expect(t.onExit(100)).toEqual({ restart: true, delayMs: 100 });
    expect(t.onExit(200)).toEqual({ restart: false });
    expect(t.onExit(300)).toEqual({ restart: false });
    expect(t.recent(300)).toBe(2);
  });

  test('maxRestarts 0 never restarts', () => {
    expect(new RestartTracker(policy({ maxRestarts: 0 })).onExit(0)).toEqual({ restart: false });
  });

  test('the window slides: old restarts stop counting, and the backoff comes down with them', () => {
    const t = new RestartTracker(policy({ maxRestarts: 2, windowMs: 1_000, backoffMs: 100, maxBackoffMs: 10_000 }), () => 1);
    expect(t.onExit(0)).toEqual({ restart: true, delayMs: 100 });
    expect(t.onExit(500)).toEqual({ restart: true, delayMs: 200 });
    expect(t.onExit(900)).toEqual({ restart: false });
    expect(t.recent(999)).toBe(2);
    // At 1000 the restart of t=0 leaves the window: one counts, so one more is allowed.
    expect(t.recent(1_000)).toBe(1);
    expect(t.onExit(1_000)).toEqual({ restart: true, delayMs: 200 });
    expect(t.onExit(1_100)).toEqual({ restart: false });
    // Long after, the window is empty and the backoff starts again from backoffMs.
    expect(t.recent(10_000)).toBe(0);
    expect(t.onExit(10_000)).toEqual({ restart: true, delayMs: 100 });
  });

  test('spaced-out exits never exhaust the budget', () => {
    const t = new RestartTracker(policy({ maxRestarts: 2, windowMs: 1_000, backoffMs: 100 }), () => 1);
    for (let i = 0; i < 20; i++) expect(t.onExit(i * 1_000).restart).toBe(true);
  });
});
