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
