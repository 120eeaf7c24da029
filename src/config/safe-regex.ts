/**
 * Regular expressions the gateway does not write itself (a child's JSON Schema `pattern`, a child's
 * resource template, a `regex` condition in gateway.yaml) run on re2js, a port of RE2: matching
 * takes time linear in the input whatever the pattern, so a hostile pattern cannot stall the event
 * loop with catastrophic backtracking (ReDoS).
 *
 * The dialect is ECMAScript with flag `u`. A pattern is first parsed by V8 (`new RegExp(source,
 * 'u')` parses and never runs it), so what is a syntax error in JS is one here too, with V8's
 * message; it is then translated token by token into RE2 syntax with the JS meanings (`.`, `\s`,
 * `[]`, `[^]`, `\u{…}`, `\p{…}` and escapes are spelt or mean something else in RE2) and compiled
 * once.
 *
 * Where the answers differ from JS RegExp with flag `u`:
 * - Refused (SafeRegexError): lookahead, lookbehind and backreferences, which need backtracking;
 *   repetition counts above 1000, or nested ones whose product RE2 finds too large; repetitions
 *   nested more than 1000 deep; Unicode properties RE2 lacks: `Script_Extensions`, four-letter
 *   script codes (`Script=Grek`: write `Script=Greek`), binary properties other than Any, ASCII,
 *   Assigned, Alphabetic, Lowercase, Uppercase, White_Space, Math, Dash, Hex_Digit,
 *   ASCII_Hex_Digit, Quotation_Mark, Terminal_Punctuation and the Emoji ones; `\P{…}` with
 *   ignoreCase (JS matches a character when any of its case variants lies outside the property,
 *   RE2 only when all do; `[^\p{…}]` agrees).
 * - Unicode data is re2js's (Unicode 17), not V8's ICU: `\p{…}` and case folding can differ on
 *   characters assigned in recent Unicode versions.
 * - With ignoreCase, `\b` and `\B` see only ASCII word characters; JS with flags `iu` also counts
 *   U+017F (ſ) and U+212A (Kelvin sign) as word characters there (`\w` itself agrees).
 * - V8 also tries `\B` between the two halves of a surrogate pair (`/\B/u.test('😀')` is true);
 *   here positions are between code points only, as ECMA-262 says.
 * - Only a boolean test: no captures, no `lastIndex`, no flags other than `i` and `u`.
 */
import type { CodeOptions } from 'ajv';
import { RE2JS } from 're2js';

/** A compiled regular expression: does `input` match? Linear in `input.length`. */
export type SafeRegexTest = (input: string) => boolean;

/** How compileSafeRegex reads a pattern. */
export interface SafeRegexOptions {
  /** The whole input must match, as with `^(?:source)$`; otherwise a search, as RegExp#test. */
  readonly anchored?: boolean;
  /** Case-insensitive (JS flag `i`: Unicode simple case folding). */
  readonly ignoreCase?: boolean;
}

/**
 * Why a pattern was refused: `syntax`, not a valid JS regular expression with flag `u`;
 * `not-linear`, it uses lookaround or backreferences; `unsupported`, valid JS that RE2 cannot run
 * (a repetition or nesting too large, an unknown Unicode property).
 */
export type SafeRegexErrorKind = 'syntax' | 'not-linear' | 'unsupported';

/** Thrown by compileSafeRegex; `kind` is stable, the message is for a person. */
export class SafeRegexError extends Error {
  constructor(
    readonly kind: SafeRegexErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'SafeRegexError';
  }
}

/** Compiles a JS (flag `u`) pattern into a linear-time test; throws SafeRegexError when it cannot. */
export function compileSafeRegex(source: string, options: SafeRegexOptions = {}): SafeRegexTest {
  const ignoreCase = options.ignoreCase === true;
  const shown = JSON.stringify(source.length > 200 ? `${source.slice(0, 200)}…` : source);
  try {
    new RegExp(source, ignoreCase ? 'iu' : 'u');
  } catch (err) {
    throw new SafeRegexError('syntax', `invalid regular expression ${shown}: ${(err as Error).message}`);
  }
  const translated = new Translator(source, shown, ignoreCase).run();
  let re: RE2JS;
  try {
    re = RE2JS.compile(translated, ignoreCase ? RE2JS.CASE_INSENSITIVE : 0);
  } catch (err) {
    throw new SafeRegexError(
      'unsupported',
      `regular expression ${shown} is too large or complex for the gateway's linear-time regex engine (${(err as Error).message})`,
    );
  }
  // test/testExact ask for no capture groups, which keeps re2js on its DFA fast path.
  return options.anchored === true ? (input) => re.testExact(input) : (input) => re.test(input);
}

type RegExpEngine = NonNullable<CodeOptions['regExp']>;

/**
 * An ajv RegExpEngine (`new Ajv({ code: { regExp: ajvRegExpEngine } })`) that runs JSON Schema
 * `pattern` and `patternProperties` on compileSafeRegex: ECMA-262 search semantics, unanchored.
 * ajv passes flag `u` (or `''` with `unicodeRegExp: false`, read here as `u` too).
 */
export const ajvRegExpEngine: RegExpEngine = Object.assign(
  function safeRegExp(pattern: string, flags: string) {
    if (!/^[iu]*$/.test(flags)) throw new SafeRegexError('unsupported', `regular expression flags "${flags}" are not supported`);
    const test = compileSafeRegex(pattern, { ignoreCase: flags.includes('i') });
    // ajv keys its per-schema cache of patterns by toString(): it must differ between patterns.
    const key = `/${pattern}/${flags}`;
    return { test, toString: () => key };
  },
  // Read only by ajv's standalone code generation, which the gateway does not use.
  { code: 'require("mcp-gateway/dist/config/safe-regex.js").ajvRegExpEngine' },
);

// ---------------------------------------------------------------------------------------------
// JS (flag u) → RE2 translation. The source is already known to be valid JS, so the scan only
// has to recognise tokens, not reject malformed ones. One pass, no recursion: linear in the source.

type Range = readonly [number, number];

const MAX_CODE_POINT = 0x10ffff;
/** JS `\s`: WhiteSpace and LineTerminator. RE2's `\s` is only [\t\n\f\r ]. */
const JS_SPACE: readonly Range[] = [
  [0x09, 0x0d],
  [0x20, 0x20],
  [0xa0, 0xa0],
  [0x1680, 0x1680],
  [0x2000, 0x200a],
  [0x2028, 0x2029],
  [0x202f, 0x202f],
  [0x205f, 0x205f],
  [0x3000, 0x3000],
  [0xfeff, 0xfeff],
];
/** What JS `.` does not match without flag `s`. RE2's `.` only leaves out \n. */
const JS_LINE_TERMINATORS: readonly Range[] = [
  [0x0a, 0x0a],
  [0x0d, 0x0d],
  [0x2028, 0x2029],
];

function complement(ranges: readonly Range[]): Range[] {
  const out: Range[] = [];
  let next = 0;
  for (const [lo, hi] of ranges) {
    if (lo > next) out.push([next, lo - 1]);
    next = hi + 1;
  }
  if (next <= MAX_CODE_POINT) out.push([next, MAX_CODE_POINT]);
  return out;
}

const hex = (cp: number): string => `\\x{${cp.toString(16)}}`;
/** A code point as an RE2 literal: ASCII letters and digits as they are, the rest as \x{…}. */
const literal = (cp: number): string => (/^[0-9A-Za-z]$/.test(String.fromCodePoint(cp)) ? String.fromCodePoint(cp) : hex(cp));
const classItems = (ranges: readonly Range[]): string => ranges.map(([lo, hi]) => (lo === hi ? hex(lo) : `${hex(lo)}-${hex(hi)}`)).join('');

const SPACE_ITEMS = classItems(JS_SPACE);
const NON_SPACE_ITEMS = classItems(complement(JS_SPACE));
const DOT = `[^${classItems(JS_LINE_TERMINATORS)}]`;
const ANY = `[\\x{0}-\\x{10ffff}]`;
const NOTHING = `[^\\x{0}-\\x{10ffff}]`;

/** A class escape: how to write it inside a bracket class and on its own. */
interface SetEscape {
  readonly inClass: string;
  readonly alone: string;
}
type Escape = { readonly cp: number } | { readonly set: SetEscape } | { readonly assertion: string };

const SETS: Readonly<Record<string, SetEscape>> = {
  d: { inClass: '\\d', alone: '\\d' },
  D: { inClass: '\\D', alone: '\\D' },
  w: { inClass: '\\w', alone: '\\w' },
  W: { inClass: '\\W', alone: '\\W' },
  s: { inClass: SPACE_ITEMS, alone: `[${SPACE_ITEMS}]` },
  S: { inClass: NON_SPACE_ITEMS, alone: `[^${SPACE_ITEMS}]` },
};
const CONTROL_ESCAPES: Readonly<Record<string, number>> = { t: 0x09, n: 0x0a, v: 0x0b, f: 0x0c, r: 0x0d, '0': 0 };

class Translator {
  private i = 0;

  constructor(
    private readonly src: string,
    private readonly shown: string,
    private readonly ignoreCase: boolean,
  ) {}

  run(): string {
    const { src } = this;
    let out = '';
    while (this.i < src.length) {
      const c = src[this.i]!;
      switch (c) {
        case '\\': {
          const e = this.escape(false);
          out += 'cp' in e ? literal(e.cp) : 'set' in e ? e.set.alone : e.assertion;
          break;
        }
        case '[':
          out += this.bracketClass();
          break;
        case '(':
          out += this.group();
          break;
        case '.':
          out += DOT;
          this.i++;
          break;
        case '{': {
          // With flag u a `{` is always a quantifier ({n}, {n,}, {n,m}); RE2 writes it the same way.
          const end = src.indexOf('}', this.i);
          out += src.slice(this.i, end + 1);
          this.i = end + 1;
          break;
        }
        case ')':
        case '|':
        case '*':
        case '+':
        case '?':
        case '^':
        case '$':
          out += c;
          this.i++;
          break;
        default: {
          const cp = src.codePointAt(this.i)!;
          out += literal(cp);
          this.i += cp > 0xffff ? 2 : 1;
        }
      }
    }
    return out;
  }

  private notLinear(): never {
    throw new SafeRegexError(
      'not-linear',
      `regular expression ${this.shown} uses lookaround or backreferences, which the gateway's linear-time regex engine does not run`,
    );
  }

  /** At `(`: every group becomes non-capturing (only a boolean is asked). */
  private group(): string {
    const { src } = this;
    if (src[this.i + 1] !== '?') {
      this.i += 1;
      return '(?:';
    }
    const next = src[this.i + 2];
    if (next === ':') {
      this.i += 3;
      return '(?:';
    }
    if (next === '=' || next === '!') this.notLinear();
    // `(?<`: lookbehind, or a named group `(?<name>`.
    const after = src[this.i + 3];
    if (after === '=' || after === '!') this.notLinear();
    this.i = src.indexOf('>', this.i) + 1;
    return '(?:';
  }

  /** At `[`: a bracket class, written with RE2 items only. */
  private bracketClass(): string {
    const { src } = this;
    this.i++;
    const negated = src[this.i] === '^';
    if (negated) this.i++;
    if (src[this.i] === ']') {
      this.i++;
      return negated ? ANY : NOTHING; // JS `[^]` matches anything, `[]` nothing; RE2 reads `[]…]`.
    }
    let items = '';
    while (src[this.i] !== ']') {
      const first = this.classAtom();
      if (src[this.i] === '-' && src[this.i + 1] !== ']' && 'cp' in first) {
        this.i++;
        const last = this.classAtom();
        // With flag u both ends of a range are single characters (V8 checked).
        if ('cp' in last) {
          items += `${hex(first.cp)}-${hex(last.cp)}`;
          continue;
        }
      }
      items += 'cp' in first ? hex(first.cp) : 'set' in first ? first.set.inClass : '';
    }
    this.i++;
    return `[${negated ? '^' : ''}${items}]`;
  }

  private classAtom(): Escape {
    const { src } = this;
    if (src[this.i] === '\\') return this.escape(true);
    const cp = src.codePointAt(this.i)!;
    this.i += cp > 0xffff ? 2 : 1;
    return { cp };
  }

  /** At `\`. */
  private escape(inClass: boolean): Escape {
    const { src } = this;
    const c = src[this.i + 1]!;
    this.i += 2;
    const set = SETS[c];
    if (set) return { set };
    const control = CONTROL_ESCAPES[c];
    if (control !== undefined) return { cp: control };
    switch (c) {
      case 'b':
        return inClass ? { cp: 0x08 } : { assertion: '\\b' };
      case 'B':
        return { assertion: '\\B' };
      case 'c':
        this.i++;
        return { cp: src.charCodeAt(this.i - 1) % 32 };
      case 'x':
        this.i += 2;
        return { cp: parseInt(src.slice(this.i - 2, this.i), 16) };
      case 'u':
        return { cp: this.unicodeEscape() };
      case 'p':
      case 'P': {
        if (c === 'P' && this.ignoreCase) {
          // JS matches a character when any of its case variants lies outside the property, RE2
          // only when all of them do: refused rather than answered differently.
          throw new SafeRegexError(
            'unsupported',
            `regular expression ${this.shown} negates a Unicode property (\\P{…}) with ignoreCase, which the gateway's linear-time regex engine reads differently from JS`,
          );
        }
        const end = src.indexOf('}', this.i);
        const name = propertyName(src.slice(this.i + 1, end), this.shown);
        this.i = end + 1;
        const text = `\\${c}{${name}}`;
        return { set: { inClass: text, alone: text } };
      }
      case 'k':
        return this.notLinear();
      default:
        if (c >= '1' && c <= '9') return this.notLinear();
        // An identity escape of a syntax character, `/`, or `-` in a class.
        return { cp: c.codePointAt(0)! };
    }
  }

  /** After `\u`: `{hex}`, or four hex digits, joined with a following `\uDC00-\uDFFF` as with flag u. */
  private unicodeEscape(): number {
    const { src } = this;
    if (src[this.i] === '{') {
      const end = src.indexOf('}', this.i);
      const cp = parseInt(src.slice(this.i + 1, end), 16);
      this.i = end + 1;
      return cp;
    }
    const unit = parseInt(src.slice(this.i, this.i + 4), 16);
    this.i += 4;
    if (unit >= 0xd800 && unit <= 0xdbff && src.startsWith('\\u', this.i)) {
      const low = parseInt(src.slice(this.i + 2, this.i + 6), 16);
      if (low >= 0xdc00 && low <= 0xdfff && /^[0-9A-Fa-f]{4}$/.test(src.slice(this.i + 2, this.i + 6))) {
        this.i += 6;
        return (unit - 0xd800) * 0x400 + (low - 0xdc00) + 0x10000;
      }
    }
    return unit;
  }
}

// ---------------------------------------------------------------------------------------------
// Unicode property names: JS spells them as ECMA-262 (long or short aliases, `gc=`/`sc=` keys);
// RE2 knows general categories by short name, scripts by long name and a few binary properties.

const GENERAL_CATEGORIES: Readonly<Record<string, string>> = {
  Cased_Letter: 'LC',
  Close_Punctuation: 'Pe',
  Connector_Punctuation: 'Pc',
  Control: 'Cc',
  cntrl: 'Cc',
  Currency_Symbol: 'Sc',
  Dash_Punctuation: 'Pd',
  Decimal_Number: 'Nd',
  digit: 'Nd',
  Enclosing_Mark: 'Me',
  Final_Punctuation: 'Pf',
  Format: 'Cf',
  Initial_Punctuation: 'Pi',
  Letter: 'L',
  Letter_Number: 'Nl',
  Line_Separator: 'Zl',
  Lowercase_Letter: 'Ll',
  Mark: 'M',
  Combining_Mark: 'M',
  Math_Symbol: 'Sm',
  Modifier_Letter: 'Lm',
  Modifier_Symbol: 'Sk',
  Nonspacing_Mark: 'Mn',
  Number: 'N',
  Open_Punctuation: 'Ps',
  Other: 'C',
  Other_Letter: 'Lo',
  Other_Number: 'No',
  Other_Punctuation: 'Po',
  Other_Symbol: 'So',
  Paragraph_Separator: 'Zp',
  Private_Use: 'Co',
  Punctuation: 'P',
  punct: 'P',
  Separator: 'Z',
  Space_Separator: 'Zs',
  Spacing_Mark: 'Mc',
  Surrogate: 'Cs',
  Symbol: 'S',
  Titlecase_Letter: 'Lt',
  Unassigned: 'Cn',
  Uppercase_Letter: 'Lu',
};
const SHORT_CATEGORIES = new Set(Object.values(GENERAL_CATEGORIES));

const BINARY_PROPERTIES: Readonly<Record<string, string>> = {
  Any: 'Any',
  ASCII: 'Ascii',
  Assigned: 'Assigned',
  Alphabetic: 'Alphabetic',
  Alpha: 'Alphabetic',
  ASCII_Hex_Digit: 'ASCII_Hex_Digit',
  AHex: 'ASCII_Hex_Digit',
  Dash: 'Dash',
  Emoji: 'Emoji',
  Emoji_Component: 'Emoji_Component',
  EComp: 'Emoji_Component',
  Emoji_Modifier: 'Emoji_Modifier',
  EMod: 'Emoji_Modifier',
  Emoji_Modifier_Base: 'Emoji_Modifier_Base',
  EBase: 'Emoji_Modifier_Base',
  Emoji_Presentation: 'Emoji_Presentation',
  EPres: 'Emoji_Presentation',
  Extended_Pictographic: 'Extended_Pictographic',
  ExtPict: 'Extended_Pictographic',
  Hex_Digit: 'Hex_Digit',
  Hex: 'Hex_Digit',
  Lowercase: 'Lowercase',
  Lower: 'Lowercase',
  Math: 'Math',
  Quotation_Mark: 'Quotation_Mark',
  QMark: 'Quotation_Mark',
  Terminal_Punctuation: 'Terminal_Punctuation',
  Term: 'Terminal_Punctuation',
  Uppercase: 'Uppercase',
  Upper: 'Uppercase',
  White_Space: 'White_Space',
  space: 'White_Space',
  WSpace: 'White_Space',
};

/** RE2's name for the JS property `body` (what is between `\p{` and `}`), or SafeRegexError. */
function propertyName(body: string, shown: string): string {
  const eq = body.indexOf('=');
  const key = eq === -1 ? '' : body.slice(0, eq);
  const value = eq === -1 ? body : body.slice(eq + 1);
  let name: string | undefined;
  if (key === '' || key === 'General_Category' || key === 'gc') {
    name = SHORT_CATEGORIES.has(value) ? value : GENERAL_CATEGORIES[value];
    if (name === undefined && key === '') name = BINARY_PROPERTIES[value];
  } else if (key === 'Script' || key === 'sc') {
    // RE2 knows scripts by their long names (Greek, Old_Italic), which JS accepts too; a
    // four-letter code (Grek) is not an RE2 name and fails the check below.
    name = value;
  }
  // V8 has checked the name is valid for its key, so RE2's own table is the last word.
  if (name !== undefined && compiles(`\\p{${name}}`)) return name;
  throw new SafeRegexError(
    'unsupported',
    `regular expression ${shown} uses the Unicode property \\p{${body}}, which the gateway's linear-time regex engine does not know`,
  );
}

function compiles(re2Source: string): boolean {
  try {
    RE2JS.compile(re2Source);
    return true;
  } catch {
    return false;
  }
}
