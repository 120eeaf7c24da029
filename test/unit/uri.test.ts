/**
 * Unit tests of normalizeResourceUri and normalizeAbsolutePath: RFC 3986 normalisation, every
 * encoded-dot bypass of a resource rule refused or resolved, and properties checked against what a
 * decoding file server does (decodeURIComponent, then path.posix.normalize).
 */
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { compileGlob } from '../../src/config/glob.js';
import { normalizeAbsolutePath, normalizeResourceUri } from '../../src/policy/uri.js';

const normalized = (uri: string) => {
  const r = normalizeResourceUri(uri);
  return r.ok ? r.uri : null;
};

describe('normalizeResourceUri normalises', () => {
  test.each([
    // The bypasses of `file:///srv/files/public/**`: the dots are decoded, then resolved.
    ['file:///srv/files/public/%2e%2e/payroll.txt', 'file:///srv/files/payroll.txt'],
    ['file:///srv/files/public/.%2E/payroll.txt', 'file:///srv/files/payroll.txt'],
    ['file:///srv/files/public/%2E%2e/payroll.txt', 'file:///srv/files/payroll.txt'],
    ['file:///srv/files/public/%2e./payroll.txt', 'file:///srv/files/payroll.txt'],
    ['file:///srv/files/public/%2e/../../payroll.txt', 'file:///srv/payroll.txt'],
    ['file:///srv/files/public/./a/../b.txt', 'file:///srv/files/public/b.txt'],
    ['file:///srv/files/public/../../../../../etc/passwd', 'file:///etc/passwd'],
    ['file:///..', 'file:///'],
    ['file:///srv/files/public/.', 'file:///srv/files/public/'],
    ['file:///srv/files/public/a/..', 'file:///srv/files/public/'],
    ['file:///srv/files/public/...', 'file:///srv/files/public/...'],
    ['file:///srv/files/public/..a/.b', 'file:///srv/files/public/..a/.b'],
    // Query and fragment are kept, dots and all.
    ['file:///srv/a/../b?x=../../y#../z', 'file:///srv/b?x=../../y#../z'],
    ['file:///srv/a?q=%2e%2E%2f#%7e', 'file:///srv/a?q=..%2F#~'],
    // Case: scheme and host lower, userinfo, port, path, query and fragment as they are.
    ['FILE:///Srv/A', 'file:///Srv/A'],
    ['HTTP://User:PW@Example.COM:8080/A/%7euser?Q=%2a#F%3a', 'http://User:PW@example.com:8080/A/~user?Q=%2A#F%3A'],
    ['http://[2001:DB8::1]:80/', 'http://[2001:db8::1]:80/'],
    ['file://HOST%41/x', 'file://hosta/x'],
    ['http://ÉX.example/', 'http://Éx.example/'],
    ['http://Example.COM', 'http://example.com'],
    // Percent-encoding: unreserved decoded, others upper-case hex, non-ASCII untouched.
    ['file:///srv/%41%62%2D%5f%7E%2e', 'file:///srv/Ab-_~.'],
    ['file:///srv/a%20b/%c3%a9/é', 'file:///srv/a%20b/%C3%A9/é'],
    ['file:///srv/100%25', 'file:///srv/100%25'],
    // RFC 3986 §5.2.4 and §5.4 examples, on paths of other schemes.
    ['x:/a/b/c/./../../g', 'x:/a/g'],
    ['x:mid/content=5/../6', 'x:mid/6'],
    ['x:/./g', 'x:/g'],
    ['x:/../g', 'x:/g'],
    ['x:g/..', 'x:/'],
    ['urn:isbn:0451450523', 'urn:isbn:0451450523'],
    ['mailto:John.Doe@Example.COM', 'mailto:John.Doe@Example.COM'],
    ['demo://resource/static/{id}', 'demo://resource/static/{id}'],
  ])('%j → %j', (input, output) => {
    expect(normalizeResourceUri(input)).toEqual({ ok: true, uri: output });
  });
});

describe('normalizeResourceUri refuses', () => {
  test.each([
    ['no scheme', '/srv/files/public/a'],
    ['no scheme (relative)', 'srv/files'],
    ['no scheme (network-path)', '//host/x'],
    ['empty', ''],
    ['an invalid scheme', '1file:///a'],
    ['an invalid scheme (space)', 'fi le:///a'],
    ['invalid percent-encoding %zz', 'file:///srv/%zz'],
    ['a lone %', 'file:///srv/100%'],
    ['a % with one hex digit', 'file:///srv/%2'],
    ['invalid percent-encoding in the query', 'file:///srv/a?x=%g1'],
    ['..%2f', 'file:///srv/files/public/..%2f..%2fpayroll.txt'],
    ['%2F', 'file:///srv/files/public/..%2Fpayroll.txt'],
    ['%5c', 'file:///srv/files/public/..%5c..%5cpayroll.txt'],
    ['%5C', 'file:///srv/files/public/..%5C'],
    ['a literal backslash', 'file:///srv/files/public/..\\payroll.txt'],
    ['%00', 'file:///srv/files/public/a.txt%00.png'],
    ['%252e%252e', 'file:///srv/files/public/%252e%252e/payroll.txt'],
    ['%252E', 'file:///srv/files/public/%252E./payroll.txt'],
    ['%252f', 'file:///srv/files/public/..%252fpayroll.txt'],
    ['%252F', 'file:///srv/files/public/..%252Fpayroll.txt'],
    ['%255c', 'file:///srv/files/public/..%255cpayroll.txt'],
    ['%255C', 'file:///srv/files/public/..%255Cpayroll.txt'],
    ['%2500', 'file:///srv/files/public/a%2500'],
    ['triple-encoded %25252e', 'file:///srv/files/public/%25252e%25252e/payroll.txt'],
    ['%25 then encoded hex digits', 'file:///srv/files/public/%25%32%65%25%32%65/payroll.txt'],
    ['an overlong UTF-8 dot (%C0%AE)', 'file:///srv/files/public/%c0%ae%c0%ae/payroll.txt'],
    ['an overlong UTF-8 slash (%E0%80%AF)', 'file:///srv/files/public/..%e0%80%af'],
    ['an overlong UTF-8 dot (%F0%80%80%AE)', 'file:///srv/files/public/%F0%80%80%AE%F0%80%80%AE'],
    ['// inside the path', 'file:///srv/files/public//../payroll.txt'],
    ['// inside the path (plain)', 'file:///srv//files/secret/x'],
    ['// at the start of the path', 'file:////etc/passwd'],
    ['a newline', 'file:///srv/a\nb'],
    ['a NUL', 'file:///srv/a\u0000'],
    ['DEL', 'file:///srv/a\u007f'],
    ['a tab in the query', 'file:///srv/a?x=\t'],
    ['a control character in the scheme', 'fi\u0001le:///a'],
  ])('%s: %j', (_why, uri) => {
    const r = normalizeResourceUri(uri);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason.length).toBeGreaterThan(0);
  });

  test('valid UTF-8 near the overlong lead bytes is kept', () => {
    expect(normalized('file:///srv/%C3%A9%E0%A4%85%F0%9F%98%80')).toBe('file:///srv/%C3%A9%E0%A4%85%F0%9F%98%80');
  });

  test('double encodings in the query and fragment are not the path', () => {
    expect(normalized('file:///srv/a?x=%252e%2F%5C%00#%252f')).toBe('file:///srv/a?x=%252e%2F%5C%00#%252f');
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

/** The path component of a URI, read with RFC 3986 Appendix B (independently of the module). */
function pathOf(uri: string): string {
  return /^(([^:/?#]+):)?(\/\/([^/?#]*))?([^?#]*)/s.exec(uri)![5]!;
}

/** "/a/" and "/a" name the same directory: RFC 3986 writes `a/b/..` as `a/`, POSIX as `a`. */
const dir = (p: string) => (p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p);

const SEGMENTS = [
  ...['srv', 'files', 'public', 'secret', 'payroll.txt', 'B', '.', '..', '...', '.a', 'a.', '%2e', '%2E', '.%2e', '%2e.', '%2e%2E'],
  ...['%2E%2e', '%41', '%7e', '~', '%20', '%c3%a9', 'é', '%25', '%252e', '%25%32%65', '%2f', '%5C', '%00', '', 'x.y', '%zz', '\\'],
];
const segments = fc.array(fc.constantFrom(...SEGMENTS), { maxLength: 8 });

/** file: URIs as agents might send them. */
const fileUri = fc
  .tuple(
    fc.constantFrom('file', 'FILE', 'File'),
    fc.constantFrom('', 'localhost', 'LocalHost'),
    segments,
    fc.constantFrom('', '?q=../x', '?a=%2e', '#frag/..'),
  )
  .map(([scheme, host, segs, tail]) => `${scheme}://${host}/${segs.join('/')}${tail}`);

/** Any URI-like text: mixed schemes, authorities, rootless paths, and random strings. */
const anyUri = fc.oneof(
  fileUri,
  fc
    .tuple(
      fc.constantFrom('http', 'X-Y.z+1', 'urn', 'a', '1a', ''),
      fc.constantFrom('://', ':', ':/', '//'),
      fc.constantFrom('', 'Host', 'u@H:80', '[::A]', 'h%41%2e', 'a@b@C'),
      fc.boolean(),
      segments,
      fc.constantFrom('', '?', '?x=%2E#', '#%7E', '?a/../b'),
    )
    .map(([scheme, sep, authority, rooted, segs, tail]) => `${scheme}${sep}${authority}${rooted ? '/' : ''}${segs.join('/')}${tail}`),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: fc.constantFrom('a', ':', '/', '.', '%', '2', 'e', 'E', 'f', '?', '#', '@', 'A'), maxLength: 30 }),
);

describe('normalizeResourceUri properties', () => {
  test('normalising is idempotent, and the path keeps no "." or ".." segment', () => {
    fc.assert(
      fc.property(anyUri, (uri) => {
        const first = normalizeResourceUri(uri);
        if (!first.ok) return;
        expect(normalizeResourceUri(first.uri)).toEqual(first);
        const segs = pathOf(first.uri).split('/');
        expect(segs.filter((s) => s === '.' || s === '..')).toEqual([]);
      }),
      { numRuns: 5000 },
    );
  });

  test('for file: URIs, the normalised path is what a decoding server opens', () => {
    let accepted = 0;
    fc.assert(
      fc.property(fileUri, (uri) => {
        const r = normalizeResourceUri(uri);
        if (!r.ok) return;
        accepted++;
        const served = path.posix.normalize(decodeURIComponent(pathOf(uri)));
        expect(dir(decodeURIComponent(pathOf(r.uri)))).toBe(dir(served));
      }),
      { numRuns: 5000 },
    );
    expect(accepted).toBeGreaterThan(500); // the property is not vacuous
  });

  test('a URI the public rule allows never opens anything outside public/', () => {
    const allowed = compileGlob('file:///srv/files/public/**');
    let allowedCount = 0;
    fc.assert(
      fc.property(segments, (segs) => {
        const uri = `file:///srv/files/public/${segs.join('/')}`;
        const r = normalizeResourceUri(uri);
        if (!r.ok || !allowed(r.uri)) return;
        allowedCount++;
        expect(path.posix.normalize(decodeURIComponent(pathOf(uri)))).toMatch(/^\/srv\/files\/public(\/|$)/);
      }),
      { numRuns: 5000 },
    );
    expect(allowedCount).toBeGreaterThan(100);
  });
});

describe('normalizeAbsolutePath', () => {
  test.each([
    ['/a/b/../c', '/a/c'],
    ['/', '/'],
    ['//', '/'],
    ['/a//b/', '/a/b'],
    ['/a/./b/.', '/a/b'],
    ['/..', '/'],
    ['/../../x', '/x'],
    ['/srv/files/public/../../../etc/passwd', '/etc/passwd'],
    ['/a/.../b', '/a/.../b'],
    ['/a/..b/c.', '/a/..b/c.'],
    ['/é/ü', '/é/ü'],
    ['/%2e%2e/x', '/%2e%2e/x'],
  ])('%j → %j', (input, output) => {
    expect(normalizeAbsolutePath(input)).toBe(output);
  });

  test.each([
    ['relative', 'a/b'],
    ['empty', ''],
    ['home-relative', '~/x'],
    ['a Windows path', 'C:\\x'],
    ['a backslash', '/a\\b'],
    ['a NUL', '/a\u0000b'],
    ['a newline', '/a\nb'],
    ['DEL', '/a\u007f'],
  ])('null for %s: %j', (_why, input) => {
    expect(normalizeAbsolutePath(input)).toBeNull();
  });

  test('agrees with path.posix.normalize (without a trailing "/") and is idempotent', () => {
    const p = fc.array(fc.constantFrom('a', 'b', '.', '..', '', '...', 'é', '.x'), { maxLength: 10 }).map((s) => `/${s.join('/')}`);
    fc.assert(
      fc.property(p, (input) => {
        const out = normalizeAbsolutePath(input)!;
        expect(out).toBe(dir(path.posix.normalize(input)));
        expect(normalizeAbsolutePath(out)).toBe(out);
      }),
      { numRuns: 3000 },
    );
  });
});
