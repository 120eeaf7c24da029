/**
 * Resource routing matches an agent's URI against every resource template a child lists (RFC 6570).
 * The language is exactly that of the MCP SDK v1 `UriTemplate.match` (shared/uriTemplate.js), so
 * routing does not change, but the SDK builds a backtracking JS RegExp on each call, and a child's
 * template such as `{+v0}{+v1}…{+v15}!` then takes minutes on an ordinary URI. Here a template is
 * translated once, operator by operator as the SDK does, and compiled with compileSafeRegex: a
 * match is linear in the URI's length whatever the template.
 */
import { compileSafeRegex } from '../config/safe-regex.js';

/** Templates longer than this (in UTF-16 units) are refused. */
export const MAX_TEMPLATE_CHARS = 8192;
/** Templates with more `{…}` expressions than this are refused. */
export const MAX_TEMPLATE_EXPRESSIONS = 64;
/** The SDK refuses to match a URI longer than this; so does the matcher. */
const MAX_URI_CHARS = 1_000_000;

/** Does `uri` match the template? Linear in `uri.length`. */
export type UriTemplateMatcher = (uri: string) => boolean;

const OPERATORS = ['+', '#', '.', '/', '?', '&'] as const;
/** The SDK's per-segment class: a value without `/` or `,`, then `,`-separated more when exploded. */
const SEGMENT = '[^/,]+';
const EXPLODED_SEGMENT = '[^/,]+(?:,[^/,]+)*';

/**
 * Compiles a template into a matcher, or returns null for a template it refuses: an unclosed `{`,
 * more than MAX_TEMPLATE_CHARS characters or MAX_TEMPLATE_EXPRESSIONS expressions, or an
 * expression other than `{?}`/`{&}` without a variable name (the SDK throws when matching those).
 */
export function compileUriTemplate(template: string): UriTemplateMatcher | null {
  if (template.length > MAX_TEMPLATE_CHARS) return null;
  let source = '';
  let expressions = 0;
  let i = 0;
  // The SDK's parse: text up to `{`, then an expression up to the next `}`.
  while (i < template.length) {
    const open = template.indexOf('{', i);
    if (open === -1) {
      source += literal(template.slice(i));
      break;
    }
    source += literal(template.slice(i, open));
    const close = template.indexOf('}', open);
    if (close === -1) return null;
    if (++expressions > MAX_TEMPLATE_EXPRESSIONS) return null;
    const part = expressionSource(template.slice(open + 1, close));
    if (part === null) return null;
    source += part;
    i = close + 1;
  }
  let test: (input: string) => boolean;
  try {
    test = compileSafeRegex(source, { anchored: true });
  } catch {
    return null; // not expected: the source is built from escaped text and fixed classes
  }
  return (uri) => uri.length <= MAX_URI_CHARS && test(codeUnits(uri));
}

/** Does `text` contain a template expression: `{`, characters other than `}` and whitespace, `}`? */
export function isUriTemplate(text: string): boolean {
  // The SDK's /\{[^}\s]+\}/, scanned once: that regex backtracks quadratically on a run of `{`.
  let open = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '}') {
      if (open !== -1 && i - open > 1) return true;
      open = -1;
    } else if (WHITESPACE.test(c)) open = -1;
    else if (c === '{' && open === -1) open = i;
  }
  return false;
}

const WHITESPACE = /\s/;

/** The SDK's partToRegExp for one expression (the text between `{` and `}`), as a JS source. */
function expressionSource(expression: string): string | null {
  const operator = OPERATORS.find((op) => expression.startsWith(op)) ?? '';
  const exploded = expression.includes('*');
  const names = expression
    .slice(operator.length)
    .split(',')
    .map((name) => name.replace('*', '').trim())
    .filter((name) => name.length > 0);
  if (operator === '?' || operator === '&') {
    return names.map((name, i) => `${i === 0 ? literal(operator) : '&'}${literal(name)}=[^&]+`).join('');
  }
  // Only the first name takes part, as in the SDK; with none the SDK throws on a match.
  if (names.length === 0) return null;
  switch (operator) {
    case '+':
    case '#': // the SDK's `#` does not match the `#` itself
      return '.+';
    case '.':
      return `\\.${SEGMENT}`;
    case '/':
      return `/${exploded ? EXPLODED_SEGMENT : SEGMENT}`;
    default:
      return exploded ? EXPLODED_SEGMENT : SEGMENT;
  }
}

/** Template text as a JS (flag u) source that matches it literally. */
function literal(text: string): string {
  return codeUnits(text).replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
}

/**
 * The SDK's RegExp has no `u` flag, so it matches UTF-16 code units: `{a}{b}` matches "😀", one
 * unit each. RE2 reads code points, so each surrogate unit is first replaced by a code point of
 * its own (plane 15 private use, U+F0000 + unit − 0xD800), both in the template's text and in the
 * URI. After that no surrogate is left to mistake for another, and every class of the template
 * (`.`, `[^/,]`, `[^&]`) treats the stand-ins as it treated the units.
 */
function codeUnits(text: string): string {
  if (!SURROGATE.test(text)) return text;
  return text.replace(SURROGATES, (unit) => String.fromCodePoint(0xf0000 + unit.charCodeAt(0) - 0xd800));
}

const SURROGATE = /[\uD800-\uDFFF]/;
const SURROGATES = /[\uD800-\uDFFF]/g;
