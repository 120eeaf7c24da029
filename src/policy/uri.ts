/**
 * Policy globs match resource URIs and path-like arguments, so the text a rule sees must be the
 * resource the child serves. A rule `file:///srv/files/public/**` was bypassed with
 * `file:///srv/files/public/%2e%2e/payroll.txt`: the glob saw a path under public/, the child
 * decoded it and served /srv/files/payroll.txt. The gateway therefore decides on a normalised URI
 * and forwards exactly that one, and refuses a URI whose meaning depends on how a server decodes it.
 *
 * Pure functions over strings. No WHATWG `URL`: it parses custom schemes differently from RFC 3986.
 */

/** A normalised URI, or why the URI cannot be normalised unambiguously. */
export type NormalizedUri = { readonly ok: true; readonly uri: string } | { readonly ok: false; readonly reason: string };

/**
 * RFC 3986 §6.2.2 normalisation: the scheme and host in lower case, percent-encodings of unreserved
 * characters decoded and the others in upper-case hex, dot segments removed from the path (§5.2.4).
 * Refuses a URI without a scheme, with invalid percent-encoding or an ASCII control character, and
 * a path holding `%2F`, `%5C`, `\`, `%00`, a double-encoded dot, slash, backslash or NUL, an
 * overlong UTF-8 encoding, or `//`.
 */
export function normalizeResourceUri(uri: string): NormalizedUri {
  const control = CONTROL.exec(uri);
  if (control) return refuse(`it holds the ASCII control character U+${hex4(control[0])}`);
  const percent = BAD_PERCENT.exec(uri);
  if (percent) {
    return refuse(`it holds invalid percent-encoding at character ${percent.index + 1}: "%" must be followed by two hex digits`);
  }
  // RFC 3986 Appendix B, with `s` so that `.` is any character; it matches every string.
  const m = APPENDIX_B.exec(uri)!;
  const scheme = m[2];
  const authority = m[4];
  const query = m[7];
  const fragment = m[9];
  if (scheme === undefined) return refuse('it has no scheme (such as "file:")');
  if (!SCHEME.test(scheme)) {
    return refuse(`its scheme "${scheme}" is not an RFC 3986 scheme (a letter, then letters, digits, "+", "-", ".")`);
  }

  const path = normalizePercent(m[5] ?? '');
  const problem = pathProblem(path);
  if (problem) return refuse(problem);

  let out = `${scheme.toLowerCase()}:`;
  if (authority !== undefined) out += `//${normalizeAuthority(authority)}`;
  out += removeDotSegments(path);
  if (query !== undefined) out += `?${normalizePercent(query)}`;
  if (fragment !== undefined) out += `#${normalizePercent(fragment)}`;
  return { ok: true, uri: out };
}

/**
 * POSIX lexical normalisation of an absolute path for the path operator: repeated `/` collapsed,
 * `.` and `..` resolved (never above `/`), no trailing `/` except for the root. Null when the value
 * is not an absolute POSIX path (no leading `/`) or holds a NUL, a backslash or a control character.
 */
export function normalizeAbsolutePath(path: string): string | null {
  if (!path.startsWith('/') || CONTROL.test(path) || path.includes('\\')) return null;
  const out: string[] = [];
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') out.pop();
    else out.push(segment);
  }
  return `/${out.join('/')}`;
}

// ---------------------------------------------------------------------------------------------

const APPENDIX_B = /^(([^:/?#]+):)?(\/\/([^/?#]*))?([^?#]*)(\?([^#]*))?(#(.*))?/s;
const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*$/;
const CONTROL = /[\u0000-\u001f\u007f]/;
const BAD_PERCENT = /%(?![0-9A-Fa-f]{2})/;
const TRIPLET = /%([0-9A-Fa-f]{2})/g;
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

const refuse = (why: string): NormalizedUri => ({ ok: false, reason: `the URI cannot be checked unambiguously: ${why}` });
const hex4 = (c: string): string => c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0');

/** §6.2.2.1 and §6.2.2.2: unreserved characters decoded, the other triplets in upper-case hex. */
function normalizePercent(component: string): string {
  return component.replace(TRIPLET, (_triplet, hex: string) => {
    const c = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(c) ? c : `%${hex.toUpperCase()}`;
  });
}

/** Userinfo and port as they are (after percent normalisation), the host in lower case. */
function normalizeAuthority(authority: string): string {
  const normalized = normalizePercent(authority);
  // Userinfo cannot hold an unencoded "@", so the last one ends it (as WHATWG parsers also read it).
  const at = normalized.lastIndexOf('@');
  const userinfo = at === -1 ? '' : normalized.slice(0, at + 1);
  const hostPort = normalized.slice(at + 1);
  // A host is an IP literal in brackets or a name without ":"; what follows is the port.
  const end = hostPort.startsWith('[') ? hostPort.indexOf(']') + 1 || hostPort.length : hostPort.indexOf(':');
  const host = end === -1 ? hostPort : hostPort.slice(0, end);
  const port = end === -1 ? '' : hostPort.slice(end);
  // ASCII letters only (non-ASCII stays as it is), and never the hex of a triplet.
  return userinfo + host.replace(/%[0-9A-F]{2}|[A-Z]+/g, (s) => (s.startsWith('%') ? s : s.toLowerCase())) + port;
}

/**
 * What in a percent-normalised path servers read in different ways. Each of these lets a path
 * that a glob sees under one directory name a file under another once a server decodes it: an
 * encoded or literal separator (`%2F`, `%5C`, `\`), a NUL that ends the name early in C, an encoding
 * decoded twice into one of those or a dot (`%252e`, `%25%32%65` once normalised, `%25252e`…), an
 * overlong UTF-8 form of an ASCII character (`%C0%AE`), and an empty segment, which RFC 3986 counts and POSIX collapses, so `public//../x` is public/x for the
 * one and x for the other.
 */
function pathProblem(path: string): string | null {
  if (path.includes('%2F')) return 'the path holds an encoded "/" (%2F), which servers decode differently';
  if (path.includes('%5C') || path.includes('\\')) return 'the path holds a backslash ("\\" or %5C), a separator on some servers';
  if (path.includes('%00')) return 'the path holds an encoded NUL (%00)';
  const twice = DOUBLE_ENCODED.exec(path);
  if (twice) return `the path holds a double-encoded dot, slash, backslash or NUL (${twice[0]})`;
  const overlong = OVERLONG_UTF8.exec(path);
  if (overlong) return `the path holds an overlong UTF-8 encoding (${overlong[0]}…), which lenient decoders read as ASCII such as "."`;
  if (path.includes('//')) return 'the path holds an empty segment ("//"), which file servers collapse and RFC 3986 does not';
  return null;
}

// After %25 the hex digits are plain characters, in either case.
const DOUBLE_ENCODED = /%25(?:25)*(?:2E|2F|5C|00)/i;
// Lead bytes that can only start an overlong form of an ASCII character (%C0%AE is "." to a lenient
// decoder): C0 and C1, E0 then 80-9F, F0 then 80-8F. Valid UTF-8 never holds these.
const OVERLONG_UTF8 = /%C[01]|%E0%[89]|%F0%8/;

/**
 * RFC 3986 §5.2.4, step for step. The input buffer is `path` from index `i`; the output buffer is
 * the list `out` of moved segments, each with its leading "/" (when it had one), so "remove the
 * last segment and its preceding '/'" is a pop, and the whole runs in linear time.
 */
function removeDotSegments(path: string): string {
  const out: string[] = [];
  const n = path.length;
  let i = 0;
  while (i < n) {
    // A. a prefix "../" or "./" is removed.
    if (path.startsWith('../', i)) i += 3;
    else if (path.startsWith('./', i)) i += 2;
    // B. a prefix "/./" or "/." (a complete segment) becomes "/".
    else if (path.startsWith('/./', i)) i += 2;
    else if (i + 2 === n && path.startsWith('/.', i)) {
      out.push('/');
      break;
    }
    // C. a prefix "/../" or "/.." (complete) becomes "/", and the last output segment goes.
    else if (path.startsWith('/../', i)) {
      i += 3;
      out.pop();
    } else if (i + 3 === n && path.startsWith('/..', i)) {
      out.pop();
      out.push('/');
      break;
    }
    // D. an input that is only "." or ".." is removed.
    else if ((i + 1 === n && path[i] === '.') || (i + 2 === n && path.startsWith('..', i))) break;
    // E. the first segment, with its leading "/" if any, moves to the output.
    else {
      const next = path.indexOf('/', path[i] === '/' ? i + 1 : i);
      const end = next === -1 ? n : next;
      out.push(path.slice(i, end));
      i = end;
    }
  }
  return out.join('');
}
