/**
 * `when` conditions of policy rules and the `${…}` templates inside them (design §4).
 *
 * Everything is compiled once, when the engine is built: paths are split, numeric array indexes
 * parsed, globs and regexes turned into RegExp objects. Evaluation on the hot path then only walks
 * the arguments and runs precompiled tests. The one exception is a glob or regex that contains a
 * template: its text depends on the caller, so it is compiled per distinct resolved text and kept in
 * a small bounded cache.
 *
 * Every failure is closed. A condition is true, false, or UNKNOWN when it cannot be evaluated: a
 * missing path, a `null`, a value of another type than the operator or operand is about (`"11"`
 * for `gt: 10`: a server may well read it as 11), a path operand that is not an absolute path, or a
 * template without a value for this caller. An `allow` rule needs its conditions true; a `deny` or
 * `forbid` rule applies unless they are false (engine.ts). Only `exists` is never unknown.
 *
 * Patterns run in linear time whatever the input (config/safe-regex.ts, config/glob.ts): an agent
 * chooses the strings they are matched against.
 */
import { compileGlob, globToRegexSource, type Matcher } from '../config/glob.js';
import { compileSafeRegex } from '../config/safe-regex.js';
import type { ConditionConfig, RuleConfig } from '../config/schema.js';
import type { Identity } from '../identity/identity.js';
import { normalizeAbsolutePath } from './uri.js';

/** Marks "no value here": a missing path, an `undefined`, or a template without a value. */
export const MISSING: unique symbol = Symbol('missing');
type Missing = typeof MISSING;

/** The value of a condition: true, false, or undefined when it cannot be evaluated (see above). */
export type Truth = boolean | undefined;

export type { Matcher } from '../config/glob.js';
export { compileGlob } from '../config/glob.js';

// ---------------------------------------------------------------------------------------------
// Paths

/** One step of a dotted path: the key for objects, and the array index when the key is one. */
export interface PathSegment {
  readonly key: string;
  /** Canonical non-negative integer form of `key`, or -1 (then arrays have no such element). */
  readonly index: number;
}

/** Splits `a.b.0` into segments; numeric keys also index arrays. */
export function compilePath(dotted: string): readonly PathSegment[] {
  return Object.freeze(
    dotted.split('.').map((key) => {
      const index = /^(0|[1-9][0-9]{0,14})$/.test(key) ? Number(key) : -1;
      return Object.freeze({ key, index });
    }),
  );
}

/**
 * Walks `root` along `path` through own properties only (never the prototype chain: `__proto__`
 * and `constructor` are missing unless they are own keys) and array elements by index. Returns
 * MISSING when any step is absent or the value found is `undefined`.
 */
export function lookupPath(root: unknown, path: readonly PathSegment[]): unknown {
  let current: unknown = root;
  for (const segment of path) {
    if (current === null || typeof current !== 'object') return MISSING;
    if (Array.isArray(current)) {
      // Only element indexes: `length` or named keys of an array are not data.
      if (segment.index < 0 || segment.index >= current.length || !Object.hasOwn(current, segment.index)) return MISSING;
      current = current[segment.index];
    } else {
      if (!Object.hasOwn(current, segment.key)) return MISSING;
      current = (current as Record<string, unknown>)[segment.key];
    }
  }
  return current === undefined ? MISSING : current;
}

/**
 * JSON equality: same type, same primitive value, arrays element by element, objects by the same
 * own keys. No coercion ("5" ≠ 5). Recursion is bounded by the depth of the smaller operand.
 */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  const aIsArray = Array.isArray(a);
  if (aIsArray !== Array.isArray(b)) return false;
  if (aIsArray) {
    const x = a as readonly unknown[];
    const y = b as readonly unknown[];
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (!deepEqual(x[i], y[i])) return false;
    return true;
  }
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  const keys = Object.keys(x);
  if (keys.length !== Object.keys(y).length) return false;
  for (const key of keys) {
    if (!Object.hasOwn(y, key) || !deepEqual(x[key], y[key])) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Templates

/** Reads one template reference from the caller; MISSING when it has no value. */
type Ref = (identity: Identity) => unknown;

const TEMPLATE = /\$\{([^{}]*)\}/g;
const CLAIMS_REF = /^claims\.[^.\s]+(\.[^.\s]+)*$/;

function compileRef(reference: string): Ref | null {
  switch (reference) {
    case 'consumer.id':
      return (identity) => identity.consumerId;
    case 'consumer.roles':
      return (identity) => identity.roles;
    case 'key.id':
      // JWT and anonymous callers have no key: a condition on it must fail, not match "null".
      return (identity) => identity.keyId ?? MISSING;
  }
  if (CLAIMS_REF.test(reference)) {
    const path = compilePath(reference.slice('claims.'.length));
    return (identity) => {
      const value = lookupPath(identity.claims, path);
      return value === null ? MISSING : value;
    };
  }
  // `${a,b}` (a glob brace after a literal "$") or `${2}` (a regex quantifier after "$") are not
  // references; `${consumer}` or `${claim.x}` are typos, refused rather than matched literally.
  const trimmed = reference.trim();
  if (/^[A-Za-z_]/.test(trimmed) && !trimmed.includes(',')) {
    throw new Error(`unknown template \${${reference}}: use \${consumer.id}, \${consumer.roles}, \${key.id} or \${claims.<path>}`);
  }
  return null;
}

/**
 * A string split at its templates: `literals[i]` comes before `refs[i]`, and `literals` has one
 * more entry than `refs`. No refs means a plain string.
 */
interface SplitTemplate {
  readonly literals: readonly string[];
  readonly refs: readonly Ref[];
}

function splitTemplate(text: string): SplitTemplate {
  const literals: string[] = [];
  const refs: Ref[] = [];
  let last = 0;
  for (const match of text.matchAll(TEMPLATE)) {
    const ref = compileRef(match[1]!);
    if (ref === null) continue; // not a reference: stays literal text
    literals.push(text.slice(last, match.index));
    refs.push(ref);
    last = match.index + match[0].length;
  }
  literals.push(text.slice(last));
  return { literals, refs };
}

/** A template value as text, or MISSING: lists and objects have no text form (fail closed). */
function asText(value: unknown): string | Missing {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return MISSING;
}

/**
 * Compiles a config value that may hold templates into a resolver. A string that is exactly one
 * template resolves to the raw value (`${consumer.roles}` is a list); templates inside longer text
 * are interpolated as text. Non-strings and template-free strings are constants.
 */
function compileValue(value: unknown): Ref {
  if (typeof value !== 'string') return () => value;
  const { literals, refs } = splitTemplate(value);
  if (refs.length === 0) return () => value;
  if (refs.length === 1 && literals[0] === '' && literals[1] === '') return refs[0]!;
  return (identity) => {
    let out = literals[0]!;
    for (let i = 0; i < refs.length; i++) {
      const text = asText(refs[i]!(identity));
      if (text === MISSING) return MISSING;
      out += text + literals[i + 1]!;
    }
    return out;
  };
}

function hasTemplate(value: unknown): boolean {
  return typeof value === 'string' && splitTemplate(value).refs.length > 0;
}

/** Escapes text for a RegExp (safe with and without the `u` flag; `-` only matters in classes). */
function escapeRegExp(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
}

/** Cache bound for patterns compiled per caller: claims are caller data, memory must not grow with them. */
const MAX_CACHED_PATTERNS = 256;

/**
 * A glob or regex whose text holds templates. Template values are inserted as literal text (escaped),
 * so a consumer id or claim can never inject pattern syntax. Compiled once per distinct resolved
 * source and cached.
 */
class TemplatedPattern {
  private readonly cache = new Map<string, Matcher>();

  /**
   * `parts` are regex source pieces between `slots`; `slots[i]` indexes into `refs`. `matchEmpty`
   * is false for globs (picomatch never matches an empty string), true for regexes.
   */
  constructor(
    private readonly parts: readonly string[],
    private readonly slots: readonly number[],
    private readonly refs: readonly Ref[],
    private readonly matchEmpty: boolean,
  ) {}

  /** The matcher for this caller, or MISSING when a template has no value. */
  resolve(identity: Identity): Matcher | Missing {
    const values: string[] = [];
    for (const ref of this.refs) {
      const text = asText(ref(identity));
      if (text === MISSING) return MISSING;
      values.push(escapeRegExp(text));
    }
    let source = this.parts[0]!;
    for (let i = 0; i < this.slots.length; i++) source += values[this.slots[i]!]! + this.parts[i + 1]!;
    let matcher = this.cache.get(source);
    if (matcher === undefined) {
      try {
        const test = compileSafeRegex(source);
        matcher = this.matchEmpty ? test : (input) => input !== '' && test(input);
      } catch {
        // Only reachable with a template inside a character class forming a bad range: fail closed.
        matcher = () => false;
      }
      if (this.cache.size >= MAX_CACHED_PATTERNS) this.cache.clear();
      this.cache.set(source, matcher);
    }
    return matcher;
  }
}

/** A placeholder made of letters and digits only, which picomatch copies verbatim into its regex. */
function placeholderPrefix(text: string): string {
  let prefix = 'QzTpl';
  while (text.includes(prefix)) prefix += 'Q';
  return prefix;
}

/** Compiles a glob that may hold templates. */
function compileGlobOperand(glob: string): Ref {
  const { literals, refs } = splitTemplate(glob);
  if (refs.length === 0) {
    const matcher = compileGlob(glob);
    return () => matcher;
  }
  // Let picomatch translate the glob with placeholders in place of the templates, then put the
  // escaped values into its regex source: values stay literal whatever characters they hold.
  const prefix = placeholderPrefix(glob);
  let withPlaceholders = literals[0]!;
  for (let i = 0; i < refs.length; i++) withPlaceholders += `${prefix}${i}Z${literals[i + 1]!}`;
  const source = globToRegexSource(withPlaceholders);
  const marker = new RegExp(`${prefix}(\\d+)Z`, 'g');
  const parts: string[] = [];
  const slots: number[] = [];
  let last = 0;
  for (const match of source.matchAll(marker)) {
    parts.push(source.slice(last, match.index));
    slots.push(Number(match[1]));
    last = match.index + match[0].length;
  }
  parts.push(source.slice(last));
  const pattern = new TemplatedPattern(parts, slots, refs, false);
  return (identity) => pattern.resolve(identity);
}

/** Compiles a regex (anchored to the whole value, JS syntax with flag `u`, run in linear time) that may hold templates. */
function compileRegexOperand(regex: string): Ref {
  const { literals, refs } = splitTemplate(regex);
  if (refs.length === 0) {
    const matcher: Matcher = compileSafeRegex(regex, { anchored: true });
    return () => matcher;
  }
  // Validate the fixed part now, so a broken pattern fails at startup and not on first use.
  compileSafeRegex(literals.join('x'), { anchored: true });
  const parts = literals.map((literal, i) => (i === 0 ? '^(?:' : '') + literal + (i === literals.length - 1 ? ')$' : ''));
  const pattern = new TemplatedPattern(
    parts,
    refs.map((_, i) => i),
    refs,
    true,
  );
  return (identity) => pattern.resolve(identity);
}

// ---------------------------------------------------------------------------------------------
// Operators

/**
 * One operator of a condition. `operand` resolves the configured value for the caller (MISSING
 * when a template has no value: the condition then cannot be evaluated for this caller); `holds`
 * tests the argument (MISSING for a missing path) against it: true, false, or undefined when the
 * argument is not something the operator can judge.
 */
interface Check {
  readonly operand: Ref;
  readonly holds: (value: unknown, operand: unknown) => Truth;
}

/** A value an operator other than `exists` can test: present and not null. */
function hasValue(value: unknown): boolean {
  return value !== MISSING && value !== null;
}

/** The JSON type of a value, to tell comparable values from ones a server might coerce. */
function jsonType(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
}

/** A finite number, or undefined: another type cannot be compared (a server may coerce "11" to 11). */
function compare(v: unknown, test: (n: number) => boolean): Truth {
  return typeof v === 'number' && Number.isFinite(v) ? test(v) : undefined;
}

/** Code points in `text` are at most `max`, counted without allocating. */
function codePointsAtMost(text: string, max: number): boolean {
  // A code point is one or two UTF-16 units: the unit count bounds it on both sides.
  if (text.length <= max) return true;
  if (text.length > 2 * max) return false;
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    if (++count > max) return false;
  }
  return true;
}

/**
 * `eq`: equal, not equal, or unknown for a missing or null value or one of another JSON type than
 * the operand (`eq: null` is a literal and compares any present value).
 */
function equals(v: unknown, x: unknown): Truth {
  if (v === MISSING) return undefined;
  if (x === null) return v === null;
  if (v === null || jsonType(v) !== jsonType(x)) return undefined;
  return deepEqual(v, x);
}

/**
 * `in`: whether the list holds the value. Unknown when the value is of a type the list is not
 * about: `types` when the operand declares them (`${consumer.roles}` is a list of strings, however
 * many it holds), else the types of its items (an empty list holds nothing: false).
 */
function memberOf(v: unknown, list: unknown, types: ReadonlySet<string> | null): Truth {
  if (!hasValue(v)) return undefined;
  const items = list as readonly unknown[];
  const type = jsonType(v);
  if (types ? !types.has(type) : items.length > 0 && !items.some((item) => jsonType(item) === type)) return undefined;
  for (const item of items) if (deepEqual(item, v)) return true;
  return false;
}

/** The item types an `in`/`notIn` operand declares, when its items are not known at config time. */
function declaredTypes(list: readonly unknown[] | string): ReadonlySet<string> | null {
  return typeof list === 'string' && list.trim() === '${consumer.roles}' ? STRINGS : null;
}
const STRINGS: ReadonlySet<string> = new Set(['string']);

const not = (t: Truth): Truth => (t === undefined ? undefined : !t);

/** Resolves `in`/`notIn`: a list (items may be templates) or a string that is exactly one template. */
function compileListOperand(list: readonly unknown[] | string): Ref {
  if (typeof list === 'string') {
    const { literals, refs } = splitTemplate(list);
    if (refs.length !== 1 || literals[0] !== '' || literals[1] !== '') {
      throw new Error(`give a list, or a single template that resolves to one (such as "\${consumer.roles}")`);
    }
    const ref = refs[0]!;
    return (identity) => {
      const value = ref(identity);
      return Array.isArray(value) ? value : MISSING;
    };
  }
  if (!list.some(hasTemplate)) return () => list;
  const items = list.map(compileValue);
  return (identity) => {
    const out: unknown[] = [];
    for (const item of items) {
      const value = item(identity);
      if (value === MISSING) return MISSING;
      out.push(value);
    }
    return out;
  };
}

function compileChecks(condition: ConditionConfig): Check[] {
  const checks: Check[] = [];
  const add = (operand: Ref, holds: Check['holds']) => checks.push({ operand, holds });
  const c = condition;
  /** Compiles one operand, prefixing any error with the operator's name. */
  const operandOf = (op: string, compile: () => Ref): Ref => {
    try {
      return compile();
    } catch (err) {
      throw new Error(`${op}: ${(err as Error).message}`, { cause: err });
    }
  };

  // Cheap type tests first: they reject most wrong arguments before any deep comparison.
  if (c.exists !== undefined) {
    const want = c.exists;
    add(
      () => want,
      (value) => hasValue(value) === want,
    );
  }
  const lt = c.lt;
  if (lt !== undefined)
    add(
      () => lt,
      (v) => compare(v, (n) => n < lt),
    );
  const lte = c.lte;
  if (lte !== undefined)
    add(
      () => lte,
      (v) => compare(v, (n) => n <= lte),
    );
  const gt = c.gt;
  if (gt !== undefined)
    add(
      () => gt,
      (v) => compare(v, (n) => n > gt),
    );
  const gte = c.gte;
  if (gte !== undefined)
    add(
      () => gte,
      (v) => compare(v, (n) => n >= gte),
    );
  const maxLength = c.maxLength;
  if (maxLength !== undefined) {
    add(
      () => maxLength,
      (v) => (typeof v === 'string' ? codePointsAtMost(v, maxLength) : Array.isArray(v) ? v.length <= maxLength : undefined),
    );
  }
  // `eq: null` is a literal operand; template refs never yield null, they yield MISSING, so a null
  // claim makes the condition unknown instead of comparing.
  const eq = c.eq;
  if (eq !== undefined)
    add(
      operandOf('eq', () => compileValue(eq)),
      equals,
    );
  const ne = c.ne;
  if (ne !== undefined)
    add(
      operandOf('ne', () => compileValue(ne)),
      (v, x) => not(equals(v, x)),
    );
  const inList = c.in;
  if (inList !== undefined) {
    const types = declaredTypes(inList);
    add(
      operandOf('in', () => compileListOperand(inList)),
      (v, list) => memberOf(v, list, types),
    );
  }
  const notIn = c.notIn;
  if (notIn !== undefined) {
    const types = declaredTypes(notIn);
    add(
      operandOf('notIn', () => compileListOperand(notIn)),
      (v, list) => not(memberOf(v, list, types)),
    );
  }
  const glob = c.glob;
  if (glob !== undefined) {
    add(
      operandOf('glob', () => globOperand(glob)),
      (v, m) => (typeof v === 'string' ? (m as Matcher)(v) : undefined),
    );
  }
  const pathGlob = c.path;
  if (pathGlob !== undefined) {
    // The glob sees the path the server will open: `a/../b` is `b`. A value that is not an
    // absolute path (relative, with a backslash or NUL, not a string) cannot be judged, nor one
    // holding a percent-encoding (`%2e%2e`), which a server might decode.
    add(
      operandOf('path', () => globOperand(pathGlob)),
      (v, m) => {
        const path = typeof v === 'string' && !PERCENT_ENCODED.test(v) ? normalizeAbsolutePath(v) : null;
        return path === null ? undefined : (m as Matcher)(path);
      },
    );
  }
  const regex = c.regex;
  if (regex !== undefined) {
    const operand = operandOf('regex', () => {
      try {
        return compileRegexOperand(regex);
      } catch (err) {
        throw new Error(`invalid regular expression ${JSON.stringify(regex)}: ${(err as Error).message}`, { cause: err });
      }
    });
    add(operand, (v, m) => (typeof v === 'string' ? (m as Matcher)(v) : undefined));
  }
  return checks;
}

const PERCENT_ENCODED = /%[0-9A-Fa-f]{2}/;

function globOperand(glob: string): Ref {
  try {
    return compileGlobOperand(glob);
  } catch (err) {
    throw new Error(`invalid glob ${JSON.stringify(glob)}: ${(err as Error).message}`, { cause: err });
  }
}

// ---------------------------------------------------------------------------------------------
// `when`

interface CompiledCondition {
  readonly path: readonly PathSegment[];
  readonly checks: readonly Check[];
}

/** The compiled `when` of one rule: every condition must hold, and every operator within one. */
export class CompiledWhen {
  private constructor(private readonly conditions: readonly CompiledCondition[]) {}

  /** Compiles a validated `when`; throws an Error naming the condition (`when["args.x"].regex: …`). */
  static compile(when: NonNullable<RuleConfig['when']>): CompiledWhen {
    const conditions: CompiledCondition[] = [];
    for (const [key, condition] of Object.entries(when)) {
      try {
        // The schema guarantees `args.` and non-empty segments.
        conditions.push({ path: compilePath(key.slice('args.'.length)), checks: compileChecks(condition) });
      } catch (err) {
        throw new Error(`when[${JSON.stringify(key)}].${(err as Error).message}`, { cause: err });
      }
    }
    return new CompiledWhen(conditions);
  }

  /**
   * Whether the conditions hold for these arguments and this caller: true when every one does,
   * false when one does not, otherwise undefined (one or more cannot be evaluated).
   */
  test(args: Readonly<Record<string, unknown>> | undefined, identity: Identity): Truth {
    let truth: Truth = true;
    for (const condition of this.conditions) {
      const value = lookupPath(args, condition.path);
      for (const check of condition.checks) {
        const operand = check.operand(identity);
        const holds = operand === MISSING ? undefined : check.holds(value, operand);
        if (holds === false) return false;
        if (holds === undefined) truth = undefined;
      }
    }
    return truth;
  }

  /**
   * Without arguments: false when the conditions cannot be true for any argument (a template
   * without a value for this caller), true when they might be.
   */
  mayHold(identity: Identity): boolean {
    for (const condition of this.conditions) {
      for (const check of condition.checks) if (check.operand(identity) === MISSING) return false;
    }
    return true;
  }
}
