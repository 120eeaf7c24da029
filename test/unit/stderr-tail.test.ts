/**
 * Unit tests of StderrTail (src/registry/stderr-tail.ts): the last lines of a child's stderr, in
 * order, each bounded, and lines passed on to the log at a bounded rate.
 */
import { afterEach, describe, expect, test, vi } from 'vitest';
import { StderrTail } from '../../src/registry/stderr-tail.js';
import { Redactor } from '../../src/secrets/redactor.js';

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

describe('StderrTail with a redactor', () => {
  const SECRET = 'correct-horse-battery-staple';
  const redactor = new Redactor([{ name: 'PW', value: SECRET }]);

  function redacting(keep = 10, perSecond = 20) {
    let now = 1_000_000;
    const logged: string[] = [];
    const t = new StderrTail(
      keep,
      (l) => logged.push(l),
      perSecond,
      () => now,
      redactor,
    );
    return {
      t,
      logged,
      push: (s: string) => t.push(Buffer.from(s)),
      advance: (ms: number) => {
        now += ms;
      },
    };
  }

  afterEach(() => {
    vi.useRealTimers();
  });

  test('snapshot() redacts a secret split across lines, whatever the line break', () => {
    for (const text of [
      'pw=correct-horse-\nbattery-staple ok\n',
      'pw=correct-horse-\r\nbattery-staple ok\r\n',
      'pw=correct-horse-\n\n  \r\n\nbattery-staple ok\n',
    ]) {
      const { t, push } = redacting();
      push('before\n');
      push(text);
      expect(t.snapshot(), JSON.stringify(text)).toEqual(['before', 'pw=[REDACTED:PW]', '[REDACTED:PW] ok']);
    }
  });

  test('snapshot() redacts the unfinished last line with the lines before it', () => {
    const { t, push } = redacting();
    push('pw=correct-horse-\nbattery-sta');
    // The unfinished piece alone is not the secret, but it is redacted as part of it only once
    // it holds the rest: until then its start stays visible.
    push('ple');
    expect(t.snapshot()).toEqual(['pw=[REDACTED:PW]', '[REDACTED:PW]']);
  });

  test('snapshot() redacts encoded forms split across lines', () => {
    const { t, push } = redacting();
    const b64 = Buffer.from(SECRET).toString('base64');
    push(`token: ${b64.slice(0, 20)}\n${b64.slice(20)}\n`);
    expect(t.snapshot().join('\n')).not.toContain(b64.slice(4, 20));
    expect(t.snapshot().join('\n')).not.toContain(b64.slice(20, 32));
  });

  test('the oldest kept line is redacted with lines that fell out of the tail', () => {
    const { t, push } = redacting(2);
    push('pw=correct-horse-\nbattery-staple\nthree\n');
    expect(t.snapshot()).toEqual(['[REDACTED:PW]', 'three']);
  });

  test('a secret crossing the 1000-character cut of a long line is redacted, not cut in half', () => {
    const { t, push, logged } = redacting();
    push('x'.repeat(990) + SECRET + 'y'.repeat(500) + '\nnext\n');
    t.flush();
    for (const lines of [t.snapshot(), logged]) {
      expect(lines[0]).toHaveLength(1000);
      expect(lines[0]!.slice(990)).toBe('[REDACTED:');
    }
  });

  test('a line is logged once the next arrives, redacted with it, in order', () => {
    const { push, logged } = redacting();
    push('pw=correct-horse-\n');
    expect(logged).toEqual([]); // held until more text arrives
    push('battery-staple and the rest of a line long enough to hold any secret in any form....................................\n');
    expect(logged).toEqual(['pw=[REDACTED:PW]']);
    push('more text, also long enough to hold any secret in any form, so the line before it can go.........................\n');
    expect(logged).toEqual([
      'pw=[REDACTED:PW]',
      '[REDACTED:PW] and the rest of a line long enough to hold any secret in any form....................................',
    ]);
  });

  test("a held line is logged after the hold time when nothing follows, by an unref'd timer", () => {
    vi.useFakeTimers();
    const { t, push, logged } = redacting();
    push('pw=correct-horse-\n');
    vi.advanceTimersByTime(200);
    expect(logged).toEqual([]);
    push('battery-staple\n'); // arrived in time: both halves are redacted
    vi.advanceTimersByTime(60);
    expect(logged).toEqual(['pw=[REDACTED:PW]']);
    // The second line arrived after the timer started: it waits a full hold of its own.
    vi.advanceTimersByTime(200);
    expect(logged).toEqual(['pw=[REDACTED:PW]']);
    vi.advanceTimersByTime(50);
    expect(logged).toEqual(['pw=[REDACTED:PW]', '[REDACTED:PW]']);
    expect(vi.getTimerCount()).toBe(0);
    push('late\n');
    expect(vi.getTimerCount()).toBe(1);
    const timer = (t as unknown as { timer: NodeJS.Timeout }).timer;
    expect(timer.hasRef()).toBe(false);
    t.flush();
    expect(logged.at(-1)).toBe('late');
    expect(vi.getTimerCount()).toBe(0);
  });

  test('a secret written one character a line reaches neither the tail nor the log', () => {
    const { t, push, logged } = redacting(50, 100);
    push('#:\n' + [...SECRET].join('\n') + '\n#\n');
    t.flush();
    expect(logged.join('')).not.toMatch(/[a-z]/);
    expect(t.snapshot().join('')).not.toMatch(/[a-z]/);
    expect(logged.filter((l) => l.startsWith('[REDACTED:PW]'))).toHaveLength(SECRET.length);
  });

  test('keeps the rate limit, its summary and the order of lines', () => {
    const { t, push, logged, advance } = redacting(50, 3);
    push('1\n2\n3\n4\n5\n6\n');
    t.flush();
    expect(logged).toEqual(['1', '2', '3']);
    advance(1_000);
    push('7\n8\n');
    t.flush();
    expect(logged).toHaveLength(6);
    expect(logged[3]).toMatch(/\b3\b/);
    expect(logged.slice(4)).toEqual(['7', '8']);
    expect(t.snapshot()).toEqual(['1', '2', '3', '4', '5', '6', '7', '8']);
  });

  test('a secret split between a logged line and a rate-limited one is still redacted', () => {
    const { t, push, logged } = redacting(50, 1);
    push('pw=correct-horse-\nbattery-staple\n');
    t.flush();
    expect(logged).toEqual(['pw=[REDACTED:PW]']);
  });

  test('with an empty redactor, lines are logged at once as before', () => {
    const logged: string[] = [];
    const t = new StderrTail(5, (l) => logged.push(l), 20, Date.now, new Redactor([]));
    t.push(Buffer.from('correct-horse-\nbattery-staple\n'));
    expect(logged).toEqual(['correct-horse-', 'battery-staple']);
  });
});
