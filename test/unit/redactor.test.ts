/**
 * Unit tests of the Redactor (design §8): secrets of 6+ characters become `[REDACTED:NAME]` in
 * text, JSON text and JSON-like values (keys too); the longest secret wins; untouched values are
 * returned as the same object.
 */
import { describe, expect, test } from 'vitest';
import { MIN_SECRET_LENGTH, Redactor } from '../../src/secrets/redactor.js';

describe('Redactor', () => {
  test('redacts values of 6 or more characters only', () => {
    expect(MIN_SECRET_LENGTH).toBe(6);
    const r = new Redactor([
      { name: 'SHORT', value: '12345' },
      { name: 'SIX', value: '123456' },
    ]);
    expect(r.text('a 12345 b')).toBe('a 12345 b');
    expect(r.text('a 123456 b 123456')).toBe('a [REDACTED:SIX] b [REDACTED:SIX]');
    expect(new Redactor([{ name: 'X', value: 'true' }]).empty).toBe(true);
    expect(r.empty).toBe(false);
  });

  test('the longest secret is replaced first, so one containing another is redacted whole', () => {
    const r = new Redactor([
      { name: 'INNER', value: 'abcdef' },
      { name: 'OUTER', value: 'xxabcdefyy' },
    ]);
    expect(r.text('[xxabcdefyy] [abcdef]')).toBe('[[REDACTED:OUTER]] [[REDACTED:INNER]]');
    // Same when given in the other order.
    const r2 = new Redactor([
      { name: 'OUTER', value: 'xxabcdefyy' },
      { name: 'INNER', value: 'abcdef' },
    ]);
    expect(r2.text('xxabcdefyy')).toBe('[REDACTED:OUTER]');
  });

  test('a value listed twice keeps its first name', () => {
    const r = new Redactor([
      { name: 'A', value: 'shared-secret' },
      { name: 'B', value: 'shared-secret' },
    ]);
    expect(r.text('shared-secret')).toBe('[REDACTED:A]');
  });

  test('redacts keys and values, deeply, in objects and arrays', () => {
    const r = new Redactor([{ name: 'TOKEN', value: 's3cr3t-value' }]);
    const input = {
      content: [{ type: 'text', text: 'token is s3cr3t-value!' }],
      nested: { deeper: ['ok', 's3cr3t-value'], n: 1, b: true, z: null },
      's3cr3t-value': 'as a key',
    };
    expect(r.value(input)).toEqual({
      content: [{ type: 'text', text: 'token is [REDACTED:TOKEN]!' }],
      nested: { deeper: ['ok', '[REDACTED:TOKEN]'], n: 1, b: true, z: null },
      '[REDACTED:TOKEN]': 'as a key',
    });
    // The input is not modified.
    expect(input.nested.deeper[1]).toBe('s3cr3t-value');
    expect(Object.keys(input)).toContain('s3cr3t-value');
  });

  test('returns the same object when nothing changes, and shares untouched branches', () => {
    const r = new Redactor([{ name: 'TOKEN', value: 's3cr3t-value' }]);
    const clean = { a: [{ b: 'c' }], d: { e: 1 } };
    expect(r.value(clean)).toBe(clean);
    const mixed = { clean: { x: [1, 2] }, dirty: { y: 's3cr3t-value' } };
    const out = r.value(mixed);
    expect(out).not.toBe(mixed);
    expect(out.clean).toBe(mixed.clean);
    expect(out.dirty).not.toBe(mixed.dirty);
    // With no secrets at all, every value comes back as it is.
    const none = new Redactor([]);
    expect(none.value(mixed)).toBe(mixed);
    expect(none.text('s3cr3t-value')).toBe('s3cr3t-value');
  });

  test('primitives pass through', () => {
    const r = new Redactor([{ name: 'TOKEN', value: 's3cr3t-value' }]);
    expect(r.value(42)).toBe(42);
    expect(r.value(null)).toBe(null);
    expect(r.value(undefined)).toBe(undefined);
    expect(r.value('s3cr3t-value')).toBe('[REDACTED:TOKEN]');
  });

  test('json() redacts secrets written JSON-escaped', () => {
    const secret = 'pa"ss\\word\n';
    const r = new Redactor([{ name: 'PW', value: secret }]);
    const text = JSON.stringify({ password: secret, other: 'x' });
    expect(text).not.toContain(secret); // it is there only escaped
    const out = r.json(text);
    expect(out).toBe(JSON.stringify({ password: '[REDACTED:PW]', other: 'x' }));
    expect(JSON.parse(out)).toEqual({ password: '[REDACTED:PW]', other: 'x' });
    // And plain ones.
    expect(new Redactor([{ name: 'T', value: 'plain-secret' }]).json('{"a":"plain-secret"}')).toBe('{"a":"[REDACTED:T]"}');
  });

  test('with() adds secrets', () => {
    const r = new Redactor([{ name: 'A', value: 'aaaaaaa' }]).with([{ name: 'B', value: 'bbbbbbb' }]);
    expect(r.text('aaaaaaa bbbbbbb')).toBe('[REDACTED:A] [REDACTED:B]');
  });
});

describe('Redactor, encoded forms', () => {
  const SECRET = 'correct-horse-battery-staple';
  const r = new Redactor([{ name: 'PW', value: SECRET }]);
  const bytes = Buffer.from(SECRET);

  test('base64 and base64url, padded or not, at every alignment inside longer data', () => {
    for (let p = 0; p < 5; p++) {
      for (let s = 0; s < 5; s++) {
        const data = Buffer.concat([
          Buffer.from('\x00\xff~?>'.slice(0, p), 'latin1'),
          bytes,
          Buffer.from('?>~\xff\x00'.slice(0, s), 'latin1'),
        ]);
        for (const enc of [data.toString('base64'), data.toString('base64url'), data.toString('base64').replace(/=+$/, '')]) {
          const out = r.text(`<${enc}>`);
          const m = /^<(.*)\[REDACTED:PW\](.*)>$/.exec(out);
          expect(m, `${p} ${s} ${enc} -> ${out}`).not.toBeNull();
          // What is left beside the marker is the filler's digits, with at most the few bits of
          // the secret that share a digit with them.
          expect(enc.startsWith(m![1]!) && m![1]!.length <= Math.ceil((8 * p) / 6), out).toBe(true);
          expect(enc.endsWith(m![2]!) && m![2]!.replace(/=+$/, '').length <= Math.ceil((8 * s) / 6), out).toBe(true);
        }
      }
    }
  });

  test('base64 with "+" "/" and their base64url "-" "_"', () => {
    // Bytes chosen so their encoding holds digits 62 and 63.
    const secret = '\u00fb\u00ff\u00bf>?~\u00fb\u00ff';
    const rr = new Redactor([{ name: 'B', value: secret }]);
    const std = Buffer.from(secret).toString('base64');
    expect(std).toMatch(/[+/]/);
    expect(rr.text(`x ${std} y`)).toBe('x [REDACTED:B] y');
    expect(rr.text(`x ${Buffer.from(secret).toString('base64url')} y`)).toBe('x [REDACTED:B] y');
  });

  test('hex in lower, upper and mixed case, alone or inside longer hex', () => {
    const hex = bytes.toString('hex');
    const mixed = [...hex].map((c, i) => (i % 3 === 0 ? c.toUpperCase() : c)).join('');
    for (const h of [hex, hex.toUpperCase(), mixed]) expect(r.text(`0x${h};`)).toBe('0x[REDACTED:PW];');
    expect(r.text(`deadbeef${hex}cafe`)).toBe('deadbeef[REDACTED:PW]cafe');
  });

  test('percent-encoding of any subset of the characters, in any hex case', () => {
    expect(r.text('%63orrect-horse-battery-staple')).toBe('[REDACTED:PW]');
    expect(r.text('x=correct%2Dhorse%2dbattery-stapl%65&y=1')).toBe('x=[REDACTED:PW]&y=1');
    const all = [...bytes].map((b) => '%' + b.toString(16).padStart(2, '0')).join('');
    expect(r.text(`?q=${all}`)).toBe('?q=[REDACTED:PW]');
    expect(r.text(`?q=${all.toUpperCase()}`)).toBe('?q=[REDACTED:PW]');
    // Characters beyond ASCII are encoded as their UTF-8 bytes; a space as %20 or "+".
    const rr = new Redactor([{ name: 'U', value: 'mot de passé ✓' }]);
    expect(rr.text(`a=${encodeURIComponent('mot de passé ✓')}`)).toBe('a=[REDACTED:U]');
    expect(rr.text('a=mot+de%20pass%C3%a9 %E2%9C%93')).toBe('a=[REDACTED:U]');
    expect(rr.text('a=mot de pass%C3 ✓')).toBe('a=mot de pass%C3 ✓'); // half a character is not it
  });

  test('a secret holding "%" is found plain, and percent-encoded as a decoder would read it', () => {
    const rr = new Redactor([{ name: 'P', value: 'ab%41cd%' }]);
    expect(rr.text('[ab%41cd%]')).toBe('[[REDACTED:P]]');
    expect(rr.text(`[${encodeURIComponent('ab%41cd%')}]`)).toBe('[[REDACTED:P]]');
    // "%41" decodes to "A": this text does not hold the secret.
    expect(rr.text('%61b%41cd%25')).toBe('%61b%41cd%25');
  });

  test('json() redacts encoded forms, and percent-encoded ones with JSON-escaped characters', () => {
    const text = JSON.stringify({ a: bytes.toString('base64'), b: bytes.toString('hex'), c: encodeURIComponent(SECRET) });
    expect(JSON.parse(r.json(text))).toEqual({ a: '[REDACTED:PW]', b: '[REDACTED:PW]', c: '[REDACTED:PW]' });
    const rr = new Redactor([{ name: 'Q', value: 'say "hello"' }]);
    const partly = JSON.stringify({ q: 'say%20"hello%22' });
    expect(JSON.parse(rr.json(partly))).toEqual({ q: '[REDACTED:Q]' });
  });

  test('value() redacts encoded forms at any depth, and returns clean values as they are', () => {
    const input = { content: [{ type: 'text', text: `token=${bytes.toString('base64url')}` }], meta: { [bytes.toString('hex')]: 1 } };
    expect(r.value(input)).toEqual({ content: [{ type: 'text', text: 'token=[REDACTED:PW]' }], meta: { '[REDACTED:PW]': 1 } });
    const clean = { text: 'Y29ycmVjdC1ob3Jz 636f7272656374 %63orrect-horse', n: [1, '%%%'] };
    expect(r.value(clean)).toBe(clean);
  });

  test('does not redact other encoded data or ordinary text', () => {
    const other = Buffer.from('correct-horse-battery-stapler is not it'.replace('correct', 'c0rrect'));
    for (const s of [other.toString('base64'), other.toString('hex'), 'correct-horse-battery', '100% correct', 'a%20b%2']) {
      expect(r.text(s)).toBe(s);
    }
  });

  test('secrets that overlap are redacted as one span, named after the longer', () => {
    const rr = new Redactor([
      { name: 'INNER', value: 'abcdef' },
      { name: 'OUTER', value: 'defxyz123' },
    ]);
    expect(rr.text('[abcdefxyz123]')).toBe('[[REDACTED:OUTER]]');
    expect(rr.text('abcdef defxyz123')).toBe('[REDACTED:INNER] [REDACTED:OUTER]');
  });

  test('adversarial input is scanned in linear time (this would time out otherwise)', () => {
    const rr = new Redactor([
      { name: 'P', value: '%%%%%%%%a' },
      { name: 'Q', value: 'aaaaaaab' },
    ]);
    const inputs = ['%25'.repeat(100_000), '%'.repeat(300_000), 'a'.repeat(300_000), '%2'.repeat(150_000), '6'.repeat(300_000)];
    for (const s of inputs) expect(rr.text(s)).toBe(s);
    expect(rr.text('%25'.repeat(8) + 'a').length).toBeLessThan(20);
  });

  test('maxSpan is the longest form: every byte percent-encoded', () => {
    expect(r.maxSpan).toBe(3 * bytes.length);
    expect(new Redactor([]).maxSpan).toBe(0);
  });
});

describe('Redactor.lines', () => {
  const SECRET = 'correct-horse-battery-staple';
  const r = new Redactor([{ name: 'PW', value: SECRET }]);

  test('redacts a secret written across lines, in each line holding a piece', () => {
    expect(r.lines(['start', 'pw=correct-hor', 'se-battery-staple end', 'after'])).toEqual([
      'start',
      'pw=[REDACTED:PW]',
      '[REDACTED:PW] end',
      'after',
    ]);
    // One character a line, and blank lines between the pieces.
    const pieces = [...SECRET].flatMap((c, i) => (i % 5 === 0 ? [c, '  '] : [c]));
    const out = r.lines(pieces);
    expect(out).toHaveLength(pieces.length);
    expect(out.join('')).not.toMatch(/[a-z]/);
  });

  test('a lone "\\r" is a line break too', () => {
    expect(r.lines(['50%\rcorrect-horse-\rbattery-staple\r60%'])).toEqual(['50%\r[REDACTED:PW]\r[REDACTED:PW]\r60%']);
  });

  test('finds encoded forms split across lines (wrapped base64)', () => {
    const b64 = Buffer.from(`user:${SECRET}`).toString('base64');
    const out = r.lines(['Authorization: Basic ' + b64.slice(0, 15), b64.slice(15)]);
    expect(out[0]).toMatch(/^Authorization: Basic [A-Za-z0-9]{0,7}\[REDACTED:PW\]$/);
    expect(out[1]).toMatch(/^\[REDACTED:PW\]/);
  });

  test('lines without a secret come back as they are', () => {
    const lines = ['one', 'two', 'correct-horse', 'battery'];
    expect(r.lines(lines)).toEqual(lines);
    expect(r.lines([])).toEqual([]);
    expect(new Redactor([]).lines(['correct-horse-', 'battery-staple'])).toEqual(['correct-horse-', 'battery-staple']);
  });
});
