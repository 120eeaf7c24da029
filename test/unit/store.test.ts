/**
 * The database file: created owner-only, refused clearly when it is not one, migrated once; the
 * recorder's reserve laid down once and left alone while whole.
 */
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { AuditStore } from '../../src/audit/store.js';
import { openDatabase, StoreError } from '../../src/store/db.js';
import { Recorder } from '../../src/store/recorder.js';

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

describe('Recorder reserve at startup', () => {
  const silent = { debug() {}, info() {}, warn() {}, error() {}, scoped: () => silent } as never;
  const open = (file: string) => {
    const db = openDatabase(file);
    const recorder = new Recorder(db, new AuditStore(db, { hashChain: true, hmacKey: null }), null, silent);
    recorder.prepare();
    return { db, recorder };
  };
  const ballastIds = (db: ReturnType<typeof openDatabase>) =>
    (db.prepare('SELECT id FROM audit_ballast ORDER BY id').all() as { id: number }[]).map((r) => r.id);

  test('the first start lays down the reserve file and 16 ballast rows; a restart finds them whole and writes neither', () => {
    const file = path.join(dir(), 'gw.db');
    const first = open(file);
    const reserve = `${file}-reserve`;
    expect(statSync(reserve).size).toBe(4 * 1024 * 1024);
    const ids = ballastIds(first.db);
    expect(ids).toHaveLength(16);
    first.recorder.close();
    first.db.close();

    const before = statSync(reserve).mtimeMs;
    const second = open(file);
    expect(statSync(reserve).mtimeMs).toBe(before);
    expect(ballastIds(second.db)).toEqual(ids);
    // Not a row written by this start (the ballast is not re-laid, the chain mode is already recorded).
    expect(second.db.prepare('SELECT total_changes() AS n').get()).toEqual({ n: 0 });
    second.recorder.close();
    second.db.close();
  });

  test('a reserve file that is short, or a ballast missing rows, is restored at start', () => {
    const file = path.join(dir(), 'gw.db');
    const first = open(file);
    first.db.prepare('DELETE FROM audit_ballast WHERE id IN (SELECT id FROM audit_ballast LIMIT 5)').run();
    first.recorder.close();
    first.db.close();
    writeFileSync(`${file}-reserve`, 'short');

    const second = open(file);
    expect(statSync(`${file}-reserve`).size).toBe(4 * 1024 * 1024);
    expect(ballastIds(second.db)).toHaveLength(16);
    second.recorder.close();
    second.db.close();
  });
});
