/**
 * Unit tests of StderrTail (src/registry/stderr-tail.ts): the last lines of a child's stderr, in
 * order, each bounded, and lines passed on to the log at a bounded rate.
 */
import { describe, expect, test } from 'vitest';
import { StderrTail } from '../../src/registry/stderr-tail.js';

function tail(keep = 5, perSecond = 20) {
  let now = 1_000_000;
  const logged: string[] = [];
  const t = new StderrTail(
    keep,
    (l) => logged.push(l),
    perSecond,
    () => now,
  );
  return {
    t,
    logged,
    push: (s: string | Buffer) => t.push(typeof s === 'string' ? Buffer.from(s) : s),
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('StderrTail', () => {
  test('keeps the last `keep` lines, oldest first', () => {
    const { t, push } = tail(3);
    push('one\ntwo\nthree\nfour\nfive\n');
    expect(t.snapshot()).toEqual(['three', 'four', 'five']);
  });

  test('joins lines split across chunks, and shows a partial last line', () => {
    const { t, push } = tail();
    push('hel');
    expect(t.snapshot()).toEqual(['hel']);
    push('lo\nwor');
    expect(t.snapshot()).toEqual(['hello', 'wor']);
    push('ld\n');
    expect(t.snapshot()).toEqual(['hello', 'world']);
  });

  test('strips CR and skips blank lines', () => {
    const { t, push } = tail();
    push('a\r\n\r\n   \nb\n\n');
    expect(t.snapshot()).toEqual(['a', 'b']);
  });

  test('cuts long lines to 1000 characters', () => {
    const { t, push } = tail();
    push('x'.repeat(5000) + '\nshort\n');
    expect(t.snapshot()).toEqual(['x'.repeat(1000), 'short']);
  });

  test('a huge line without a newline stays bounded', () => {
    const { t, push } = tail(3);
    for (let i = 0; i < 100; i++) push('y'.repeat(10_000));
    const snap = t.snapshot();
    expect(snap.length).toBeLessThanOrEqual(4);
    for (const line of snap) expect(line.length).toBeLessThanOrEqual(1000);
  });

  test('keeps the order of lines when a chunk ends in a long partial line', () => {
    const { t, push } = tail(10);
    push(`first\nsecond\n${'z'.repeat(1500)}`);
    expect(t.snapshot()).toEqual(['first', 'second', 'z'.repeat(1000)]);
  });

  test('a multi-byte character split between chunks is kept whole', () => {
    const { t, push } = tail();
    const bytes = Buffer.from('héllo wörld ✓\n');
    const cut = bytes.indexOf(Buffer.from('✓')) + 1; // inside the 3-byte ✓
    push(bytes.subarray(0, 2)); // inside the 2-byte é
    push(bytes.subarray(2, cut));
    push(bytes.subarray(cut));
    expect(t.snapshot()).toEqual(['héllo wörld ✓']);
  });

  test('passes lines to the log at a bounded rate and says how many it held back', () => {
    const { push, logged, advance } = tail(50, 3);
    push('1\n2\n3\n4\n5\n6\n');
    expect(logged).toEqual(['1', '2', '3']);
    advance(1_000);
    push('7\n');
    expect(logged).toHaveLength(5);
    expect(logged[3]).toMatch(/\b3\b/); // the summary of the 3 held back
    expect(logged[4]).toBe('7');
  });

  test('the tail keeps every line even when the log does not', () => {
    const { t, push, logged } = tail(100, 2);
    push(Array.from({ length: 50 }, (_, i) => `line ${i}`).join('\n') + '\n');
    expect(logged).toHaveLength(2);
    expect(t.snapshot()).toHaveLength(50);
  });
});
