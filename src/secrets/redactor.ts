/**
 * Keeps secret values from leaving the gateway (design §8): every value injected into a child's
 * `env` (6+ characters) and the gateway's own credentials are replaced by `[REDACTED:NAME]` in
 * results, errors, log lines, status and audit rows.
 *
 * A hostile child can hand a secret back encoded rather than as it is, so each secret is also
 * looked for as base64 / base64url (at each of the 3 byte alignments), as hex in any letter case,
 * and percent-encoded (any subset of its characters as %XX). Not caught: other encodings (base32,
 * \xNN or \uNNNN escapes, hex with separators, base64 broken by anything but a line break in
 * `lines()`), a secret transformed (reversed, XORed, compressed), or one leaked in fragments
 * across separate strings or messages.
 *
 * Cost: every pattern is compiled once, in the constructor. A string shorter than every secret is
 * passed at once; any other is first checked by at most three precompiled scans holding every form
 * of every secret (see `Scans`). Only when one finds something (an incident, not the common case)
 * is each secret looked for on its own, so that secrets overlapping each other are redacted whole.
 * No pattern has a nested quantifier: each alternative is a fixed sequence of characters and
 * classes (base64 adds one optional digit at each end and up to two "="), and where a group has
 * alternatives (percent-encoding) at most one can match at a position (they start with different
 * characters; for "%" itself, one is "%25" and the other a "%" not followed by two hex digits).
 * So at each position the engine follows at most two paths per alternative, none longer than the
 * secret's longest form: a scan is linear in the string's length (times the patterns' total
 * length at worst; in practice most positions fail on their first character).
 */

/** A value to redact, and the name that replaces it (`[REDACTED:NAME]`). */
export interface Secret {
  readonly name: string;
  readonly value: string;
}

/** Shorter values are too likely to occur by chance ("true", "1234") to be redacted. */
export const MIN_SECRET_LENGTH = 6;

/** The patterns for one way of writing text: plain (text, lines) or inside a JSON string (json). */
interface Scans {
  /**
   * Decide the common case (no secret) with three scans whatever the number of secrets: one for
   * the plain and base64 forms of all secrets, one for their hex forms, and one for their
   * percent-encoded forms, run only on strings holding a "%". Hex has its own scan because in one
   * alternation with the others it made the whole scan 2-3 times slower (the engine skips ahead
   * by the set of characters every alternative may start with; hex digits widen that set).
   */
  readonly plainOrBase64: RegExp;
  readonly hex: RegExp;
  readonly percent: RegExp;
  /** Per secret (in `secrets` order), global: every form but percent, with base64's edge digits. */
  readonly each: readonly RegExp[];
  /** Per secret, global: its percent-encoded form. */
  readonly eachPercent: readonly RegExp[];
}

/** A redacted stretch of a string: [start, end) belongs to the secret at index `secret`. */
interface Span {
  start: number;
  end: number;
  secret: number;
}

/** Replaces secret values, plain or encoded, in strings, JSON text, JSON-like values and line runs. */
export class Redactor {
  private readonly secrets: readonly Secret[];
  private readonly markers: readonly string[];
  private readonly textScans: Scans | null;
  /** Built on first use: only the audit log writes JSON text. */
  private jsonScans: Scans | null = null;
  /** No form of any secret is shorter: shorter strings (most keys) are passed without a scan. */
  private readonly minLength: number;
  /** See `maxSpan`. */
  private readonly maxLength: number;

  constructor(secrets: Iterable<Secret>) {
    const byValue = new Map<string, Secret>();
    for (const s of secrets) {
      if (s.value.length >= MIN_SECRET_LENGTH && !byValue.has(s.value)) byValue.set(s.value, s);
    }
    // Longest first: where two secrets overlap, the merged span takes the longer one's name.
    this.secrets = [...byValue.values()].sort((a, b) => b.value.length - a.value.length);
    this.markers = this.secrets.map(({ name }) => `[REDACTED:${name}]`);
    this.textScans = this.secrets.length > 0 ? compile(this.secrets, false) : null;
    // Every form is at least as long as the value (a UTF-8 byte per UTF-16 unit or more).
    this.minLength = Math.min(...this.secrets.map((s) => s.value.length));
    this.maxLength = Math.max(0, ...this.secrets.map((s) => maxFormLength(s.value)));
  }

  /** True when there is nothing to redact (the hot path then skips the walk). */
  get empty(): boolean {
    return this.secrets.length === 0;
  }

  /**
   * The most characters one secret can take up in any form `text` redacts (0 when empty): a
   * caller redacting a stream piece by piece keeps this much context on each side.
   */
  get maxSpan(): number {
    return this.maxLength;
  }

  /** A new Redactor that also redacts `more`. */
  with(more: Iterable<Secret>): Redactor {
    return new Redactor([...this.secrets, ...more]);
  }

  /** `s` with every secret, plain or encoded, replaced by `[REDACTED:NAME]`; `s` itself when none. */
  text(s: string): string {
    const scans = this.textScans;
    if (scans === null || s.length < this.minLength || !mayHold(scans, s)) return s;
    return this.apply(s, this.spans(s, scans));
  }

  /**
   * Redacts secrets in JSON text: a secret appears there as itself, or JSON-escaped when it holds
   * quotes, backslashes or control characters, or encoded as `text` finds it.
   */
  json(text: string): string {
    if (this.textScans === null || text.length < this.minLength) return text;
    const scans = (this.jsonScans ??= compile(this.secrets, true));
    if (!mayHold(scans, text)) return text;
    return this.apply(text, this.spans(text, scans));
  }

  /**
   * Redacts every string (values and keys) of a JSON-like value. Returns the same object when
   * nothing needed redacting, so the common case allocates nothing.
   */
  value<T>(v: T): T {
    return this.secrets.length === 0 ? v : (this.walk(v) as T);
  }

  /**
   * Redacts consecutive lines of one stream (oldest first) as one text, so that a secret written
   * across a line break ("\n", "\r\n" or a lone "\r") is found; whitespace-only lines between its
   * pieces are skipped. Each line holding a piece of a secret shows `[REDACTED:NAME]` in its
   * place. Returns a new array of the same length.
   */
  lines(lines: readonly string[]): string[] {
    const scans = this.textScans;
    if (scans === null) return [...lines];
    // The lines are cut at each "\r" into pieces, and the pieces joined with nothing between them.
    const pieces: { line: number; start: number; text: string }[] = [];
    let joined = '';
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (line.trim() === '') continue;
      for (const text of line.split('\r')) {
        pieces.push({ line: i, start: joined.length, text });
        joined += text;
      }
    }
    const out = [...lines];
    if (joined.length < this.minLength || !mayHold(scans, joined)) return out;
    const spans = this.spans(joined, scans);
    if (spans.length === 0) return out;
    const rebuilt = new Map<number, string[]>();
    let k = 0;
    for (const piece of pieces) {
      const end = piece.start + piece.text.length;
      while (k < spans.length && spans[k]!.end <= piece.start) k++;
      let text = '';
      let at = piece.start;
      for (let j = k; end > piece.start && j < spans.length && spans[j]!.start < end; j++) {
        const span = spans[j]!;
        text += joined.slice(at, Math.max(at, span.start)) + this.markers[span.secret];
        at = Math.min(end, span.end);
      }
      text += joined.slice(at, end);
      const parts = rebuilt.get(piece.line) ?? [];
      parts.push(text);
      rebuilt.set(piece.line, parts);
    }
    for (const [line, parts] of rebuilt) out[line] = parts.join('\r');
    return out;
  }

  /** Where the secrets are in `s`: overlapping finds merged, sorted by start. */
  private spans(s: string, scans: Scans): Span[] {
    const found: Span[] = [];
    const percent = s.includes('%');
    for (let i = 0; i < this.secrets.length; i++) {
      collect(scans.each[i]!, s, i, found);
      if (percent) collect(scans.eachPercent[i]!, s, i, found);
    }
    found.sort((a, b) => a.start - b.start || b.end - a.end);
    const merged: Span[] = [];
    for (const span of found) {
      const last = merged[merged.length - 1];
      if (last && span.start < last.end) {
        last.end = Math.max(last.end, span.end);
        last.secret = Math.min(last.secret, span.secret);
      } else merged.push({ ...span });
    }
    return merged;
  }

  private apply(s: string, spans: readonly Span[]): string {
    if (spans.length === 0) return s;
    let out = '';
    let at = 0;
    for (const span of spans) {
      out += s.slice(at, span.start) + this.markers[span.secret];
      at = span.end;
    }
    return out + s.slice(at);
  }

  private walk(v: unknown): unknown {
    if (typeof v === 'string') return this.text(v);
    if (v === null || typeof v !== 'object') return v;
    if (Array.isArray(v)) {
      let out: unknown[] | undefined;
      for (let i = 0; i < v.length; i++) {
        const r = this.walk(v[i]);
        if (r !== v[i]) (out ??= v.slice())[i] = r;
      }
      return out ?? v;
    }
    let out: Record<string, unknown> | undefined;
    for (const key of Object.keys(v)) {
      const item = (v as Record<string, unknown>)[key];
      const r = this.walk(item);
      const k = this.text(key);
      if (r !== item || k !== key) {
        out ??= { ...(v as Record<string, unknown>) };
        if (k !== key) delete out[key];
        out[k] = r;
      }
    }
    return out ?? v;
  }
}

function mayHold(scans: Scans, s: string): boolean {
  return scans.plainOrBase64.test(s) || scans.hex.test(s) || (s.includes('%') && scans.percent.test(s));
}

function collect(re: RegExp, s: string, secret: number, into: Span[]): void {
  re.lastIndex = 0;
  // Every form is at least MIN_SECRET_LENGTH long, so a match never has length 0 and this ends.
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    into.push({ start: m.index, end: m.index + m[0].length, secret });
  }
}

function compile(secrets: readonly Secret[], json: boolean): Scans {
  const cores: string[] = [];
  const hexes: string[] = [];
  const percents: string[] = [];
  const each: RegExp[] = [];
  const eachPercent: RegExp[] = [];
  for (const { value } of secrets) {
    const bytes = Buffer.from(value, 'utf8');
    const literal = escapeRegExp(value);
    const escaped = json ? escapeRegExp(JSON.stringify(value).slice(1, -1)) : literal;
    const plain = escaped === literal ? [literal] : [literal, escaped];
    const b64 = base64Forms(bytes);
    const hex = hexForm(bytes);
    const percent = percentForm(value, json);
    cores.push(...plain, ...b64.map((f) => f.core));
    hexes.push(hex);
    percents.push(percent);
    each.push(new RegExp([...plain, ...b64.map((f) => f.whole), hex].join('|'), 'g'));
    eachPercent.push(new RegExp(percent, 'g'));
  }
  return {
    plainOrBase64: new RegExp(cores.join('|')),
    hex: new RegExp(hexes.join('|')),
    percent: new RegExp(percents.join('|')),
    each,
    eachPercent,
  };
}

/** The longest text `text` can redact as one form of `value`. */
function maxFormLength(value: string): number {
  const bytes = Buffer.byteLength(value, 'utf8');
  // Percent-encoding every byte (3 characters each) is the longest; base64 is 4/3 per byte plus
  // an edge digit at each end and 2 "=".
  return Math.max(value.length, 3 * bytes, Math.ceil((4 * bytes) / 3) + 4);
}

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** The characters for a base64 digit: 62 and 63 are "+" "/" in base64 and "-" "_" in base64url. */
function digitChars(v: number): string {
  return v === 62 ? '+\\-' : v === 63 ? '/_' : BASE64[v]!;
}

/**
 * The secret in base64 or base64url at byte offset 0, 1 and 2 (mod 3) of the encoded data. The
 * `core` is the digits made of the secret's bits alone, the same in every encoding that holds the
 * secret at that alignment. `whole` adds, optionally, the digit at each end that holds some of the
 * secret's bits (as a class of the digits that agree on them) and "=" padding, so that those few
 * bits are not left beside the marker.
 */
function base64Forms(bytes: Uint8Array): { core: string; whole: string }[] {
  const forms: { core: string; whole: string }[] = [];
  for (let k = 0; k < 3; k++) {
    // The stream is k zero bytes, then the secret: digit i holds bits [6i, 6i + 6).
    const first = 8 * k;
    const end = 8 * (k + bytes.length);
    const bit = (b: number) => (b < first || b >= end ? 0 : (bytes[(b >> 3) - k]! >> (7 - (b & 7))) & 1);
    const digit = (i: number) => {
      let v = 0;
      for (let b = 6 * i; b < 6 * i + 6; b++) v = (v << 1) | bit(b);
      return v;
    };
    const from = Math.ceil(first / 6);
    const to = Math.floor(end / 6);
    let core = '';
    for (let i = from; i < to; i++) {
      const chars = digitChars(digit(i));
      core += chars.length > 1 ? `[${chars}]` : chars;
    }
    let whole = core;
    const lead = 6 * from - first; // low bits of digit `from - 1` that are the secret's
    if (lead > 0) whole = digitClass((1 << lead) - 1, digit(from - 1)) + '?' + whole;
    const trail = end - 6 * to; // high bits of digit `to` that are the secret's
    if (trail > 0) whole += digitClass(((1 << trail) - 1) << (6 - trail), digit(to)) + '?={0,2}';
    forms.push({ core, whole });
  }
  return forms;
}

/** A class of every base64 digit whose bits under `mask` are those of `v`. */
function digitClass(mask: number, v: number): string {
  let chars = '';
  for (let d = 0; d < 64; d++) if ((d & mask) === (v & mask)) chars += digitChars(d);
  return `[${chars}]`;
}

/** A hex digit in either case. */
function hexDigit(n: number): string {
  const c = n.toString(16);
  return n < 10 ? c : `[${c}${c.toUpperCase()}]`;
}

function hexForm(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) out += hexDigit(b >> 4) + hexDigit(b & 15);
  return out;
}

/**
 * Each character of the value either as itself (JSON-escaped in JSON text) or as its UTF-8 bytes
 * in %XX; a space also as "+". The alternatives of each group start with different characters
 * ("%" is matched as itself only when no two hex digits follow, as a decoder reads it), so the
 * engine never backtracks into an earlier group.
 */
function percentForm(value: string, json: boolean): string {
  let out = '';
  for (const c of value) {
    let encoded = '';
    for (const b of Buffer.from(c, 'utf8')) encoded += '%' + hexDigit(b >> 4) + hexDigit(b & 15);
    if (c === '%') out += '(?:%25|%(?![0-9A-Fa-f]{2}))';
    else if (c === ' ') out += '(?: |\\+|%20)';
    else out += `(?:${escapeRegExp(json ? JSON.stringify(c).slice(1, -1) : c)}|${encoded})`;
  }
  return out;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
