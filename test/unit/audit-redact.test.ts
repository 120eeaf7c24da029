/**
 * Unit tests of the audit log's redaction (src/audit/redact.ts): which keys `keyMatcher` redacts,
 * and that `auditJsonFactory`'s pre-filter never skips a value holding a key the matcher would
 * redact, whatever characters the key is spelled with (Unicode case folding).
 */
import { describe, expect, test } from 'vitest';
import { auditJsonFactory, keyMatcher, REDACTED } from '../../src/audit/redact.js';
import { Redactor } from '../../src/secrets/redactor.js';

const DEFAULT_KEYS = ['password', 'token', 'secret', 'apiKey', 'authorization'];
const none = new Redactor([]);

/** What the audit log stores for `{ [key]: 'hunter2-value' }` under `redactKeys`. */
function stored(redactKeys: readonly string[], key: string): string {
  return auditJsonFactory(redactKeys, none, 10_000)({ [key]: 'hunter2-value' });
}

describe('keyMatcher', () => {
  test('matches the whole key or its end, ignoring case, "-" and "_"', () => {
    const m = keyMatcher(['token', 'api_key']);
    for (const key of ['token', 'TOKEN', 'access_token', 'X-Token', 'token_', 'apiKey', 'x-api-key', 'API__KEY', 'to--ken']) {
      expect(m(key), key).toBe(true);
    }
    for (const key of ['max_tokens', 'tokenizer', 'tok', 'apikeys', '']) expect(m(key), key).toBe(false);
    expect(keyMatcher([])('token')).toBe(false);
    expect(keyMatcher(['-_'])('anything')).toBe(false);
  });

  test('folds case the Unicode way: KELVIN SIGN is a "k", LONG S an "s"', () => {
    const m = keyMatcher(DEFAULT_KEYS);
    expect(m('api\u212Aey')).toBe(true);
    expect(m('\u017Fecret')).toBe(true);
    expect(m('pa\u017F\u017Fword')).toBe(true);
  });

  test('treats pattern characters in a key name as themselves', () => {
    const m = keyMatcher(['x.y', 'a+b']);
    expect(m('x.y')).toBe(true);
    expect(m('xzy')).toBe(false);
    expect(m('A+B')).toBe(true);
    expect(m('aab')).toBe(false);
  });
});

describe('auditJsonFactory', () => {
  test('stores a value under a matching key as [REDACTED], others as they are', () => {
    const record = auditJsonFactory(DEFAULT_KEYS, none, 10_000);
    expect(JSON.parse(record({ user: 'ann', password: 'hunter2-value', nested: [{ 'X-Api-Key': 'k' }] }))).toEqual({
      user: 'ann',
      password: REDACTED,
      nested: [{ 'X-Api-Key': REDACTED }],
    });
    const clean = { path: '/tmp/a', limit: 3 };
    expect(record(clean)).toBe(JSON.stringify(clean));
  });

  test('keys spelled with KELVIN SIGN or LONG S, or several "-"/"_" in a row, are redacted', () => {
    // The pre-filter once used the `i` flag without `u`, which does not fold these, and allowed
    // one "-"/"_" between letters where the matcher ignores any number: the value was stored.
    for (const key of ['api\u212Aey', '\u017Fecret', 'to\u212Aen', 'api__key', 'pass--word', 'a_p-i_k-e_y']) {
      expect(stored(DEFAULT_KEYS, key), key).not.toContain('hunter2-value');
      expect(JSON.parse(stored(DEFAULT_KEYS, key))).toEqual({ [key]: REDACTED });
    }
  });

  test('a key name with characters JSON escapes is still found by the pre-filter', () => {
    for (const name of ['my"key', 'back\\slash', 'tab\there']) {
      expect(JSON.parse(stored([name], `x-${name}`))).toEqual({ [`x-${name}`]: REDACTED });
    }
  });

  test('the pre-filter accepts every character the matcher folds to a redact-key letter', () => {
    // For each letter of the default keys: every code point that the matcher reads as that
    // letter (its folding) must make the pre-filter pass the value on to the matcher, or the
    // value would be stored. The old folding (toLowerCase) is checked too: the matcher must still
    // match every character it matched before.
    const letters = [...new Set(DEFAULT_KEYS.join('').toLowerCase())];
    const matchers = letters.map((l) => keyMatcher([l]));
    const folded = new Map<string, string[]>(letters.map((l) => [l, []]));
    const missed: string[] = [];
    for (let cp = 0; cp <= 0x10ffff; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) {
        cp = 0xdfff;
        continue;
      }
      const c = String.fromCodePoint(cp);
      const lower = c.toLowerCase();
      for (let i = 0; i < letters.length; i++) {
        if (matchers[i]!(c)) folded.get(letters[i]!)!.push(c);
        else if (lower === letters[i]) missed.push(`U+${cp.toString(16)}`);
      }
    }
    expect(missed).toEqual([]);
    for (const [letter, chars] of folded) {
      for (const c of chars) {
        const cp = `U+${c.codePointAt(0)!.toString(16).toUpperCase()}`;
        expect(JSON.parse(stored([letter], c)), `${cp} is "${letter}" to the matcher`).toEqual({ [c]: REDACTED });
        expect(JSON.parse(stored([letter], `x-${c}`)), cp).toEqual({ [`x-${c}`]: REDACTED });
      }
    }
    // The characters beyond ASCII that fold to these letters: only the two known ones.
    expect(folded.get('k')).toEqual(['K', 'k', '\u212A']);
    expect(folded.get('s')).toEqual(['S', 's', '\u017F']);
    for (const [letter, chars] of folded) {
      if (letter !== 'k' && letter !== 's') expect(chars).toEqual([letter.toUpperCase(), letter]);
    }
  });
});
