/**
 * The one glob dialect of gateway.yaml (policies, rate-limit rules, pricing, the `glob` condition):
 * picomatch with `dot: true` (names may start with a dot), `windows: false` (a backslash escapes,
 * never separates: matching is the same on every host) and `debug: true` (an invalid glob throws
 * instead of silently never matching). The schema uses `globProblem` so a bad glob is a config
 * error with its path; the modules that match use `compileGlob`.
 *
 * Matching runs in time linear in the input. picomatch's own regexes backtrack (`*a*a*b` takes
 * seconds on a few thousand `a`s, and grows as n³), and what is matched is chosen by the caller: a
 * tool name, a resource URI, an argument of up to 16 MB. So picomatch stays the *parser* of the
 * dialect, at load time, and its regex is never run: `globToRegexSource` reads the regex picomatch
 * makes (a small, fixed vocabulary), rewrites its lookaheads as plain regular expressions, and
 * `compileGlob` runs the result on re2js (safe-regex.ts). The language is picomatch's by
 * construction; anything in picomatch's regex outside that vocabulary is refused, never guessed.
 *
 * The lookaheads picomatch writes with `dot: true` all say "this path segment is not `.` or `..`"
 * (at a `*` that starts a segment, at every `/` a `**` crosses, after a leading `.`), or "something
 * follows", or they are `^`/`$` inside a group. Each is a tiny automaton over the next few
 * characters (classes: `.`, `/`, anything else); the rewrite walks picomatch's regex left to right
 * carrying the automata still undecided, splits character classes and `*` runs where an automaton
 * needs to look, and drops the branches it rejects. A `**` (which checks every `/` it crosses) has
 * a closed form: `[^/]*\/(?:S?\/)*` then a last segment, where S is a non-empty segment other than
 * `.` and `..`.
 *
 * Refused, with a message (a config error at load, never a silent difference):
 * - negation (`!x`), extglobs (`!(…)`, `@(…)`, `+(…)`, `*(…)`, `?(…)`), parentheses and `|`, which
 *   picomatch passes to its regex (or, for some globs, reads literally);
 * - brace ranges (`..` inside braces): picomatch reads `{1..3}` as the class `[1-3]`, and so
 *   `{1..10}` as `[1-10]`, which matches only `0` and `1`;
 * - `[!…]`: in picomatch 4 it is a class that contains `!`, not a negated class (write `[^…]`);
 * - `+` after a class or brace, and `++`: regex quantifiers there; a backslash before a letter or
 *   digit: a regex escape there (`\d`, `\b`, `\1`…); three or more backslashes in a row, which
 *   picomatch collapses (four make one literal backslash) and on which its parser can loop forever;
 * - a `.` in a glob with `***` or a POSIX class (`[[:alpha:]]`): picomatch loses its escape when it
 *   rebuilds its regex, so it would match any character;
 * - a translation that grows beyond MAX_SOURCE characters (checks that stay undecided across many
 *   groups, as in `{/*,x}` repeated, multiply the paths), or groups nested beyond MAX_DEPTH.
 *
 * Where the answers differ from picomatch (kept on purpose):
 * - A character is a Unicode code point, not a UTF-16 unit: `?` matches `😀` (picomatch needs `??`),
 *   and a class may hold astral characters. The gateway's regexes all use flag `u`.
 * - Line terminators (\n, \r, U+2028, U+2029) are ordinary characters. picomatch's `**` and its
 *   "something follows" test use `.`, which stops at them: `a/**` does not match `a/x\ny` there,
 *   so a deny rule could be slipped past with a newline in an argument.
 * - Templates (see globToRegexSource): a placeholder is decided as the letters it is made of, so
 *   `*${x}` does not exclude the segments `.` and `..` when the value itself is dots.
 * Everything else (`*` not matching `.`/`..` at the start of a segment, a trailing `/` after a
 * final `*`, `[ab]` also matching the text "[ab]", quotes, `./` prefixes, backslash runs…) is
 * picomatch's, and test/unit/glob.test.ts checks it against picomatch itself.
 */
import picomatch from 'picomatch';
import { compileSafeRegex } from './safe-regex.js';

const GLOB_OPTIONS: picomatch.PicomatchOptions = Object.freeze({ dot: true, windows: false, debug: true });

/** A compiled string test. */
export type Matcher = (input: string) => boolean;

/** A glob that is invalid, or that the gateway refuses; the message names the glob and why. */
export class GlobError extends Error {
  override readonly name = 'GlobError';
}

/** Longest regex source a glob may translate to. */
const MAX_SOURCE = 100_000;
/** Deepest nesting of groups (braces) in picomatch's regex. */
const MAX_DEPTH = 100;

/**
 * Translates a glob into an anchored regex source (`^(?:…)$`) for `new RegExp(source, 'u')`, with
 * no lookaround and no backreferences, so a linear-time engine can run it. Throws GlobError when
 * the glob is invalid or refused (see the module header).
 *
 * A run of two or more ASCII letters and digits in the glob, outside `[…]`, comes out whole and
 * unescaped (once, several times, or not at all where its path cannot match): a caller may stand
 * such a placeholder (`QzTpl0Z`) in for a template, then replace every occurrence in the source with
 * an escaped value.
 */
export function globToRegexSource(glob: string): string {
  if (glob === '') throw new GlobError('an empty glob matches nothing');
  const refused = refusal(glob);
  if (refused !== null) throw new GlobError(`glob ${JSON.stringify(glob)}: ${refused}`);
  let picomatchSource: string;
  try {
    picomatchSource = picomatch.makeRe(glob, GLOB_OPTIONS).source;
  } catch (err) {
    throw new GlobError(`invalid glob ${JSON.stringify(glob)}: ${(err as Error).message}`);
  }
  try {
    const body = emit(new Rewriter().run(new PicomatchReader(picomatchSource).read()));
    if (body.length > MAX_SOURCE) throw new Unsupported(`it translates to more than ${MAX_SOURCE} characters of regex`);
    return `^(?:${body})$`;
  } catch (err) {
    if (!(err instanceof Unsupported)) throw err;
    throw new GlobError(`glob ${JSON.stringify(glob)} is not supported: ${err.message}`);
  }
}

/** Compiles a glob into a linear-time matcher; throws on an invalid or refused glob. */
export function compileGlob(glob: string): Matcher {
  let test: (input: string) => boolean;
  try {
    test = compileSafeRegex(globToRegexSource(glob), { anchored: true });
  } catch (err) {
    if (err instanceof GlobError) throw err;
    throw new GlobError(`glob ${JSON.stringify(glob)} is too large for the gateway's regex engine: ${(err as Error).message}`);
  }
  // Same test as picomatch's own matcher: the exact text first, and empty input never matches.
  return (input) => input === glob || (input !== '' && test(input));
}

/** Why a glob cannot be compiled, or null. Templates (`${consumer.id}`) count as literal text. */
export function globProblem(glob: string): string | null {
  if (glob === '') return 'an empty glob matches nothing';
  try {
    compileGlob(glob.replace(/\$\{[^}]*\}/g, 'x'));
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

// ---------------------------------------------------------------------------------------------
// Refusals: the glob syntax picomatch passes through to its regex, or reads in a surprising way.
// The scan follows picomatch's tokenizer (escapes, then classes, then quotes) closely enough to
// give a clear message; the regex reader below stays the safety net for anything it misses.

const POSIX_CLASS_NAMES = new Set([
  'alnum',
  'alpha',
  'ascii',
  'blank',
  'cntrl',
  'digit',
  'graph',
  'lower',
  'print',
  'punct',
  'space',
  'upper',
  'word',
  'xdigit',
]);

function refusal(glob: string): string | null {
  // picomatch removes one leading "./" before it looks for a leading "!".
  const input = glob.startsWith('./') ? glob.slice(2) : glob;
  if (input.startsWith('!') && !input.startsWith('!(')) {
    return 'a leading "!" (a negated glob) is not supported; write a glob for what should match';
  }
  let quoted = false;
  let inClass = false;
  let classOpen = -1;
  let braces = 0;
  // The previous token outside classes and quotes: its character for "[", "]", "{", "}", ".",
  // "!@+*?"; "x" for anything else (and at the start).
  let prev = 'x';
  for (let i = 0; i < input.length; i++) {
    const c = input[i]!;
    if (c === '\\') {
      const next = input[i + 1];
      if (next === undefined) break;
      if (next === '\\' && input[i + 2] === '\\') {
        return 'three or more backslashes in a row are not supported (picomatch collapses such runs, and never returns on some); write "\\\\" for one backslash';
      }
      if (/[A-Za-z0-9]/.test(next)) {
        return `"\\${next}": a backslash before a letter or digit is a regex escape in picomatch and is not supported; write the character itself`;
      }
      // picomatch drops a backslash before "/" and "." and reads the character as if unescaped.
      if (next === '/' || next === '.') continue;
      i++;
      if (!inClass) prev = 'x';
      continue;
    }
    if (inClass) {
      const posix = /^\[:([a-z]+):\]/.exec(input.slice(i));
      if (posix && POSIX_CLASS_NAMES.has(posix[1]!)) {
        i += posix[0].length - 1;
      } else if (c === ']' && i > classOpen + 1 && !(i === classOpen + 2 && input[classOpen + 1] === '^')) {
        inClass = false;
        prev = ']';
      }
      continue;
    }
    if (quoted) {
      if (c === '"') quoted = false;
      continue;
    }
    switch (c) {
      case '"':
        // Quoted text is added to the token before it, so `prev` stays.
        quoted = true;
        break;
      case '[':
        if (input.includes(']', i + 1)) {
          if (input[i + 1] === '!') {
            return '"[!…]" is not a negated class in picomatch (it matches "!" too); write "[^…]" for a negated class';
          }
          inClass = true;
          classOpen = i;
        } else {
          prev = '[';
        }
        break;
      case '(':
      case ')':
        if (c === '(' && '!@+*?'.includes(prev)) {
          return `extglobs such as "${prev}(…)" are not supported; list the names with braces {a,b}, or use a regex condition`;
        }
        return 'parentheses are regex groups in picomatch and are not supported; use braces {a,b} for alternatives, or escape them (\\( and \\)) to match them literally';
      case '|':
        return '"|" is regex alternation in picomatch and is not supported; use braces {a,b} for alternatives, or escape it (\\|) to match it literally';
      case '+':
        if (prev === ']' || prev === '}' || prev === '{' || prev === '[') {
          return '"+" right after a class or a brace is a regex quantifier in picomatch and is not supported; escape it (\\+) to match a plus sign';
        }
        if (input[i + 1] === '+') {
          return '"++" is not supported (picomatch reads a run of "+" as one "+" and a regex quantifier); escape each one (\\+\\+)';
        }
        prev = '+';
        break;
      case '{':
        braces++;
        prev = '{';
        break;
      case '}':
        prev = braces > 0 ? '}' : 'x';
        if (braces > 0) braces--;
        break;
      case '.':
        if (braces > 0 && prev === '.') {
          return 'brace ranges such as {1..3} are not supported (picomatch reads {1..10} as the class [1-10], which matches 0 and 1); list the values instead: {1,2,3}';
        }
        prev = '.';
        break;
      default:
        prev = '!@*?'.includes(c) ? c : 'x';
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Character sets: sorted, disjoint, inclusive code point ranges.

type CharSet = readonly (readonly [number, number])[];

const MAX_CP = 0x10ffff;
const DOT = 0x2e;
const SLASH = 0x2f;

function charSet(ranges: (readonly [number, number])[]): CharSet {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}

function complement(set: CharSet): CharSet {
  const out: [number, number][] = [];
  let next = 0;
  for (const [lo, hi] of set) {
    if (lo > next) out.push([next, lo - 1]);
    next = hi + 1;
  }
  if (next <= MAX_CP) out.push([next, MAX_CP]);
  return out;
}

function intersect(a: CharSet, b: CharSet): CharSet {
  const out: [number, number][] = [];
  for (const [alo, ahi] of a) {
    for (const [blo, bhi] of b) {
      const lo = Math.max(alo, blo);
      const hi = Math.min(ahi, bhi);
      if (lo <= hi) out.push([lo, hi]);
    }
  }
  return charSet(out);
}

const single = (cp: number): CharSet => [[cp, cp]];
const NOT_SLASH = complement(single(SLASH));

/** The three kinds of character the segment checks tell apart. */
const enum Kind {
  Dot,
  Slash,
  Other,
}
const KINDS: readonly (readonly [Kind, CharSet])[] = [
  [Kind.Dot, single(DOT)],
  [Kind.Slash, single(SLASH)],
  [Kind.Other, complement([[DOT, SLASH]])],
];

// ---------------------------------------------------------------------------------------------
// Reading picomatch's regex (no flag u; read here by code points) into a small tree.

/** Lookaheads and anchors, each a check on what follows the position where it stands. */
type Check =
  | 'seg' // (?!\.{1,2}(?:\/|$)): the segment starting here is not `.` or `..`
  | 'seg0' // (?!(?:^|\/)\.{1,2}(?:\/|$)): `seg` at the start of the input, and after a `/` next
  | 'tail' // (?!\.{0,1}(?:\/|$)): after a `.`, the segment it started is not `.` or `..`
  | 'char' // (?=.): a character follows
  | 'start' // ^
  | 'end'; // $

type PNode =
  | { readonly t: 'chars'; readonly set: CharSet } // one character of the set
  | { readonly t: 'star'; readonly set: CharSet } // any run of characters of the set
  | { readonly t: 'group'; readonly alts: readonly (readonly PNode[])[]; readonly optional: boolean }
  | { readonly t: 'check'; readonly check: Check }
  | { readonly t: 'globstar' }; // (?:(?:(?!(?:^|\/)\.{1,2}(?:\/|$)).)*?)

/** The fragments picomatch writes with `dot: true, windows: false`, read whole. */
const FRAGMENTS: readonly (readonly [string, PNode])[] = [
  ['(?:(?:(?!(?:^|\\/)\\.{1,2}(?:\\/|$)).)*?)', { t: 'globstar' }],
  ['(?!(?:^|\\/)\\.{1,2}(?:\\/|$))', { t: 'check', check: 'seg0' }],
  ['(?!\\.{1,2}(?:\\/|$))', { t: 'check', check: 'seg' }],
  ['(?!\\.{0,1}(?:\\/|$))', { t: 'check', check: 'tail' }],
  ['(?=.)', { t: 'check', check: 'char' }],
];

/** Something in picomatch's regex that the rewrite does not handle. */
class Unsupported extends Error {}

class PicomatchReader {
  private i = 0;
  private depth = 0;

  constructor(private readonly src: string) {}

  read(): PNode[] {
    const alts = this.alternatives();
    if (this.i < this.src.length) throw new Unsupported(`unexpected "${this.src[this.i]}" in picomatch's regex`);
    return alts.length === 1 ? alts[0]! : [{ t: 'group', alts, optional: false }];
  }

  private alternatives(): PNode[][] {
    const alts: PNode[][] = [this.sequence()];
    while (this.src[this.i] === '|') {
      this.i++;
      alts.push(this.sequence());
    }
    return alts;
  }

  private sequence(): PNode[] {
    const { src } = this;
    const items: PNode[] = [];
    while (this.i < src.length && src[this.i] !== '|' && src[this.i] !== ')') items.push(this.quantified());
    return items;
  }

  private quantified(): PNode {
    const atom = this.atom();
    const q = this.src[this.i];
    if (q === '?') {
      this.i++;
      if (this.src[this.i] === '?') this.i++;
      if (atom.t === 'check' || atom.t === 'globstar') throw new Unsupported('a quantified lookahead');
      return { t: 'group', alts: [[atom]], optional: true };
    }
    if (q === '*' && atom.t === 'chars') {
      this.i++;
      if (this.src[this.i] === '?') this.i++;
      return { t: 'star', set: atom.set };
    }
    if (q === '*' || q === '+' || (q === '{' && this.atCountedQuantifier())) {
      throw new Unsupported(`the regex quantifier "${q}" after ${atom.t === 'chars' ? 'a character' : 'a group'}`);
    }
    return atom;
  }

  private atom(): PNode {
    const { src } = this;
    const c = src[this.i]!;
    switch (c) {
      case '(': {
        for (const [text, node] of FRAGMENTS) {
          if (src.startsWith(text, this.i)) {
            this.i += text.length;
            return node;
          }
        }
        if (src.startsWith('(?:', this.i)) this.i += 3;
        else if (src[this.i + 1] === '?') throw new Unsupported(`the regex group "${src.slice(this.i, this.i + 3)}"`);
        else this.i++;
        if (++this.depth > MAX_DEPTH) throw new Unsupported(`groups nested more than ${MAX_DEPTH} deep`);
        const alts = this.alternatives();
        if (src[this.i] !== ')') throw new Unsupported('an unclosed group');
        this.i++;
        this.depth--;
        return { t: 'group', alts, optional: false };
      }
      case '[':
        return { t: 'chars', set: this.bracketClass() };
      case '\\':
        return { t: 'chars', set: single(this.escape(false)) };
      case '^':
        this.i++;
        return { t: 'check', check: 'start' };
      case '$':
        this.i++;
        return { t: 'check', check: 'end' };
      case '.':
        // picomatch loses the escape of a literal `.` when it rebuilds its regex from its tokens
        // (in a glob with `***`, or a POSIX class): the dot would match any character.
        throw new Unsupported(
          'picomatch turns a "." of this glob into a regex "." (any character), as it does in globs with "***" or a POSIX class such as [[:alpha:]]; write "*" for "***", or a class such as [a-zA-Z]',
        );
      case '*':
      case '+':
      case '?':
        throw new Unsupported(`a bare "${c}" in picomatch's regex`);
      default: {
        if (c === '{' && this.atCountedQuantifier()) throw new Unsupported('a regex quantifier "{…}"');
        const cp = src.codePointAt(this.i)!;
        this.i += cp > 0xffff ? 2 : 1;
        return { t: 'chars', set: single(cp) };
      }
    }
  }

  /** At `{`: whether it starts `{n}`, `{n,}` or `{n,m}` (otherwise, without flag u, a literal). */
  private atCountedQuantifier(): boolean {
    COUNTED.lastIndex = this.i;
    return COUNTED.test(this.src);
  }

  /** At `[`: a class (V8 has checked its syntax, without flag u). */
  private bracketClass(): CharSet {
    const { src } = this;
    this.i++;
    const negated = src[this.i] === '^';
    if (negated) this.i++;
    const ranges: [number, number][] = [];
    while (src[this.i] !== ']') {
      if (this.i >= src.length) throw new Unsupported('an unclosed class');
      const lo = this.classAtom();
      if (src[this.i] === '-' && src[this.i + 1] !== ']' && this.i + 1 < src.length) {
        this.i++;
        const hi = this.classAtom();
        if (hi < lo) throw new Unsupported('a class range out of order');
        ranges.push([lo, hi]);
      } else {
        ranges.push([lo, lo]);
      }
    }
    this.i++;
    const set = charSet(ranges);
    return negated ? complement(set) : set;
  }

  private classAtom(): number {
    const { src } = this;
    if (src[this.i] === '\\') return this.escape(true);
    const cp = src.codePointAt(this.i)!;
    this.i += cp > 0xffff ? 2 : 1;
    return cp;
  }

  /** At `\`: an identity escape, or (in a class) the escapes of picomatch's POSIX classes. */
  private escape(inClass: boolean): number {
    const { src } = this;
    const c = src[this.i + 1];
    if (c === undefined) throw new Unsupported('a trailing backslash');
    if (inClass) {
      const control = CONTROL_ESCAPES[c];
      if (control !== undefined) {
        this.i += 2;
        return control;
      }
      HEX_ESCAPE.lastIndex = this.i + 1;
      const hex = HEX_ESCAPE.exec(src);
      if (hex) {
        this.i += 4;
        return parseInt(hex[1]!, 16);
      }
    }
    if (/[A-Za-z0-9]/.test(c)) throw new Unsupported(`the regex escape "\\${c}"`);
    const cp = src.codePointAt(this.i + 1)!;
    this.i += cp > 0xffff ? 3 : 2;
    return cp;
  }
}

const COUNTED = /\{\d+(?:,\d*)?\}/y;
const HEX_ESCAPE = /x([0-9A-Fa-f]{2})/y;
const CONTROL_ESCAPES: Readonly<Record<string, number>> = { t: 0x09, n: 0x0a, v: 0x0b, f: 0x0c, r: 0x0d };

// ---------------------------------------------------------------------------------------------
// The regex written out: no lookaround, so any regular-expression engine can run it.

type RNode =
  | { readonly t: 'set'; readonly set: CharSet } // one character
  | { readonly t: 'seq'; readonly items: readonly RNode[] }
  | { readonly t: 'alt'; readonly items: readonly RNode[] } // two or more
  | { readonly t: 'star'; readonly body: RNode };

const EMPTY: RNode = { t: 'seq', items: [] };
const NOTHING: RNode = { t: 'set', set: [] };

function rset(set: CharSet): RNode {
  return set.length === 0 ? NOTHING : { t: 'set', set };
}

function seq(...parts: RNode[]): RNode {
  const items: RNode[] = [];
  for (const part of parts) {
    if (part === NOTHING) return NOTHING;
    if (part.t === 'seq') items.push(...part.items);
    else items.push(part);
  }
  return items.length === 0 ? EMPTY : items.length === 1 ? items[0]! : { t: 'seq', items };
}

function alt(...parts: RNode[]): RNode {
  const items: RNode[] = [];
  const seen = new Set<string>();
  for (const part of parts.flatMap((p) => (p.t === 'alt' ? p.items : [p]))) {
    if (part === NOTHING) continue;
    const text = emit(part);
    if (seen.has(text)) continue;
    seen.add(text);
    items.push(part);
  }
  const factored = factor(factor(items, 'head'), 'tail');
  // Single characters in one class: `[a-z]` rather than `a|b|…`.
  const others: RNode[] = [];
  const chars: (readonly [number, number])[] = [];
  for (const item of factored) {
    if (item.t === 'set') chars.push(...item.set);
    else others.push(item);
  }
  if (chars.length > 0) others.unshift(rset(charSet(chars)));
  return others.length === 0 ? NOTHING : others.length === 1 ? others[0]! : { t: 'alt', items: others };
}

const isAlnum = (node: RNode): boolean => {
  if (node.t !== 'set' || node.set.length !== 1) return false;
  const [lo, hi] = node.set[0]!;
  return lo === hi && /^[0-9A-Za-z]$/.test(String.fromCharCode(lo));
};

/**
 * Alternatives that begin (or end) alike share that part once: `a(?:x|y)` for `ax|ay`. The
 * shared part is a whole unit, a single node or a whole run of letters and digits, so a run is
 * never split (placeholders stay in one piece).
 */
function factor(items: readonly RNode[], end: 'head' | 'tail'): RNode[] {
  const groups = new Map<string, { unit: RNode[]; rests: RNode[]; first: RNode }>();
  for (const item of items) {
    const parts = item.t === 'seq' ? item.items : [item];
    let n = parts.length === 0 ? 0 : 1;
    const at = (k: number) => parts[end === 'head' ? k : parts.length - 1 - k]!;
    if (n === 1 && isAlnum(at(0))) while (n < parts.length && isAlnum(at(n))) n++;
    const unit = end === 'head' ? parts.slice(0, n) : parts.slice(parts.length - n);
    const rest = seq(...(end === 'head' ? parts.slice(n) : parts.slice(0, parts.length - n)));
    const key = n === 0 ? '' : `u:${emit(seq(...unit))}`;
    const group = groups.get(key);
    if (group) group.rests.push(rest);
    else groups.set(key, { unit, rests: [rest], first: item });
  }
  return [...groups.entries()].map(([key, { unit, rests, first }]) => {
    if (key === '' || rests.length === 1) return first;
    return end === 'head' ? seq(...unit, alt(...rests)) : seq(alt(...rests), ...unit);
  });
}

function star(body: RNode): RNode {
  if (body === EMPTY) return EMPTY;
  // (?:x?)* is (?:x)*.
  if (body.t === 'alt' && body.items.includes(EMPTY)) return star(alt(...body.items.filter((item) => item !== EMPTY)));
  return { t: 'star', body };
}
const opt = (body: RNode): RNode => alt(EMPTY, body);

/** How tightly a written node binds: what it may stand next to without `(?:…)`. */
const enum Prec {
  Alt, // a|b
  Seq, // ab
  Quantified, // a*, a?: may be concatenated, not quantified again
  Atom, // a, [ab], (?:…)
}

const written = new WeakMap<RNode, readonly [string, Prec]>();

function emit(node: RNode): string {
  return write(node)[0];
}

function write(node: RNode): readonly [string, Prec] {
  let out = written.get(node);
  if (out === undefined) {
    out = writeNode(node);
    written.set(node, out);
  }
  return out;
}

function asAtom(node: RNode): string {
  const [s, p] = write(node);
  return p === Prec.Atom ? s : `(?:${s})`;
}

function writeNode(node: RNode): readonly [string, Prec] {
  switch (node.t) {
    case 'set':
      return [writeSet(node.set), Prec.Atom];
    case 'seq': {
      const text = node.items
        .map((item) => {
          const [s, p] = write(item);
          return p === Prec.Alt ? `(?:${s})` : s;
        })
        .join('');
      return [text, node.items.length === 0 ? Prec.Atom : Prec.Seq];
    }
    case 'alt': {
      const rest = node.items.filter((item) => item !== EMPTY);
      if (rest.length < node.items.length) {
        // `(?:a|b)?` rather than `(?:|a|b)`.
        return [`${asAtom(rest.length === 1 ? rest[0]! : { t: 'alt', items: rest })}?`, Prec.Quantified];
      }
      return [node.items.map((item) => write(item)[0]).join('|'), Prec.Alt];
    }
    case 'star':
      return [`${asAtom(node.body)}*`, Prec.Quantified];
  }
}

/** Characters written as themselves outside a class; syntax characters are escaped. */
function writeChar(cp: number): string {
  if (cp >= 0x20 && cp < 0x7f) {
    const c = String.fromCharCode(cp);
    return '^$\\.*+?()[]{}|/'.includes(c) ? `\\${c}` : c;
  }
  return `\\u{${cp.toString(16)}}`;
}

function writeClassChar(cp: number): string {
  if (cp >= 0x20 && cp < 0x7f) {
    const c = String.fromCharCode(cp);
    return '\\]-^['.includes(c) ? `\\${c}` : c;
  }
  return `\\u{${cp.toString(16)}}`;
}

function writeSet(set: CharSet): string {
  if (set.length === 0) return '[]';
  const first = set[0]!;
  if (set.length === 1 && first[0] === first[1]) return writeChar(first[0]);
  const items = (s: CharSet) =>
    s
      .map(([lo, hi]) =>
        lo === hi
          ? writeClassChar(lo)
          : hi === lo + 1
            ? writeClassChar(lo) + writeClassChar(hi)
            : `${writeClassChar(lo)}-${writeClassChar(hi)}`,
      )
      .join('');
  const negated = complement(set);
  if (negated.length === 0) return '[^]';
  return negated.length < set.length || (negated.length === set.length && first[0] === 0) ? `[^${items(negated)}]` : `[${items(set)}]`;
}

// ---------------------------------------------------------------------------------------------
// The rewrite. A state is the set of pending checks (each a small automaton over the next
// characters, see `advance`) and whether nothing has been matched yet (for `^`). Each node maps a
// state to the states it can end in, with the regex of what it consumes on the way.

/** A pending check, as the automaton state it has reached. */
type Pending =
  | 'seg' // the segment starting here must not be `.` or `..`
  | 'seg.' // … and it has begun with `.`
  | 'seg..' // … and with `..`
  | 'slash' // if a `/` comes next, `seg` after it
  | 'tail' // what follows is not empty, `/`, `.` or `./…`
  | 'tail.' // … and it has begun with `.`
  | 'char' // a character follows
  | 'end'; // nothing follows

/** The next state of a check after a character of the kind, or whether the check is settled. */
function advance(p: Pending, kind: Kind): Pending | 'pass' | 'fail' {
  switch (p) {
    case 'seg':
      return kind === Kind.Dot ? 'seg.' : 'pass';
    case 'seg.':
      return kind === Kind.Dot ? 'seg..' : kind === Kind.Slash ? 'fail' : 'pass';
    case 'seg..':
    case 'tail.':
      return kind === Kind.Slash ? 'fail' : 'pass';
    case 'slash':
      return kind === Kind.Slash ? 'seg' : 'pass';
    case 'tail':
      return kind === Kind.Dot ? 'tail.' : kind === Kind.Slash ? 'fail' : 'pass';
    case 'char':
      return 'pass';
    case 'end':
      return 'fail';
  }
}

/** Whether a check passes at the end of the input. */
const passesAtEnd = (p: Pending): boolean => p === 'seg' || p === 'slash' || p === 'end';

interface State {
  readonly pending: readonly Pending[]; // sorted, no duplicates
  readonly start: boolean;
}

/** What a node can consume from a state: the end states, each with the regex leading to it. */
type Outcomes = Map<string, { readonly state: State; readonly re: RNode }>;

const stateKey = (s: State): string => `${s.pending.join(',')}${s.start ? '^' : ''}`;

function makeState(pending: Iterable<Pending>, start: boolean): State {
  return { pending: [...new Set(pending)].sort(), start };
}

function addOutcome(out: Outcomes, state: State, re: RNode): void {
  if (re === NOTHING) return;
  const key = stateKey(state);
  const prev = out.get(key);
  out.set(key, { state, re: prev ? alt(prev.re, re) : re });
}

/** The state after one character of the kind, or null when a check fails. */
function consume(state: State, kind: Kind): State | null {
  const pending: Pending[] = [];
  for (const p of state.pending) {
    const next = advance(p, kind);
    if (next === 'fail') return null;
    if (next !== 'pass') pending.push(next);
  }
  return makeState(pending, false);
}

const NOT_DOT_SLASH = complement([[DOT, SLASH]]);
/** A non-empty segment other than `.` and `..`. */
const NAMED_SEGMENT = seq(
  alt(rset(NOT_DOT_SLASH), seq(rset(single(DOT)), rset(NOT_DOT_SLASH)), seq(rset(single(DOT)), rset(single(DOT)), rset(NOT_SLASH))),
  star(rset(NOT_SLASH)),
);
/** Any number of segments other than `.` and `..`, each followed by `/`. */
const NAMED_SEGMENTS_SLASH = star(seq(opt(NAMED_SEGMENT), rset(single(SLASH))));
const STAR_NODE: PNode = { t: 'star', set: NOT_SLASH };

class Rewriter {
  private readonly memo = new Map<PNode, Map<string, Outcomes>>();
  private readonly plainMemo = new Map<PNode, RNode>();
  private readonly checked = new Map<PNode, boolean>();

  run(nodes: readonly PNode[]): RNode {
    const out = this.sequence(nodes, makeState([], true));
    return alt(...[...out.values()].filter(({ state }) => state.pending.every(passesAtEnd)).map(({ re }) => re));
  }

  /** A sequence from one state. A prefix every path shares is written once. */
  private sequence(nodes: readonly PNode[], from: State): Outcomes {
    const shared: RNode[] = [];
    let current: Outcomes = new Map([[stateKey(from), { state: from, re: EMPTY }]]);
    for (const node of nodes) {
      current = this.then(current, node);
      if (current.size === 0) return current;
      if (current.size === 1) {
        const { state, re } = current.values().next().value!;
        shared.push(re);
        current = new Map([[stateKey(state), { state, re: EMPTY }]]);
      }
    }
    const prefix = seq(...shared);
    const out: Outcomes = new Map();
    for (const { state, re } of current.values()) addOutcome(out, state, seq(prefix, re));
    return out;
  }

  /**
   * Each path extended by the node. Paths that reach the same state with the same continuation
   * share it: `(?:p1|p2)c`, which keeps a run of literal text (a placeholder) in one piece.
   */
  private then(current: Outcomes, node: PNode): Outcomes {
    const byEnd = new Map<string, { state: State; groups: Map<string, { tail: RNode; heads: RNode[] }> }>();
    for (const { state, re: head } of current.values()) {
      for (const { state: end, re: tail } of this.from(node, state).values()) {
        const key = stateKey(end);
        let entry = byEnd.get(key);
        if (!entry) byEnd.set(key, (entry = { state: end, groups: new Map() }));
        const text = emit(tail);
        const group = entry.groups.get(text);
        if (group) group.heads.push(head);
        else entry.groups.set(text, { tail, heads: [head] });
      }
    }
    const out: Outcomes = new Map();
    for (const { state, groups } of byEnd.values()) {
      for (const { tail, heads } of groups.values()) addOutcome(out, state, seq(alt(...heads), tail));
    }
    // Paths that stay apart are written apart: a crafted glob could multiply them.
    for (const { re } of out.values()) {
      if (emit(re).length > MAX_SOURCE) throw new Unsupported(`it translates to more than ${MAX_SOURCE} characters of regex`);
    }
    return out;
  }

  /** One node from one state (memoized, so equal continuations are the same object). */
  private from(node: PNode, state: State): Outcomes {
    let byState = this.memo.get(node);
    if (!byState) this.memo.set(node, (byState = new Map()));
    const key = stateKey(state);
    let out = byState.get(key);
    if (!out) {
      out = this.compute(node, state);
      byState.set(key, out);
    }
    return out;
  }

  private compute(node: PNode, state: State): Outcomes {
    const out: Outcomes = new Map();
    const settled = state.pending.length === 0 && !state.start;
    if (settled && !this.hasChecks(node)) {
      addOutcome(out, state, this.plain(node));
      return out;
    }
    switch (node.t) {
      case 'chars':
        for (const [kind, set] of KINDS) {
          const part = intersect(node.set, set);
          const next = part.length > 0 ? consume(state, kind) : null;
          if (next) addOutcome(out, next, rset(part));
        }
        return out;
      case 'star':
        addOutcome(out, state, EMPTY);
        if (state.pending.length === 0) {
          // Only `start` to settle: one character, then the rest plainly.
          addOutcome(out, makeState([], false), seq(rset(node.set), star(rset(node.set))));
          return out;
        }
        for (const [kind, set] of KINDS) {
          const part = intersect(node.set, set);
          const next = part.length > 0 ? consume(state, kind) : null;
          if (next) for (const o of this.from(node, next).values()) addOutcome(out, o.state, seq(rset(part), o.re));
        }
        return out;
      case 'group':
        if (node.optional) addOutcome(out, state, EMPTY);
        for (const branch of node.alts) for (const o of this.sequence(branch, state).values()) addOutcome(out, o.state, o.re);
        return out;
      case 'check':
        return this.check(node.check, state);
      case 'globstar':
        return this.globstar(node, state);
    }
  }

  private check(check: Check, state: State): Outcomes {
    const out: Outcomes = new Map();
    const add = (...pending: Pending[]) => addOutcome(out, makeState([...state.pending, ...pending], state.start), EMPTY);
    switch (check) {
      case 'seg':
        add('seg');
        break;
      case 'seg0':
        if (state.start) add('seg', 'slash');
        else add('slash');
        break;
      case 'tail':
        add('tail');
        break;
      case 'char':
        add('char');
        break;
      case 'end':
        add('end');
        break;
      case 'start':
        if (state.start) add();
        break;
    }
    return out;
  }

  /**
   * `**`: any characters, where each `/` it consumes must not be followed by the segment `.` or
   * `..`, nor the input start with one when it consumes anything there.
   */
  private globstar(node: PNode, state: State): Outcomes {
    const out: Outcomes = new Map();
    if (!state.start && state.pending.length === 0) {
      // [^/]* then nothing more, or [^/]*/ (S?/)* and a last segment checked by `seg`.
      addOutcome(out, state, star(rset(NOT_SLASH)));
      const head = seq(star(rset(NOT_SLASH)), rset(single(SLASH)), NAMED_SEGMENTS_SLASH);
      for (const o of this.from(STAR_NODE, makeState(['seg'], false)).values()) addOutcome(out, o.state, seq(head, o.re));
      return out;
    }
    if (!state.start && state.pending.length === 1 && state.pending[0] === 'seg') {
      // Every segment followed by a `/` is checked by `seg`, and so is the last one.
      for (const o of this.from(STAR_NODE, state).values()) addOutcome(out, o.state, seq(NAMED_SEGMENTS_SLASH, o.re));
      return out;
    }
    // Otherwise one character at a time until the state is one of the two above. A `/` leaves only
    // `seg` (or fails); any other character settles each check or moves it one step on (`seg` to
    // `seg.` to `seg..`), adding none: at most three steps.
    addOutcome(out, state, EMPTY);
    const checks = makeState([...state.pending, 'slash', ...(state.start ? (['seg'] as const) : [])], false);
    for (const [kind, set] of KINDS) {
      const next = consume(checks, kind);
      if (next) for (const o of this.from(node, next).values()) addOutcome(out, o.state, seq(rset(set), o.re));
    }
    return out;
  }

  private hasChecks(node: PNode): boolean {
    let result = this.checked.get(node);
    if (result === undefined) {
      result =
        node.t === 'check' ||
        node.t === 'globstar' ||
        (node.t === 'group' && node.alts.some((branch) => branch.some((n) => this.hasChecks(n))));
      this.checked.set(node, result);
    }
    return result;
  }

  /** A node without checks, written as it is. */
  private plain(node: PNode): RNode {
    let re = this.plainMemo.get(node);
    if (re === undefined) {
      switch (node.t) {
        case 'chars':
          re = rset(node.set);
          break;
        case 'star':
          re = star(rset(node.set));
          break;
        case 'group': {
          const branches = node.alts.map((branch) => seq(...branch.map((n) => this.plain(n))));
          re = node.optional ? opt(alt(...branches)) : alt(...branches);
          break;
        }
        default:
          throw new Error('unreachable: a check in plain()');
      }
      this.plainMemo.set(node, re);
    }
    return re;
  }
}
