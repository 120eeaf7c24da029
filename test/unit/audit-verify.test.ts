/**
 * `audit verify` (design §6): a valid chain verifies, and every kind of tampering is reported at the
 * right seq with the right reason. Rows are written by the real AuditStore into a real SQLite file
 * and tampered with by raw SQL, as someone with the file would.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { GENESIS_HASH, type AuditRow } from '../../src/audit/chain.js';
import { AuditStore, type AuditDraft } from '../../src/audit/store.js';
import { chainHead, parseAnchor, verifyChain, verifyChainAsync, type VerifyResult } from '../../src/audit/verify.js';
import { openDatabase, type Db } from '../../src/store/db.js';

const KEY = Buffer.from('a-long-enough-audit-key-0123456789');
const OTHER_KEY = Buffer.from('another-audit-key-9876543210-zyxw');
const BASE = Date.parse('2026-03-01T10:00:00.000Z');

let dir: string;
let db: Db;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'mcpgw-verify-'));
  db = openDatabase(path.join(dir, 'gateway.db'));
});

afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

function draft(i: number): AuditDraft {
  return {
    ts: new Date(BASE + i * 1000).toISOString(),
    consumer_id: i % 2 ? 'alice' : 'bob',
    key_id: 'k1',
    auth_method: 'api-key',
    roles: '["reader"]',
    server: 'github',
    kind: 'tool',
    name: 'search_issues',
    arguments: JSON.stringify({ q: `bug ${i}` }),
    result: JSON.stringify({ content: [{ type: 'text', text: `result ${i}` }] }),
    status: 'ok',
    error: null,
    latency_ms: 10 + i,
    decided_by: 'reader#0',
  };
}

/** Writes `n` rows with the real AuditStore (in one IMMEDIATE transaction, as the recorder does). */
function fill(n: number, hmacKey: Buffer | null = null, into: Db = db, from = 1): AuditStore {
  const store = new AuditStore(into, { hashChain: true, hmacKey });
  store.checkMode();
  const drafts = Array.from({ length: n }, (_, i) => draft(from + i));
  into.transaction(() => store.appendInTransaction(drafts)).immediate();
  return store;
}

function expectFailure(result: VerifyResult, seq: number, reason: string): void {
  expect(result).toMatchObject({ ok: false, seq, reason });
}

const rowAt = (seq: number) => db.prepare('SELECT * FROM audit_log WHERE seq = ?').get(seq) as AuditRow;

describe('a valid chain', () => {
  test('an empty log verifies (0 rows, no head)', () => {
    expect(verifyChain(db, { hmacKey: null })).toEqual({ ok: true, rows: 0, head: null, mode: 'sha256' });
    expect(chainHead(db)).toEqual({ seq: 0, hash: GENESIS_HASH });
  });

  test('plain SHA-256 chain verifies, head is the last row', () => {
    fill(20);
    const result = verifyChain(db, { hmacKey: null });
    expect(result).toEqual({ ok: true, rows: 20, head: { seq: 20, hash: rowAt(20).hash }, mode: 'sha256' });
    expect(chainHead(db)).toEqual({ seq: 20, hash: rowAt(20).hash });
  });

  test('HMAC chain verifies with its key, also across several transactions', () => {
    const store = fill(5, KEY);
    db.transaction(() => store.appendInTransaction([draft(6), draft(7)])).immediate();
    expect(verifyChain(db, { hmacKey: KEY })).toMatchObject({ ok: true, rows: 7, mode: 'hmac-sha256' });
  });

  test('values with quotes, escapes, control and non-ASCII characters verify', () => {
    const store = new AuditStore(db, { hashChain: true, hmacKey: KEY });
    store.checkMode();
    const odd = ['"quoted" \\ back\\slash', 'tab\tnew\nline\rcr', '\u0001\u001f\u007f\u0080', 'é ü 漢字 \u2028\u2029 😀', '</script>', ''];
    db.transaction(() =>
      store.appendInTransaction(
        odd.map((text, i) => ({ ...draft(i + 1), name: text, error: text, arguments: JSON.stringify({ text }), consumer_id: text })),
      ),
    ).immediate();
    expect(verifyChain(db, { hmacKey: KEY })).toMatchObject({ ok: true, rows: odd.length });
  });

  test('text with lone UTF-16 surrogates (which SQLite cannot store as sent) verifies untouched', () => {
    const store = new AuditStore(db, { hashChain: true, hmacKey: null });
    store.checkMode();
    const broken = ['x\ud800', '\udc00y', 'a\ud83d', 'ok'];
    db.transaction(() =>
      store.appendInTransaction(broken.map((text, i) => ({ ...draft(i + 1), name: text, arguments: `{"t":"${text}"}`, error: text }))),
    ).immediate();
    expect(verifyChain(db, { hmacKey: null })).toMatchObject({ ok: true, rows: broken.length });
  });

  test('the async (sliced) verifier agrees', async () => {
    fill(3000, KEY);
    const sync = verifyChain(db, { hmacKey: KEY });
    expect(await verifyChainAsync(db, { hmacKey: KEY }, 0)).toEqual(sync);
    db.prepare('UPDATE audit_log SET status = ? WHERE seq = 2500').run('error');
    expectFailure(await verifyChainAsync(db, { hmacKey: KEY }, 0), 2500, 'modified');
  });

  test('a matching anchor passes; anchor 0 is the genesis', () => {
    fill(10);
    const anchor = parseAnchor(`7:${rowAt(7).hash}`)!;
    expect(verifyChain(db, { hmacKey: null, anchor })).toMatchObject({ ok: true, rows: 10 });
    expect(verifyChain(db, { hmacKey: null, anchor: { seq: 0, hash: GENESIS_HASH } })).toMatchObject({ ok: true });
  });
});

describe('tampering with one column of a middle row is "modified" at that seq', () => {
  const cases: [string, string, unknown][] = [
    ['arguments', 'UPDATE audit_log SET arguments = ? WHERE seq = 5', JSON.stringify({ q: 'something else' })],
    ['result', 'UPDATE audit_log SET result = ? WHERE seq = 5', JSON.stringify({ content: [] })],
    ['latency_ms', 'UPDATE audit_log SET latency_ms = ? WHERE seq = 5', 1],
    ['status', 'UPDATE audit_log SET status = ? WHERE seq = 5', 'denied'],
    ['ts', 'UPDATE audit_log SET ts = ? WHERE seq = 5', '2026-03-01T10:00:04.999Z'],
    ['consumer_id', 'UPDATE audit_log SET consumer_id = ? WHERE seq = 5', 'mallory'],
    ['error (NULL to text)', 'UPDATE audit_log SET error = ? WHERE seq = 5', ''],
    ['latency_ms made text', "UPDATE audit_log SET latency_ms = CAST(? AS TEXT) || 'ms' WHERE seq = 5", 15],
  ];
  for (const [column, sql, value] of cases) {
    test.each([null, KEY])(`${column} (key: %s)`, (key) => {
      fill(10, key);
      db.prepare(sql).run(value);
      const result = verifyChain(db, { hmacKey: key });
      expectFailure(result, 5, 'modified');
      expect(result).toMatchObject({ rows: 4 });
    });
  }

  test('a BLOB put in a text column is "modified" at that row', () => {
    fill(10);
    db.prepare("UPDATE audit_log SET arguments = X'7b7d' WHERE seq = 5").run();
    expectFailure(verifyChain(db, { hmacKey: null }), 5, 'modified');
  });

  test('a fractional latency is "modified" at that row', () => {
    fill(10);
    db.prepare('UPDATE audit_log SET latency_ms = 15.5 WHERE seq = 5').run();
    expectFailure(verifyChain(db, { hmacKey: null }), 5, 'modified');
  });

  test('changing the hash column of a row is reported at that row', () => {
    fill(10);
    db.prepare('UPDATE audit_log SET hash = ? WHERE seq = 5').run('f'.repeat(64));
    expectFailure(verifyChain(db, { hmacKey: null }), 5, 'modified');
  });

  test('changing the prev_hash column of a row is reported at that row', () => {
    fill(10);
    db.prepare('UPDATE audit_log SET prev_hash = ? WHERE seq = 5').run('e'.repeat(64));
    expectFailure(verifyChain(db, { hmacKey: null }), 5, 'modified');
  });
});

describe('deleted rows', () => {
  test('deleting a middle row is "missing" at the next seq', () => {
    fill(10, KEY);
    db.prepare('DELETE FROM audit_log WHERE seq = 5').run();
    expectFailure(verifyChain(db, { hmacKey: KEY }), 6, 'missing');
  });

  test('deleting the first row is "missing" at seq 2', () => {
    fill(10);
    db.prepare('DELETE FROM audit_log WHERE seq = 1').run();
    expectFailure(verifyChain(db, { hmacKey: null }), 2, 'missing');
  });

  test('deleting a row and renumbering the rest is "missing"', () => {
    fill(10);
    db.prepare('DELETE FROM audit_log WHERE seq = 5').run();
    // Renumber upwards-safe: shift 6..10 down by one, lowest first.
    for (let s = 6; s <= 10; s++) db.prepare('UPDATE audit_log SET seq = seq - 1 WHERE seq = ?').run(s);
    expectFailure(verifyChain(db, { hmacKey: null }), 5, 'missing');
  });

  test('deleting the last rows passes without an anchor, fails "truncated" with one taken before', () => {
    fill(10, KEY);
    const head = chainHead(db);
    db.prepare('DELETE FROM audit_log WHERE seq > 7').run();
    expect(verifyChain(db, { hmacKey: KEY })).toMatchObject({ ok: true, rows: 7 });
    expectFailure(verifyChain(db, { hmacKey: KEY, anchor: head }), 10, 'truncated');
  });

  test('deleting everything fails against an anchor', () => {
    fill(3);
    const head = chainHead(db);
    db.prepare('DELETE FROM audit_log').run();
    expectFailure(verifyChain(db, { hmacKey: null, anchor: head }), 3, 'truncated');
  });
});

describe('reordered rows', () => {
  /** Swaps every column but seq between two rows (hashes included). */
  function swap(a: number, b: number): void {
    const cols = Object.keys(rowAt(a)).filter((c) => c !== 'seq');
    const ra = rowAt(a);
    const rb = rowAt(b);
    const set = cols.map((c) => `${c} = @${c}`).join(', ');
    db.transaction(() => {
      db.prepare(`UPDATE audit_log SET ${set} WHERE seq = @seq`).run({ ...rb, seq: a });
      db.prepare(`UPDATE audit_log SET ${set} WHERE seq = @seq`).run({ ...ra, seq: b });
    })();
  }

  test.each([null, KEY])('swapping rows 5 and 6 is "reordered" at 5 (key: %s)', (key) => {
    fill(10, key);
    swap(5, 6);
    expectFailure(verifyChain(db, { hmacKey: key }), 5, 'reordered');
  });

  test('swapping non-adjacent rows is "reordered" at the first', () => {
    fill(10);
    swap(3, 8);
    expectFailure(verifyChain(db, { hmacKey: null }), 3, 'reordered');
  });

  test('swapping the first two rows is "reordered" at 1', () => {
    fill(10);
    swap(1, 2);
    expectFailure(verifyChain(db, { hmacKey: null }), 1, 'reordered');
  });
});

describe('keys and rewrites', () => {
  test('verifying an HMAC chain with another key is "wrong-key"', () => {
    fill(10, KEY);
    expectFailure(verifyChain(db, { hmacKey: OTHER_KEY }), 1, 'wrong-key');
  });

  test('verifying an HMAC chain without a key is "wrong-key"', () => {
    fill(10, KEY);
    expectFailure(verifyChain(db, { hmacKey: null }), 1, 'wrong-key');
  });

  test('verifying a plain chain with a key is "wrong-key"', () => {
    fill(10);
    expectFailure(verifyChain(db, { hmacKey: KEY }), 1, 'wrong-key');
  });

  /** Rewrites the whole log with plain SHA-256, consistently, as someone without the key could. */
  function rewritePlain(changeRow: number): void {
    const rows = db.prepare('SELECT * FROM audit_log ORDER BY seq').all() as AuditRow[];
    const plain = new AuditStore(db, { hashChain: true, hmacKey: null });
    db.transaction(() => {
      db.prepare('DELETE FROM audit_log').run();
      plain.appendInTransaction(
        rows.map(({ seq, prev_hash, hash, ...rest }) => (seq === changeRow ? { ...rest, status: 'ok', result: '{"forged":true}' } : rest)),
      );
    }).immediate();
  }

  test('a consistent plain SHA-256 rewrite of an HMAC log fails with the right key', () => {
    fill(10, KEY);
    const anchor = chainHead(db);
    rewritePlain(4);
    expect(verifyChain(db, { hmacKey: null })).toMatchObject({ ok: false, reason: 'wrong-key' }); // audit_meta still says HMAC
    const result = verifyChain(db, { hmacKey: KEY });
    expect(result.ok).toBe(false);
    expect(['wrong-key', 'anchor-mismatch']).toContain(!result.ok && result.reason);
    expectFailure(result, 1, 'wrong-key');
    expect(verifyChain(db, { hmacKey: KEY, anchor })).toMatchObject({ ok: false, reason: 'wrong-key' });
  });

  test('the same rewrite with audit_meta changed to plain SHA-256 still fails with the right key', () => {
    fill(10, KEY);
    rewritePlain(4);
    db.prepare("UPDATE audit_meta SET value = 'sha256' WHERE key = 'chain'").run();
    expectFailure(verifyChain(db, { hmacKey: KEY }), 1, 'wrong-key');
  });

  test('rewriting the tail without the key is "wrong-key" at the first rewritten row', () => {
    fill(10, KEY);
    db.prepare('DELETE FROM audit_log WHERE seq >= 6').run();
    // Appending with plain SHA-256 links to the real row 5 but cannot produce HMACs.
    const plain = new AuditStore(db, { hashChain: true, hmacKey: null });
    db.transaction(() => plain.appendInTransaction([draft(60), draft(70)])).immediate();
    expectFailure(verifyChain(db, { hmacKey: KEY }), 6, 'wrong-key');
  });

  test('a consistent rewrite of a plain chain passes alone but not against an anchor', () => {
    fill(10);
    const anchor = { seq: 8, hash: rowAt(8).hash };
    const rows = db.prepare('SELECT * FROM audit_log ORDER BY seq').all() as AuditRow[];
    const store = new AuditStore(db, { hashChain: true, hmacKey: null });
    db.transaction(() => {
      db.prepare('DELETE FROM audit_log').run();
      store.appendInTransaction(rows.map(({ seq, prev_hash, hash, ...rest }) => (seq === 3 ? { ...rest, consumer_id: 'mallory' } : rest)));
    }).immediate();
    expect(verifyChain(db, { hmacKey: null })).toMatchObject({ ok: true, rows: 10 });
    expectFailure(verifyChain(db, { hmacKey: null, anchor }), 8, 'anchor-mismatch');
  });

  test('audit_meta altered while the rows are intact is reported', () => {
    fill(5, KEY);
    db.prepare("UPDATE audit_meta SET value = 'hmac-sha256:0000000000000000' WHERE key = 'chain'").run();
    expectFailure(verifyChain(db, { hmacKey: KEY }), 1, 'wrong-key');
  });

  test('a log written with hashChain off cannot be verified', () => {
    const store = new AuditStore(db, { hashChain: false, hmacKey: null });
    store.checkMode();
    db.transaction(() => store.appendInTransaction([draft(1), draft(2)])).immediate();
    expectFailure(verifyChain(db, { hmacKey: null }), 1, 'unchained');
  });
});

describe('anchors', () => {
  test('parseAnchor accepts seq:hash, or the first 16+ hex digits of the hash, and refuses anything else', () => {
    const hash = 'A'.repeat(64);
    expect(parseAnchor(`12:${hash}`)).toEqual({ seq: 12, hash: 'a'.repeat(64) });
    expect(parseAnchor(`12:${hash.slice(1)}`)).toEqual({ seq: 12, hash: 'a'.repeat(63) });
    expect(parseAnchor(`12:${hash.slice(0, 16)}…`)).toEqual({ seq: 12, hash: 'a'.repeat(16) });
    expect(parseAnchor(`12:${hash.slice(0, 15)}`)).toBeNull();
    expect(parseAnchor(`12:${hash}0`)).toBeNull();
    expect(parseAnchor('12')).toBeNull();
    expect(parseAnchor(`x:${hash}`)).toBeNull();
    expect(parseAnchor(`-1:${hash}`)).toBeNull();
  });

  test('an anchor with a hash prefix passes on its row, and fails "anchor-mismatch" on a rewritten one', () => {
    fill(10);
    const prefix = rowAt(7).hash.slice(0, 16);
    expect(verifyChain(db, { hmacKey: null, anchor: parseAnchor(`7:${prefix}`)! })).toMatchObject({ ok: true, rows: 10 });
    const other = prefix.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    expectFailure(verifyChain(db, { hmacKey: null, anchor: parseAnchor(`7:${other}`)! }), 7, 'anchor-mismatch');
  });

  test('an anchor whose hash differs is "anchor-mismatch" at its seq', () => {
    fill(10);
    expectFailure(verifyChain(db, { hmacKey: null, anchor: { seq: 4, hash: 'b'.repeat(64) } }), 4, 'anchor-mismatch');
  });

  test('a break before the anchor is reported first', () => {
    fill(10);
    const anchor = { seq: 9, hash: rowAt(9).hash };
    db.prepare("UPDATE audit_log SET name = 'other' WHERE seq = 2").run();
    expectFailure(verifyChain(db, { hmacKey: null, anchor }), 2, 'modified');
  });
});
