/**
 * Unit tests of compileSafeRegex and ajvRegExpEngine: the answers of JS RegExp with flag `u` on
 * ordinary patterns, refusals with a stable kind, and ReDoS patterns that finish on hostile input
 * (a backtracking engine would not finish them before vitest's timeout).
 */
import { Ajv } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { ajvRegExpEngine, compileSafeRegex, SafeRegexError, type SafeRegexErrorKind } from '../../src/config/safe-regex.js';

const PATTERNS: readonly string[] = [
  '',
  'abc',
  '^abc$',
  'a.c',
  '^.$',
  '.',
  '\\d+',
  '\\D',
  '\\w+',
  '\\W',
  '\\s',
  '\\S',
  '^\\s*$',
  '\\bword\\b',
  '\\Bor\\B',
  '\\b',
  '[a-z]+',
  '[^a-z]',
  '[\\d\\s]',
  '[\\S]',
  '[^\\S]',
  '[\\s\\S]',
  '[.$^]',
  '[\\]\\[]',
  '[-a]',
  '[a-]',
  '[a\\-z]',
  '[--/]',
  '[]',
  '[^]',
  '[\\b]',
  'a|b|cd',
  '^(?:a|b)$',
  '(ab)+',
  '(?:ab){2}',
  'a{2,3}',
  'a{2,}',
  '^a{0}$',
  'colou?r',
  'a*?b',
  '^(a|ab)(c|bcd)$',
  '\\p{L}+',
  '\\P{L}',
  '\\p{Lu}',
  '\\p{Ll}',
  '\\p{Letter}',
  '\\p{gc=Nd}',
  '\\p{General_Category=Uppercase_Letter}',
  '\\p{Script=Greek}',
  '\\p{sc=Latin}',
  '\\p{Alphabetic}',
  '\\p{ASCII}',
  '\\p{Any}',
  '\\P{Any}',
  '[\\p{L}\\p{N}_-]+',
  '[^\\p{L}]',
  '\\u{1F600}',
  '\\uD83D\\uDE00',
  '😀',
  '^.{1}$',
  '^..$',
  '[😀-😂]',
  '\\x41',
  '\\u0041',
  '[\\u0041-\\u005A]',
  '\\cJ',
  '\\0',
  '\\t|\\n|\\v|\\f|\\r',
  '\\/',
  '\\.',
  '\\$',
  '\\^',
  '\\\\',
  'a$',
  '^$',
  '(?<year>\\d{4})-(?<month>\\d{2})',
  'é',
  'straße',
  'Σ',
  'σ',
  'k',
  's',
  'K',
  '\\u212A',
  '[a-f0-9]{8}-[a-f0-9]{4}',
  '^[A-Za-z_][A-Za-z0-9_]*$',
  '^\\S+@\\S+\\.\\S+$',
  '\\u2028',
  '[^\\n]',
  '^[^/]+/[^/]+$',
];

const INPUTS: readonly string[] = [
  '',
  'abc',
  'ABC',
  'a\nc',
  'a\rc',
  'a\u2028c',
  'aXc',
  'ac',
  'abcabc',
  'abcd',
  'abbcd',
  'ab',
  '123',
  'x y',
  ' \t ',
  '\t',
  '\u00a0',
  '\ufeff',
  '\u3000',
  '\u000b',
  '\u0085',
  'word',
  'a word here',
  'sword',
  'é',
  'É',
  'straße',
  'STRASSE',
  'STRAẞE',
  'σ',
  'Σ',
  'ς',
  'k',
  'K',
  '\u212a',
  'ſ',
  's',
  'S',
  '😀',
  '😁',
  '😀😀',
  '\uD83D',
  '\uDE00',
  'Ωμέγα',
  '2024-05',
  'colour',
  'color',
  'aab',
  'aaa',
  'a',
  'aa',
  '-',
  ']',
  '[',
  '.',
  '$',
  '^',
  '/',
  '\\',
  'A',
  '\n',
  '\b',
  '\0',
  '\u2029',
  'user@example.com',
  'deadbeef-0000',
  'abc_9',
  '_x',
  '9x',
  'a/b',
  'a/b/c',
];

/**
 * The one documented difference the table meets: with ignoreCase, JS counts ſ (U+017F) and the
 * Kelvin sign (U+212A) as word characters for \b and \B, RE2 does not (see the module comment).
 */
const knownDifference = (pattern: string, input: string, ignoreCase: boolean) =>
  ignoreCase && /\\[bB](?![^[]*\])/.test(pattern) && /[ſ\u212a]/.test(input);

function mismatches(pattern: string, anchored: boolean, ignoreCase: boolean): string[] {
  const js = new RegExp(anchored ? `^(?:${pattern})$` : pattern, ignoreCase ? 'iu' : 'u');
  const safe = compileSafeRegex(pattern, { anchored, ignoreCase });
  return INPUTS.filter((input) => !knownDifference(pattern, input, ignoreCase) && safe(input) !== js.test(input)).map(
    (input) => `${JSON.stringify(input)}: js ${js.test(input)}`,
  );
}

describe('compileSafeRegex agrees with JS RegExp (flag u)', () => {
  test.each(PATTERNS)('%j', (pattern) => {
    expect({ search: mismatches(pattern, false, false) }).toEqual({ search: [] });
    expect({ anchored: mismatches(pattern, true, false) }).toEqual({ anchored: [] });
    if (pattern.includes('\\P')) return; // refused with ignoreCase, see below
    expect({ ignoreCase: mismatches(pattern, false, true) }).toEqual({ ignoreCase: [] });
    expect({ anchoredIgnoreCase: mismatches(pattern, true, true) }).toEqual({ anchoredIgnoreCase: [] });
  });

  test('random patterns from a small grammar, on random short inputs', () => {
    const atom = fc.constantFrom(
      ...['a', 'b', 'A', 'é', '😀', '.', '\\d', '\\w', '\\s', '\\S', '\\W', '\\D', '\\b', '^', '$', '[ab]', '[^a]', '[a-c]'],
      ...['[\\s\\d]', '[^\\S]', '\\p{L}', '\\p{Lu}', '[]', '[^]', '[\\w-]', '[😀-😂é]', '\\u{e9}', '\\x41', '[^\\W\\d]'],
    );
    const { pattern } = fc.letrec<{ pattern: string; cat: string; alt: string; group: string; repeat: string }>((tie) => ({
      pattern: fc.oneof({ depthSize: 'small' }, atom, tie('cat'), tie('alt'), tie('group'), tie('repeat')),
      cat: fc.tuple(tie('pattern'), tie('pattern')).map(([a, b]) => a + b),
      alt: fc.tuple(tie('pattern'), tie('pattern')).map(([a, b]) => `${a}|${b}`),
      group: tie('pattern').map((a) => `(${a})`),
      repeat: fc.tuple(tie('pattern'), fc.constantFrom('*', '+', '?', '{1,3}', '*?', '{2}')).map(([a, q]) => `(?:${a})${q}`),
    }));
    const chars = ['a', 'b', 'A', 'B', 'é', 'É', '😀', '😁', ' ', '\n', '1', '_', 'ſ', 'K', '\u2028', '\uD83D', '\u00a0', '-'];
    const input = fc.array(fc.constantFrom(...chars), { maxLength: 8 }).map((a) => a.join(''));
    fc.assert(
      fc.property(pattern, fc.array(input, { maxLength: 5 }), fc.boolean(), fc.boolean(), (p, inputs, anchored, ignoreCase) => {
        let js: RegExp;
        try {
          js = new RegExp(anchored ? `^(?:${p})$` : p, ignoreCase ? 'iu' : 'u');
        } catch {
          return; // `^*` and the like: refused by both
        }
        const safe = compileSafeRegex(p, { anchored, ignoreCase });
        for (const s of inputs) if (!knownDifference(p, s, ignoreCase)) expect([p, s, safe(s)]).toEqual([p, s, js.test(s)]);
      }),
      { numRuns: 3000 },
    );
  });

  test('the documented difference: \\b with ignoreCase and ſ', () => {
    expect(new RegExp('\\bſ', 'iu').test('ſ')).toBe(true);
    expect(compileSafeRegex('\\bſ', { ignoreCase: true })('ſ')).toBe(false);
    // \w itself agrees.
    expect(compileSafeRegex('^\\w$', { ignoreCase: true })('ſ')).toBe(new RegExp('^\\w$', 'iu').test('ſ'));
  });

  test('anchored means the whole input, even with a top-level alternation', () => {
    const test = compileSafeRegex('a|bc', { anchored: true });
    expect([test('a'), test('bc'), test('abc'), test('bcd'), test('')]).toEqual([true, true, false, false, false]);
  });
});

function refusal(pattern: string, options = {}): SafeRegexErrorKind | 'accepted' {
  try {
    compileSafeRegex(pattern, options);
    return 'accepted';
  } catch (err) {
    expect(err).toBeInstanceOf(SafeRegexError);
    return (err as SafeRegexError).kind;
  }
}

describe('compileSafeRegex refuses', () => {
  test.each(['(', '[a', 'a{2,1}', '\\', '*a', 'a**', '\\-', '{', 'a{', '(?<n>a)(?<n>b)', '\\p{NoSuchProperty}', '\\u{110000}', '\\1'])(
    'invalid JS pattern %j: syntax',
    (pattern) => {
      expect(refusal(pattern)).toBe('syntax');
    },
  );

  test.each(['a(?=b)', 'a(?!b)', '(?<=a)b', '(?<!a)b', '(a)\\1', '(?<x>a)\\k<x>', '(?:(?=a))'])(
    'lookaround or backreference %j: not-linear',
    (pattern) => {
      expect(refusal(pattern)).toBe('not-linear');
      expect(refusal(pattern, { anchored: true, ignoreCase: true })).toBe('not-linear');
    },
  );

  test.each([
    ['a repetition count above 1000', 'a{1001}'],
    ['nested repetitions too large together', '(?:a{100}){100}'],
    ['repetitions nested 1001 deep', `${'(?:'.repeat(1001)}a${')*'.repeat(1001)}`],
    ['Script_Extensions', '\\p{Script_Extensions=Greek}'],
    ['scx', '\\p{scx=Grek}'],
    ['a four-letter script code', '\\p{Script=Grek}'],
    ['a binary property RE2 lacks', '\\p{Ideographic}'],
  ])('valid JS the engine cannot run (%s): unsupported', (_what, pattern) => {
    expect(() => new RegExp(pattern, 'u')).not.toThrow();
    expect(refusal(pattern)).toBe('unsupported');
  });

  test('deep plain groups are fine', () => {
    expect(compileSafeRegex(`${'(?:'.repeat(5000)}a${')'.repeat(5000)}`)('a')).toBe(true);
  });

  test('\\P{…} with ignoreCase: unsupported (JS and RE2 read it differently); [^\\p{…}] agrees', () => {
    expect(refusal('\\P{Ll}', { ignoreCase: true })).toBe('unsupported');
    expect(refusal('[\\P{Ll}]', { ignoreCase: true })).toBe('unsupported');
    expect(refusal('\\P{Ll}')).toBe('accepted');
    const negated = compileSafeRegex('^[^\\p{Ll}]$', { ignoreCase: true });
    for (const s of ['a', 'A', '1', 'é']) expect(negated(s)).toBe(/^[^\p{Ll}]$/iu.test(s));
  });

  test('a lookbehind-like named group is not a lookbehind', () => {
    expect(refusal('(?<eq>=)')).toBe('accepted');
    expect(compileSafeRegex('(?<eq>=)')('a=b')).toBe(true);
  });
});

describe('ReDoS patterns finish on 50,000-character hostile inputs', () => {
  const as = 'a'.repeat(50_000);
  test.each([
    ['^(a|a)*$', `${as}!`],
    ['(a+)+$', `${as}!`],
    ['(x+x+)+y', 'x'.repeat(50_000)],
    ['^(\\w+\\s?)*$', `${as}!`],
    ['^(.*a){12}$', `${as}b`],
  ])('%j', (pattern, input) => {
    expect(compileSafeRegex(pattern)(input)).toBe(false);
    expect(compileSafeRegex(pattern, { anchored: true, ignoreCase: true })(input)).toBe(false);
  });

  test('and still match what they should', () => {
    expect(compileSafeRegex('^(a|a)*$')(as)).toBe(true);
    expect(compileSafeRegex('(x+x+)+y')(`${'x'.repeat(50_000)}y`)).toBe(true);
  });
});

describe('ajvRegExpEngine', () => {
  const schema = {
    type: 'object',
    properties: {
      name: { type: 'string', pattern: '^[a-z][a-z0-9-]*$' },
      code: { type: 'string', pattern: '\\d{3}' },
      word: { type: 'string', pattern: '^\\p{L}+$' },
      slow: { type: 'string', pattern: '(a+)+$' },
    },
    patternProperties: { '^x-': { type: 'string' }, '^n-\\d+$': { type: 'number' } },
  };

  test.each([
    ['Ajv2020', () => new Ajv2020({ code: { regExp: ajvRegExpEngine } })],
    ['Ajv (draft-07)', () => new Ajv({ code: { regExp: ajvRegExpEngine } })],
  ])('%s validates pattern and patternProperties as ECMA-262 searches', (_name, make) => {
    const validate = make().compile(schema);
    const ok = (data: unknown) => validate(data) as boolean;
    expect(ok({ name: 'fs-1' })).toBe(true);
    expect(ok({ name: 'Fs' })).toBe(false);
    // Unanchored: `\d{3}` anywhere; two patterns in one schema stay distinct.
    expect(ok({ code: 'ab123cd' })).toBe(true);
    expect(ok({ code: 'ab12cd' })).toBe(false);
    expect(ok({ name: 'ab123cd', code: 'fs' })).toBe(false);
    expect(ok({ word: 'Ωμέγα' })).toBe(true);
    expect(ok({ word: 'Ω1' })).toBe(false);
    expect(ok({ 'x-a': 'v' })).toBe(true);
    expect(ok({ 'x-a': 1 })).toBe(false);
    expect(ok({ 'n-12': 1 })).toBe(true);
    expect(ok({ 'n-12': 'v' })).toBe(false);
    expect(ok({ 'n-12a': 'v' })).toBe(true);
    expect(ok({ slow: `${'a'.repeat(50_000)}!` })).toBe(false);
  });

  test('a schema whose pattern the engine refuses does not compile', () => {
    const ajv = new Ajv2020({ code: { regExp: ajvRegExpEngine } });
    let thrown: unknown;
    try {
      ajv.compile({ type: 'string', pattern: '^(?!admin).*' });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(SafeRegexError);
    expect((thrown as SafeRegexError).kind).toBe('not-linear');
  });

  test('flags: i is case-insensitive, anything else is refused', () => {
    expect(ajvRegExpEngine('^abc$', 'iu').test('ABC')).toBe(true);
    expect(ajvRegExpEngine('^abc$', 'u').test('ABC')).toBe(false);
    expect(() => ajvRegExpEngine('abc', 'g')).toThrow(SafeRegexError);
    expect(String(ajvRegExpEngine('a', 'u'))).not.toBe(String(ajvRegExpEngine('b', 'u')));
  });
});
