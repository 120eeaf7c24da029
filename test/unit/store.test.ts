/** The database file: created owner-only, refused clearly when it is not one, migrated once. */
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { openDatabase, StoreError } from '../../src/store/db.js';

const dir = () => mkdtempSync(path.join(tmpdir(), 'mcpgw-store-'));

describe('openDatabase', () => {
  test('a new database is readable and writable by its owner only (keys, audited arguments)', () => {
    const file = path.join(dir(), 'gw.db');
    const db = openDatabase(file);
    db.prepare('SELECT 1').get();
    expect(statSync(file).mode & 0o777).toBe(0o600);
    db.close();
  });

  test('a file that is not SQLite is refused with a StoreError naming it', () => {
    const file = path.join(dir(), 'gw.db');
    writeFileSync(file, 'this is not a database, just text that is long enough to have a header '.repeat(20));
    expect(() => openDatabase(file)).toThrow(StoreError);
    expect(() => openDatabase(file)).toThrow(file);
  });

  test('read-only opening of a missing file does not create it', () => {
    const file = path.join(dir(), 'missing.db');
    expect(() => openDatabase(file, { readonly: true })).toThrow(StoreError);
    expect(() => statSync(file)).toThrow();
  });

  test('the schema is created once and reopening keeps the data', () => {
    const file = path.join(dir(), 'gw.db');
    const a = openDatabase(file);
    a.prepare("INSERT INTO audit_meta (key, value) VALUES ('x', 'y')").run();
    a.close();
    const b = openDatabase(file);
    expect(b.prepare("SELECT value FROM audit_meta WHERE key = 'x'").get()).toEqual({ value: 'y' });
    expect(b.pragma('journal_mode', { simple: true })).toBe('wal');
    b.close();
  });

  test('maxBytes caps the file: writes beyond it fail with SQLITE_FULL', () => {
    const db = openDatabase(path.join(dir(), 'gw.db'), { maxBytes: 1_048_576 });
    const insert = db.prepare('INSERT INTO audit_ballast (pad) VALUES (zeroblob(65536))');
    expect(() => {
      for (let i = 0; i < 100; i++) insert.run();
    }).toThrow(/full/i);
    db.close();
  });
});
