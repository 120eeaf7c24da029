/**
 * Unit tests of compileUriTemplate and isUriTemplate: the language of the MCP SDK v1
 * `UriTemplate.match` (checked against the SDK itself), refusals, and templates that make the SDK's
 * backtracking RegExp run for minutes finishing at once.
 */
import { UriTemplate } from '@modelcontextprotocol/sdk/shared/uriTemplate.js';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { compileUriTemplate, isUriTemplate, MAX_TEMPLATE_CHARS, MAX_TEMPLATE_EXPRESSIONS } from '../../src/registry/uri-template.js';

/** The SDK's answer; a template or URI it throws on does not match. */
function sdkMatches(template: string, uri: string): boolean {
  try {
    return new UriTemplate(template).match(uri) !== null;
  } catch {
    return false;
  }
}

function ours(template: string, uri: string): boolean {
  return compileUriTemplate(template)?.(uri) ?? false;
}

const TEMPLATES: readonly string[] = [
  'file:///{path}',
  'file:///{+path}',
  'file:///{path*}',
  'users/{id}',
  'users/{id}/posts/{post}',
  'repo://{owner}/{repo}',
  'http://example.com{/segments*}',
  'http://example.com{/seg}',
  'http://example.com{/a,b}',
  'search{?q}',
  'search{?q,lang}',
  'search{?q}{&page}',
  'list{?q*}',
  'doc{#section}',
  'file{.ext}',
  'file{.ext*}',
  'a.b(c)+d/{x}',
  '[x]^$|*?\\{y}',
  'x{y}z',
  '{+base}/index.html',
  'mail:{user}@{domain}',
  '{a}{b}',
  '{a,b}',
  '{x}',
  '{+x}',
  '{#x}',
  'prefix{?}suffix',
  'é/{x}',
  '😀{x}',
  '{a}-{b}',
  'str://{ x }',
  '{&a}',
  'test://{{x}',
  'no-expr',
  '',
  '}{x}',
  '{x}}',
];

const URIS: readonly string[] = [
  'file:///etc/passwd',
  'file:///a',
  'file:///a,b',
  'file:///',
  'file:///a/b,c',
  'users/42',
  'users/42/posts/7',
  'users//posts/7',
  'users/a,b',
  'repo://me/proj',
  'repo://me/proj/x',
  'http://example.com/a',
  'http://example.com/a,b',
  'http://example.com/a/b',
  'http://example.com',
  'search?q=x',
  'search?q=x&lang=en',
  'search?q=x&page=2',
  'search?q=',
  'search?lang=en',
  'list?q=a&b',
  'list?q=a,b',
  'doc#intro',
  'docintro',
  'doc',
  'file.txt',
  'file.tar.gz',
  'file.a,b',
  'a.b(c)+d/1',
  'aXb(c)+d/1',
  'a.b(c)d/1',
  '[x]^$|*?\\1',
  'xyz',
  'xy/z',
  'xz',
  'http://h/index.html',
  '/index.html',
  'mail:bob@example.com',
  'ab',
  'a',
  'a-b',
  'a-b-c',
  '😀',
  '😀😀',
  '😀1',
  'é/1',
  'str://v',
  'prefixsuffix',
  '&a=1',
  'test://v',
  'no-expr',
  '',
  '}v',
  'v}',
  'a\nb',
  'file:///a\nb',
  'x\u2028z',
  'x\rz',
  '\uD83D',
  '\uDE00\uD83D',
];

describe('compileUriTemplate matches the language of the SDK', () => {
  test.each(TEMPLATES)('%j', (template) => {
    const disagree = URIS.filter((uri) => ours(template, uri) !== sdkMatches(template, uri)).map(
      (uri) => `${JSON.stringify(uri)}: sdk ${sdkMatches(template, uri)}`,
    );
    expect(disagree).toEqual([]);
    // Every template in the table is one the SDK can match with (none is refused).
    expect(URIS.some((uri) => ours(template, uri))).toBe(true);
  });

  test('random templates and URIs over a small alphabet', () => {
    const piece = fc.constantFrom(
      ...['a', '/', '.', ',', '?', '&', '=', '#', '(', '+', '😀', '{x}', '{+x}', '{#x}', '{.x}', '{/x}', '{/x*}', '{x*}'],
      ...['{?x}', '{?x,y}', '{&y}', '{x,y}', '{?}', '{'],
    );
    const template = fc.array(piece, { maxLength: 6 }).map((p) => p.join(''));
    const char = fc.constantFrom('a', 'b', '/', '.', ',', '?', '&', '=', '#', 'x=', 'y=', '😀', '\uD83D', '\n', '(', '+');
    const uri = fc.array(char, { maxLength: 10 }).map((c) => c.join(''));
    fc.assert(
      fc.property(template, fc.array(uri, { maxLength: 8 }), (t, uris) => {
        for (const u of uris) expect([t, u, ours(t, u)]).toEqual([t, u, sdkMatches(t, u)]);
      }),
      { numRuns: 3000 },
    );
  });

  test('a surrogate pair may be split between two expressions, as in the SDK (no u flag there)', () => {
    expect(sdkMatches('{a}{b}', '😀')).toBe(true);
    expect(ours('{a}{b}', '😀')).toBe(true);
    expect(ours('{a}{b}{c}', '😀')).toBe(false);
  });
});

describe('compileUriTemplate refuses', () => {
  test('an unclosed expression', () => {
    expect(compileUriTemplate('file:///{path')).toBeNull();
    expect(compileUriTemplate('{a}{')).toBeNull();
  });

  test(`more than ${MAX_TEMPLATE_CHARS} characters`, () => {
    const at = (n: number) => `x{a}${'y'.repeat(n - 4)}`;
    expect(compileUriTemplate(at(MAX_TEMPLATE_CHARS))).not.toBeNull();
    expect(compileUriTemplate(at(MAX_TEMPLATE_CHARS + 1))).toBeNull();
  });

  test(`more than ${MAX_TEMPLATE_EXPRESSIONS} expressions`, () => {
    const withExpressions = (n: number) => Array.from({ length: n }, (_, i) => `{v${i}}`).join('/');
    expect(compileUriTemplate(withExpressions(MAX_TEMPLATE_EXPRESSIONS))).not.toBeNull();
    expect(compileUriTemplate(withExpressions(MAX_TEMPLATE_EXPRESSIONS + 1))).toBeNull();
  });

  test.each([
    ['{}', 'v'],
    ['a/{+}', 'a/v'],
    ['{#}', 'v'],
    ['x{.}', 'x.v'],
    ['{/}', '/v'],
    ['{*}', 'v'],
    ['{ , }', 'v'],
  ])('an expression without a name: %j', (template, uri) => {
    expect(compileUriTemplate(template)).toBeNull();
    // The SDK's regex matches, then its match() throws on the missing name.
    expect(() => new UriTemplate(template).match(uri)).toThrow(TypeError);
  });
});

describe('hostile templates run in linear time', () => {
  const hostile = `${Array.from({ length: 16 }, (_, i) => `{+v${i}}`).join('')}!`;

  test.each([40, 100_000])('{+v0}…{+v15}! against %i × "a"', (n) => {
    const match = compileUriTemplate(hostile)!;
    expect(match('a'.repeat(n))).toBe(false);
    expect(match(`${'a'.repeat(n)}!`)).toBe(true);
  });

  test(`${MAX_TEMPLATE_EXPRESSIONS} reserved expressions with separators against 100,000 characters`, () => {
    const t = `${Array.from({ length: MAX_TEMPLATE_EXPRESSIONS }, (_, i) => `{+v${i}}`).join(',')}!`;
    expect(compileUriTemplate(t)!(','.repeat(100_000))).toBe(false);
  });

  test('a URI longer than the SDK accepts does not match', () => {
    expect(compileUriTemplate('{+x}')!('a'.repeat(1_000_001))).toBe(false);
    expect(compileUriTemplate('{+x}')!('a'.repeat(1_000_000))).toBe(true);
  });
});

describe('isUriTemplate', () => {
  test.each([
    '{x}',
    'a{+b}c',
    'file:///{path}',
    '{{x}',
    '{a b}{c}',
    'x{}y{z}',
    '{x',
    'x}',
    '{}',
    '{ }',
    '{a b}',
    'plain',
    '',
    '}{',
    '{\tx}',
    '{😀}',
  ])('%j as the SDK', (text) => {
    expect(isUriTemplate(text)).toBe(UriTemplate.isTemplate(text));
  });

  test('a long run of "{" is scanned once', () => {
    expect(isUriTemplate('{'.repeat(200_000))).toBe(false);
    expect(isUriTemplate(`${'{'.repeat(200_000)}}`)).toBe(true);
  });
});
