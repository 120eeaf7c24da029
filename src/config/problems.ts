/**
 * Config problems in the project's own words (design §2): every zod issue and YAML syntax error
 * becomes `<path>: <what is wrong and what to do>`, never a library's text ("Invalid input:
 * expected array, received string"). Messages written in the schema (`.regex(…, 'must be …')`,
 * refinements) are ours already and pass through unchanged: zod gives them precedence over the
 * error map below. No message quotes a config value: it may have come from a secret variable.
 */
import type { z } from 'zod';
import { isMap, isNode, isScalar, isSeq, type Document, type YAMLError } from 'yaml';
import { formatPath } from './interpolate.js';

/**
 * What kind of problem, for code and tests (never match the message text):
 * - `file`: missing, unreadable, or not a mapping at the top level
 * - `yaml`: YAML syntax (the path is `line L, column C`)
 * - `variable`: a `${VAR}` that is unset, or not a variable reference
 * - `required`: a value that must be given is missing
 * - `type`: a value of the wrong kind (a string where a list belongs)
 * - `choice`: not one of the values allowed (`start: later`)
 * - `unknown_key`: a key the mapping does not have (a typo, or a key from elsewhere)
 * - `range`: too small, too large, too short, too long, too few, too many
 * - `format`: not of the required form (a URL, an id, a bcrypt hash)
 * - `invalid`: anything else our checks refuse (a rule naming two targets, a bad glob, a policy)
 */
export type ConfigProblemKind =
  'file' | 'yaml' | 'variable' | 'required' | 'type' | 'choice' | 'unknown_key' | 'range' | 'format' | 'invalid';

/** One thing wrong with a config file. */
export interface ConfigProblem {
  /**
   * Where in the file: a path such as `servers[1].command` or `(top level)`, `line 3, column 5`
   * for a YAML syntax error, or undefined for the file as a whole (missing, not a mapping).
   */
  readonly path: string | undefined;
  /** What is wrong and, where it is not obvious, what to do. */
  readonly message: string;
  readonly kind: ConfigProblemKind;
  /** For `unknown_key` and `choice`: the key or value most likely meant, when one is close. */
  readonly suggestion?: string;
}

type Schema = z.core.$ZodType;
type Def = z.core.$ZodTypes['_zod']['def'];
const defOf = (schema: Schema): Def => (schema as z.core.$ZodTypes)._zod.def;

/**
 * The error map for `safeParse(…, { error: configErrorMap })`: zod's default messages, in our
 * words. It is consulted only for issues whose schema gives no message of its own.
 */
export const configErrorMap: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case 'invalid_type': {
      if (issue.expected === 'int' && typeof issue.input === 'number' && Number.isFinite(issue.input)) return 'must be a whole number';
      const expected = isSchema(issue.inst) ? describe(issue.inst) : describeExpected(issue.expected);
      if (issue.input === undefined) return `required (${expected})`;
      if (issue.input === null) return `is empty: give ${expected}`;
      const hint =
        expected === 'a string' && (typeof issue.input === 'number' || typeof issue.input === 'boolean') ? ' (put it in quotes)' : '';
      return `must be ${expected}, not ${kindOf(issue.input)}${hint}`;
    }
    case 'too_small':
      return tooSmall(issue.origin, Number(issue.minimum), issue.inclusive !== false);
    case 'too_big':
      return tooBig(issue.origin, Number(issue.maximum), issue.inclusive !== false);
    case 'invalid_value':
      return choiceMessage(issue.values, issue.input);
    case 'invalid_format':
      return invalidFormat(issue.format, issue.pattern);
    case 'not_multiple_of':
      return `must be a multiple of ${issue.divisor}`;
    case 'unrecognized_keys':
      // Replaced by one line per key, with a suggestion, in schemaProblems().
      return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
    case 'invalid_union': {
      const options = isSchema(issue.inst) ? unionOptions(issue.inst) : [];
      const forms = options.length > 0 ? [...new Set(options.map(describe))].join(' or ') : undefined;
      return forms ? `must be ${forms}, not ${kindOf(issue.input)}` : 'matches none of the allowed forms';
    }
    case 'invalid_key':
      return keyProblem(issue.issues.map((i) => i.message));
    case 'invalid_element':
      return `has an invalid item: ${issue.issues.map((i) => i.message).join('; ')}`;
    default:
      return 'is not valid';
  }
};

/**
 * A problem with the path of the value it is about, as data (and, for an unknown key, the key):
 * enough to find it in the YAML document and list problems in the order of the file.
 */
export interface LocatedProblem extends ConfigProblem {
  readonly at: readonly PropertyKey[];
  readonly key?: string;
}

/**
 * The problems of a failed parse of `schema` (made with `reportInput: true`, so that a missing
 * value can be told from a wrong one), one per path and one per unknown key.
 */
export function schemaProblems(issues: readonly z.core.$ZodIssue[], schema: Schema): LocatedProblem[] {
  const flat: (LocatedProblem & { settles: boolean })[] = [];
  const visit = (list: readonly z.core.$ZodIssue[], prefix: readonly PropertyKey[]) => {
    for (const issue of list) {
      const at = [...prefix, ...issue.path];
      const path = formatPath(at);
      if (issue.code === 'invalid_union' && issue.errors.length > 0) {
        // The branch the value's type fits (a list for a list, a string for a string) says what
        // is wrong inside it; when no branch fits, the union's own message names them all.
        const fitting = issue.errors.find((branch) => !branch.some((i) => i.code === 'invalid_type' && i.path.length === 0));
        if (fitting) {
          visit(fitting, at);
          continue;
        }
      }
      if (issue.code === 'unrecognized_keys') {
        const allowed = keysAt(schema, at);
        for (const key of issue.keys) {
          const suggestion = didYouMean(key, allowed);
          const hint =
            suggestion !== undefined ? `did you mean "${suggestion}"?` : allowed.length > 0 ? `allowed here: ${allowed.join(', ')}` : '';
          const message = `unknown key ${JSON.stringify(key)}${hint ? ` (${hint})` : ''}`;
          flat.push({ path, at, key, message, kind: 'unknown_key', ...(suggestion === undefined ? {} : { suggestion }), settles: true });
        }
        continue;
      }
      const kind = kindOfIssue(issue);
      const suggestion =
        issue.code === 'invalid_value' && typeof issue.input === 'string'
          ? didYouMean(
              issue.input,
              issue.values.map((v) => String(v)),
            )
          : undefined;
      // A missing, empty or mistyped value is the whole story at its path: what else zod says of
      // it there follows from it.
      const settles =
        kind === 'required' ||
        kind === 'type' ||
        (issue.code === 'too_small' && (issue.origin === 'string' || issue.origin === 'array') && Number(issue.minimum) <= 1);
      flat.push({ path, at, message: issue.message, kind, ...(suggestion === undefined ? {} : { suggestion }), settles });
    }
  };
  visit(issues, []);

  // Several issues at one path are one problem (the settling one alone, else every distinct
  // message, joined); unknown keys stay one a line.
  const problems: (LocatedProblem & { settles: boolean })[] = [];
  const atPath = new Map<string, number>();
  for (const p of flat) {
    const i = p.kind === 'unknown_key' ? undefined : atPath.get(p.path!);
    const entry = i === undefined ? undefined : problems[i]!;
    if (!entry) {
      if (p.kind !== 'unknown_key') atPath.set(p.path!, problems.length);
      problems.push(p);
    } else if (!entry.settles && !entry.message.split('; ').includes(p.message)) {
      problems[i!] = p.settles ? p : { ...entry, message: `${entry.message}; ${p.message}` };
    }
  }
  return problems.map(({ settles: _, ...p }) => p);
}

function kindOfIssue(issue: z.core.$ZodIssue): ConfigProblemKind {
  switch (issue.code) {
    case 'invalid_type':
      return issue.input === undefined ? 'required' : 'type';
    case 'invalid_value':
      return issue.input === undefined ? 'required' : 'choice';
    case 'invalid_union':
      return 'type';
    case 'too_small':
    case 'too_big':
    case 'not_multiple_of':
      return 'range';
    case 'invalid_format':
      return 'format';
    default:
      return 'invalid';
  }
}

/** `must be one of eager, lazy (did you mean "lazy"?)`, or `required (one of eager, lazy)`. */
function choiceMessage(values: readonly unknown[], input: unknown): string {
  const names = values.map((v) => String(v));
  const allowed = names.length === 1 ? names[0]! : `one of ${names.join(', ')}`;
  if (input === undefined) return `required (${allowed})`;
  const near = typeof input === 'string' ? didYouMean(input, names) : undefined;
  return `must be ${allowed}${near === undefined ? '' : ` (did you mean "${near}"?)`}`;
}

/**
 * The problems in the order their values appear in the file (a missing key at its mapping, an
 * unknown key at itself); problems at the same place keep their order.
 */
export function inFileOrder(problems: readonly LocatedProblem[], doc: Document): ConfigProblem[] {
  return problems
    .map((problem, i) => ({ problem, i, offset: offsetOf(doc, problem.at, problem.key) }))
    .sort((a, b) => a.offset - b.offset || a.i - b.i)
    .map(({ problem: { at: _at, key: _key, ...problem } }) => problem);
}

function offsetOf(doc: Document, at: readonly PropertyKey[], key: string | undefined): number {
  let node: unknown = doc.contents;
  let offset = rangeStart(node) ?? 0;
  for (const part of [...at, ...(key === undefined ? [] : [key])]) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === part);
      if (!pair) break;
      // An unknown key is found at the key; any other value at the value (or its key, if empty).
      offset = (part === key ? rangeStart(pair.key) : (rangeStart(pair.value) ?? rangeStart(pair.key))) ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof part === 'number') {
      node = node.items[part];
      offset = rangeStart(node) ?? offset;
    } else break;
  }
  return offset;
}

function rangeStart(node: unknown): number | undefined {
  return isNode(node) ? (node.range?.[0] ?? undefined) : undefined;
}

/** YAML syntax errors with their line and column, one per line of the file, in plain words. */
export function yamlProblems(errors: readonly YAMLError[], text: string): ConfigProblem[] {
  const seen = new Set<number>();
  const problems: ConfigProblem[] = [];
  for (const error of errors) {
    const pos = error.linePos?.[0];
    // One error per line: the ones after the first on a line are the parser losing its way.
    if (pos && seen.has(pos.line)) continue;
    if (pos) seen.add(pos.line);
    problems.push({
      path: pos ? `line ${pos.line}, column ${pos.col}` : undefined,
      message: `invalid YAML: ${yamlReason(error, text)}`,
      kind: 'yaml',
    });
  }
  return problems;
}

/** A value YAML could not turn into data (an alias to nothing, too many aliases). */
export function yamlValueProblem(err: Error): ConfigProblem {
  const message = err.message;
  if (/^Unresolved alias/.test(message)) {
    const name = /: (\S+)$/.exec(message)?.[1];
    return { path: undefined, kind: 'yaml', message: `invalid YAML: the alias *${name ?? '…'} has no anchor &${name ?? '…'} before it` };
  }
  if (/alias count/i.test(message)) {
    return { path: undefined, kind: 'yaml', message: 'invalid YAML: too many aliases (*name): a config may expand at most 100' };
  }
  return { path: undefined, kind: 'yaml', message: `invalid YAML: ${plainYamlMessage(message)}` };
}

/** The yaml library's messages we reword, by what they say (several codes share a message). */
const YAML_REASONS: readonly [RegExp, string][] = [
  [/^Flow sequence/i, 'a list opened with "[" is not closed with "]" (or its lines are not indented under its key)'],
  [/^Flow map/i, 'a mapping opened with "{" is not closed with "}" (or its lines are not indented under its key)'],
  [/^Missing closing "quote/, 'a "double-quoted" value is not closed; add the closing "'],
  [/^Missing closing 'quote/, "a 'single-quoted' value is not closed; add the closing '"],
  [/^Missing ,( or :)? between/, 'a "," is missing between two items of [ ] or { }'],
  [/^Missing space after :/, 'a space is missing after ":"'],
  [/^Unexpected empty item/, 'an empty item in [ ] or { } (two commas in a row?)'],
  [/^Sequence item without/, 'a list item without "- " in front of it'],
  [/^Implicit map keys need to be followed by map values/, 'a key without a value; write key: value'],
  [/^All mapping items must start at the same column/, 'the keys of one mapping do not start at the same column; check the indentation'],
  [/^All sequence items must start at the same column/, 'the items of one list do not start at the same column; check the indentation'],
  [/^Comments must be separated/, 'a "#" comment needs a space before it'],
  [/^Tags and anchors must be separated/, 'a tag (!tag) or anchor (&name) needs a space after it'],
  [/^Missing directives-end/, 'a "---" line is missing after the directives (lines that start with "%")'],
];

function yamlReason(error: YAMLError, text: string): string {
  const raw = error.message.split('\n')[0]!;
  for (const [pattern, reason] of YAML_REASONS) if (pattern.test(raw)) return reason;
  const first = plainYamlMessage(error.message);
  switch (error.code) {
    case 'DUPLICATE_KEY':
      return 'a key written twice in one mapping; keep one (a later value would silently replace the first)';
    case 'TAB_AS_INDENT':
      return 'a tab used for indentation; YAML indents with spaces only';
    case 'MULTIPLE_DOCS':
      return 'a second document (a "---" line after the first); a config is one document';
    case 'BAD_DQ_ESCAPE':
      return 'an unknown escape in a "double-quoted" string; write \\\\ for a backslash, or use \'single quotes\'';
    case 'BAD_SCALAR_START':
      return `a value cannot start with ${JSON.stringify(text[error.pos[0]] ?? '')}; put the value in quotes`;
    case 'BLOCK_AS_IMPLICIT_KEY':
      return 'a second ": " on one line; put a value that contains ": " in quotes, or move the nested mapping to its own lines';
    case 'MULTILINE_IMPLICIT_KEY':
      return 'a key that is not followed by ":" on its line; check the indentation and the ":" after each key';
    case 'BLOCK_IN_FLOW':
      return 'an indented list or mapping inside [ ] or { }; write it inside the brackets, or without them';
    case 'MULTIPLE_ANCHORS':
      return 'a value with two anchors (&name); keep one';
    case 'MULTIPLE_TAGS':
      return 'a value with two tags (!tag); keep one';
    case 'KEY_OVER_1024_CHARS':
      return 'a key longer than 1024 characters';
    case 'UNEXPECTED_TOKEN': {
      const char = text[error.pos[0]];
      const what = char && char.trim() ? `a stray ${JSON.stringify(char)}` : 'something out of place';
      return `${what} here; check the brackets, quotes and indentation around it`;
    }
    case 'BAD_INDENT':
      return 'bad indentation; indent nested keys and list items under their parent, with spaces';
    case 'MISSING_CHAR':
      return `something is missing here (${lowerFirst(first)})`;
    default:
      return lowerFirst(first);
  }
}

/** The first line of a yaml library message, without its position and its internal names. */
function plainYamlMessage(message: string): string {
  return message
    .split('\n')[0]!
    .replace(/ at line \d+, column \d+:?$/, '')
    .replace(/;? ?please use [\w.]+\(\)/i, '')
    .replace(/\bflow[- ]map(ping)?s?\b(-\w+)?/gi, '{ } mapping')
    .replace(/\bflow[- ]seq(uence)?\b(-\w+)?/gi, '[ ] list')
    .replace(/\bblock[- ]map\b(-\w+)?/gi, 'mapping')
    .replace(/\bblock[- ]seq\b(-\w+)?/gi, 'list')
    .trim();
}

// ---------------------------------------------------------------------------------------------
// Suggestions.

/**
 * The candidate closest to `word` (case-insensitive optimal-string-alignment distance: one edit
 * is an insertion, a deletion, a change or two letters swapped), when it is close enough to be
 * the likely intent: at most a third of the longer word's letters differ, or `word` begins it.
 */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    if (candidate === word) continue;
    const c = candidate.toLowerCase();
    const d = distance(w, c);
    const close = d <= Math.max(1, Math.floor(Math.max(w.length, c.length) / 3)) || (w.length >= 4 && c.startsWith(w));
    if (close && d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function distance(a: string, b: string): number {
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 1; j <= b.length; j++) rows[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = d;
    }
  }
  return rows[a.length]![b.length]!;
}

// ---------------------------------------------------------------------------------------------
// The schema, read: what a path allows, described in words.

/** A schema, not a check (an issue's `inst` may be either; checks have a `def.type` too). */
function isSchema(value: unknown): value is Schema {
  return typeof value === 'object' && value !== null && '~standard' in value && '_zod' in value;
}

/** The schema itself, past wrappers that do not change what is written (optional, default, preprocess). */
function unwrap(schema: Schema): Schema {
  const def = defOf(schema);
  switch (def.type) {
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'nonoptional':
    case 'readonly':
    case 'catch':
      return unwrap(def.innerType);
    case 'pipe':
      // z.preprocess(fn, s) is a pipe from a transform into s; s.transform(fn) a pipe the other way.
      return unwrap(defOf(def.out).type === 'transform' ? def.in : def.out);
    case 'lazy':
      return unwrap(def.getter());
    default:
      return schema;
  }
}

/** The keys an object accepts at `path` of `schema`, or none when `path` is not an object. */
export function keysAt(schema: Schema, path: readonly PropertyKey[]): string[] {
  let at: Schema | undefined = schema;
  for (const part of path) {
    if (!at) return [];
    at = childOf(unwrap(at), part);
  }
  if (!at) return [];
  const def = defOf(unwrap(at));
  return def.type === 'object' ? Object.keys(def.shape) : [];
}

function childOf(schema: Schema, part: PropertyKey): Schema | undefined {
  const def = defOf(schema);
  switch (def.type) {
    case 'object':
      return typeof part === 'string' ? def.shape[part] : undefined;
    case 'array':
      return def.element;
    case 'record':
      return def.valueType;
    case 'tuple':
      return typeof part === 'number' ? (def.items[part] ?? def.rest ?? undefined) : undefined;
    case 'union':
      for (const option of def.options) {
        const child = childOf(unwrap(option), part);
        if (child) return child;
      }
      return undefined;
    default:
      return undefined;
  }
}

function unionOptions(schema: Schema): Schema[] {
  const def = defOf(unwrap(schema));
  return def.type === 'union' ? [...def.options] : [];
}

/** "a list of strings", "a whole number", "one of eager, lazy": what a schema accepts. */
function describe(schema: Schema): string {
  return describeAs(schema, false);
}

function describeAs(schema: Schema, plural: boolean): string {
  const s = unwrap(schema);
  const def = defOf(s);
  const one = (singular: string, many: string) => (plural ? many : singular);
  switch (def.type) {
    case 'string': {
      const format = (s._zod.bag as { format?: unknown } | undefined)?.format;
      return format === 'url' ? one('a URL', 'URLs') : one('a string', 'strings');
    }
    case 'number': {
      const format = (s._zod.bag as { format?: unknown } | undefined)?.format;
      return typeof format === 'string' && /int/.test(format) ? one('a whole number', 'whole numbers') : one('a number', 'numbers');
    }
    case 'boolean':
      return one('true or false', 'true or false values');
    case 'date':
      return one('a date', 'dates');
    case 'array':
      return one(`a list of ${describeAs(def.element, true)}`, 'lists');
    case 'object':
      return one('a mapping (key: value)', 'mappings (key: value)');
    case 'record':
      return one('a mapping (key: value)', 'mappings (key: value)');
    case 'enum':
      return plural ? 'values' : `one of ${Object.values(def.entries).join(', ')}`;
    case 'literal':
      return plural ? 'values' : def.values.map((v) => String(v)).join(' or ');
    case 'union':
      return [...new Set(def.options.map((o) => describeAs(o, plural)))].join(' or ');
    default:
      return one('a value', 'values');
  }
}

function describeExpected(expected: string): string {
  const words: Record<string, string> = {
    string: 'a string',
    number: 'a number',
    int: 'a whole number',
    boolean: 'true or false',
    array: 'a list',
    object: 'a mapping (key: value)',
    record: 'a mapping (key: value)',
    date: 'a date',
  };
  return words[expected] ?? 'a different kind of value';
}

/** The kind of a YAML value as a user would name it: "a string", "a list", "a mapping". */
function kindOf(value: unknown): string {
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return 'a list';
  if (value instanceof Date) return 'a date';
  switch (typeof value) {
    case 'string':
      return 'a string';
    case 'number':
      return Number.isNaN(value) ? '.nan' : Number.isFinite(value) ? 'a number' : 'an infinite number';
    case 'bigint':
      return 'a number';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object':
      return 'a mapping';
    default:
      return `a ${typeof value}`;
  }
}

function tooSmall(origin: string, minimum: number, inclusive: boolean): string {
  switch (origin) {
    case 'string':
      return minimum <= 1 ? 'must not be empty' : `must be at least ${minimum} characters long`;
    case 'array':
    case 'set':
      return minimum <= 1 ? 'must list at least one item' : `must list at least ${minimum} items`;
    default:
      return inclusive ? `must be at least ${minimum}` : `must be greater than ${minimum}`;
  }
}

function tooBig(origin: string, maximum: number, inclusive: boolean): string {
  switch (origin) {
    case 'string':
      return `must be at most ${maximum} characters long`;
    case 'array':
    case 'set':
      return `must list at most ${maximum} item${maximum === 1 ? '' : 's'}`;
    default:
      return inclusive ? `must be at most ${maximum}` : `must be less than ${maximum}`;
  }
}

function invalidFormat(format: string, pattern: string | undefined): string {
  switch (format) {
    case 'url':
      return 'must be a URL such as https://example.com/path';
    case 'regex':
      return pattern ? `has the wrong form (it must match ${pattern})` : 'has the wrong form';
    case 'email':
      return 'must be an email address';
    case 'datetime':
      return 'must be an ISO 8601 date-time such as 2027-06-30T00:00:00Z';
    case 'date':
      return 'must be a date such as 2027-06-30';
    default:
      return `must be a valid ${format.replace(/_/g, ' ')}`;
  }
}

/** A record key that its key schema refused; "must …" reads on from "the key". */
function keyProblem(messages: readonly string[]): string {
  const text = [...new Set(messages)].join('; ');
  return /^must\b/.test(text) ? `the key ${text}` : `invalid key: ${text}`;
}

function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}
