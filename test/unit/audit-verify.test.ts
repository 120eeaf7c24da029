/**
 * `audit verify` (design §6): a valid chain verifies, and every kind of tampering is reported at the
 * right seq with the right reason. On both engines: rows are written as a gateway writes them (the
 * real AuditStore in a SQLite file, the real PgRecorder in a PostgreSQL database) and tampered with
 * by raw SQL, as someone with the file or the database would. PostgreSQL also keeps the chain's head
 * (`audit_head`), so there rows deleted from the end are found without an anchor.
 */
import { expect, test } from 'vitest';
import { GENESIS_HASH, rowHash, type AuditRow } from '../../src/audit/chain.js';
import type { AuditDraft } from '../../src/audit/store.js';
import { chainHead, parseAnchor, verifyChain, verifyChainAsync, type VerifyOptions, type VerifyResult } from '../../src/audit/verify.js';
import { describeEngines, engineCases, type TestEngine } from '../helpers/engines.js';

const KEY = Buffer.from('a-long-enough-audit-key-0123456789');
const OTHER_KEY = Buffer.from('another-audit-key-9876543210-zyxw');
const BASE = Date.parse('2026-03-01T10:00:00.000Z');

const engines = await engineCases('audit-verify');

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

function expectFailure(result: VerifyResult, seq: number, reason: string): void {
  expect(result).toMatchObject({ ok: false, seq, reason });
}

const chain = (hmacKey: Buffer | null) => ({ hashChain: true, hmacKey });

/** The helpers every block below uses, over one engine. */
function on(t: TestEngine) {
  return {
    /** Writes `n` rows (i = from…), in one commit, as the recorder does. */
    fill: (n: number, hmacKey: Buffer | null = null, from = 1) =>
      t.fill(
        Array.from({ length: n }, (_, i) => draft(from + i)),
        chain(hmacKey),
      ),
    verify: (options: VerifyOptions) => t.store.verify(options),
    rowAt: async (seq: number) => (await t.store.reader.get<AuditRow>('SELECT * FROM audit_log WHERE seq = @seq', { seq }))!,
    rows: () => t.store.reader.all<AuditRow>('SELECT * FROM audit_log ORDER BY seq'),
  };
}

describeEngines(engines, 'a valid chain', (t) => {
  const { fill, verify, rowAt } = on(t);

  test('an empty log verifies (0 rows, no head)', async () => {
    expect(await verify({ hmacKey: null })).toEqual({ ok: true, rows: 0, head: null, mode: 'sha256' });
    expect(await t.store.head()).toEqual({ seq: 0, hash: GENESIS_HASH });
    if (t.engine === 'sqlite') expect(chainHead(t.db)).toEqual({ seq: 0, hash: GENESIS_HASH });
  });

  test('plain SHA-256 chain verifies, head is the last row', async () => {
    await fill(20);
    const last = (await rowAt(20)).hash;
    expect(await verify({ hmacKey: null })).toEqual({ ok: true, rows: 20, head: { seq: 20, hash: last }, mode: 'sha256' });
    expect(await t.store.head()).toEqual({ seq: 20, hash: last });
    if (t.engine === 'sqlite') expect(chainHead(t.db)).toEqual({ seq: 20, hash: last });
  });

  test('HMAC chain verifies with its key, also across several transactions', async () => {
    await fill(5, KEY);
    await t.append([draft(6), draft(7)], chain(KEY));
    expect(await verify({ hmacKey: KEY })).toMatchObject({ ok: true, rows: 7, mode: 'hmac-sha256' });
  });

  test('values with quotes, escapes, control and non-ASCII characters verify', async () => {
    const odd = ['"quoted" \\ back\\slash', 'tab\tnew\nline\rcr', '\u0001\u001f\u007f\u0080', 'é ü 漢字 \u2028\u2029 😀', '</script>', ''];
    await t.fill(
      odd.map((text, i) => ({ ...draft(i + 1), name: text, error: text, arguments: JSON.stringify({ text }), consumer_id: text })),
      chain(KEY),
    );
    expect(await verify({ hmacKey: KEY })).toMatchObject({ ok: true, rows: odd.length });
  });

  test('text with lone UTF-16 surrogates (which neither engine can store as sent) verifies untouched', async () => {
    const broken = ['x\ud800', '\udc00y', 'a\ud83d', 'ok'];
    await t.fill(broken.map((text, i) => ({ ...draft(i + 1), name: text, arguments: `{"t":"${text}"}`, error: text })));
    expect(await verify({ hmacKey: null })).toMatchObject({ ok: true, rows: broken.length });
    // Stored well-formed: the lone surrogate became U+FFFD.
    expect((await rowAt(1)).name).toBe('x\ufffd');
  });

  test('a NUL character in an audited string is stored and the chain verifies', async () => {
    const texts = ['a\u0000b', '\u0000', 'tail\u0000', '{"q":"\u0000"}'];
    await t.fill(
      texts.map((text, i) => ({ ...draft(i + 1), name: text, arguments: text, result: JSON.stringify({ text }), error: text })),
      chain(KEY),
    );
    expect(await verify({ hmacKey: KEY })).toMatchObject({ ok: true, rows: texts.length });
    // SQLite keeps it; PostgreSQL text cannot hold U+0000, so it is stored (and hashed) as U+FFFD.
    expect((await rowAt(1)).name).toBe(t.engine === 'sqlite' ? 'a\u0000b' : 'a\ufffdb');
    // JSON text escapes it as \u0000 (six characters), which every engine stores as sent.
    expect((await rowAt(1)).result).toBe(JSON.stringify({ text: 'a\u0000b' }));
  });

  test('verifying while the gateway runs (sliced, or in batches) agrees with the whole pass', async () => {
    await fill(3000, KEY);
    const whole = await verify({ hmacKey: KEY });
    expect(whole).toMatchObject({ ok: true, rows: 3000 });
    expect(await t.store.verify({ hmacKey: KEY }, true)).toEqual(whole);
    if (t.engine === 'sqlite') expect(await verifyChainAsync(t.db, { hmacKey: KEY }, 0)).toEqual(verifyChain(t.db, { hmacKey: KEY }));
    await t.sql('UPDATE audit_log SET status = $1 WHERE seq = 2500', ['error']);
    expectFailure(await t.store.verify({ hmacKey: KEY }, true), 2500, 'modified');
    expectFailure(await verify({ hmacKey: KEY }), 2500, 'modified');
    if (t.engine === 'sqlite') expectFailure(await verifyChainAsync(t.db, { hmacKey: KEY }, 0), 2500, 'modified');
  });

  test('a matching anchor passes; anchor 0 is the genesis', async () => {
    await fill(10);
    const anchor = parseAnchor(`7:${(await rowAt(7)).hash}`)!;
    expect(await verify({ hmacKey: null, anchor })).toMatchObject({ ok: true, rows: 10 });
    expect(await verify({ hmacKey: null, anchor: { seq: 0, hash: GENESIS_HASH } })).toMatchObject({ ok: true });
  });
});

describeEngines(engines, 'tampering with one column of a middle row is "modified" at that seq', (t) => {
  const { fill, verify } = on(t);
  const cases: [string, string, unknown][] = [
    ['arguments', 'UPDATE audit_log SET arguments = $1 WHERE seq = 5', JSON.stringify({ q: 'something else' })],
    ['result', 'UPDATE audit_log SET result = $1 WHERE seq = 5', JSON.stringify({ content: [] })],
    ['latency_ms', 'UPDATE audit_log SET latency_ms = $1 WHERE seq = 5', 1],
    ['status', 'UPDATE audit_log SET status = $1 WHERE seq = 5', 'denied'],
    ['ts', 'UPDATE audit_log SET ts = $1 WHERE seq = 5', '2026-03-01T10:00:04.999Z'],
    ['consumer_id', 'UPDATE audit_log SET consumer_id = $1 WHERE seq = 5', 'mallory'],
    ['error (NULL to text)', 'UPDATE audit_log SET error = $1 WHERE seq = 5', ''],
  ];
  // SQLite's columns take any type: text where a number was.
  if (t.engine === 'sqlite')
    cases.push(['latency_ms made text', "UPDATE audit_log SET latency_ms = CAST($1 AS TEXT) || 'ms' WHERE seq = 5", 15]);
  for (const [column, sql, value] of cases) {
    test.each([null, KEY])(`${column} (key: %s)`, async (key) => {
      await fill(10, key);
      await t.sql(sql, [value]);
      const result = await verify({ hmacKey: key });
      expectFailure(result, 5, 'modified');
      expect(result).toMatchObject({ rows: 4 });
    });
  }

  if (t.engine === 'sqlite') {
    test('a BLOB put in a text column is "modified" at that row', async () => {
      await fill(10);
      t.db.prepare("UPDATE audit_log SET arguments = X'7b7d' WHERE seq = 5").run();
      expectFailure(verifyChain(t.db, { hmacKey: null }), 5, 'modified');
    });

    test('a fractional latency is "modified" at that row', async () => {
      await fill(10);
      t.db.prepare('UPDATE audit_log SET latency_ms = 15.5 WHERE seq = 5').run();
      expectFailure(verifyChain(t.db, { hmacKey: null }), 5, 'modified');
    });
  }

  test('changing the hash column of a row is reported at that row', async () => {
    await fill(10);
    await t.sql('UPDATE audit_log SET hash = $1 WHERE seq = 5', ['f'.repeat(64)]);
    expectFailure(await verify({ hmacKey: null }), 5, 'modified');
  });

  test('changing the prev_hash column of a row is reported at that row', async () => {
    await fill(10);
    await t.sql('UPDATE audit_log SET prev_hash = $1 WHERE seq = 5', ['e'.repeat(64)]);
    expectFailure(await verify({ hmacKey: null }), 5, 'modified');
  });
});

describeEngines(engines, 'deleted rows', (t) => {
  const { fill, verify } = on(t);

  test('deleting a middle row is "missing" at the next seq', async () => {
    await fill(10, KEY);
    await t.sql('DELETE FROM audit_log WHERE seq = 5');
    expectFailure(await verify({ hmacKey: KEY }), 6, 'missing');
  });

  test('deleting the first row is "missing" at seq 2', async () => {
    await fill(10);
    await t.sql('DELETE FROM audit_log WHERE seq = 1');
    expectFailure(await verify({ hmacKey: null }), 2, 'missing');
  });

  test('deleting a row and renumbering the rest is "missing"', async () => {
    await fill(10);
    await t.sql('DELETE FROM audit_log WHERE seq = 5');
    // Renumber upwards-safe: shift 6..10 down by one, lowest first.
    for (let s = 6; s <= 10; s++) await t.sql('UPDATE audit_log SET seq = seq - 1 WHERE seq = $1', [s]);
    expectFailure(await verify({ hmacKey: null }), 5, 'missing');
  });

  test('deleting the last rows (on PostgreSQL, with audit_head moved back too) passes without an anchor, fails "truncated" with one taken before', async () => {
    await fill(10, KEY);
    const head = await t.store.head();
    await t.cutChain(7);
    expect(await verify({ hmacKey: KEY })).toMatchObject({ ok: true, rows: 7 });
    expectFailure(await verify({ hmacKey: KEY, anchor: head }), 10, 'truncated');
  });

  test('deleting everything fails against an anchor', async () => {
    await fill(3);
    const head = await t.store.head();
    await t.sql('DELETE FROM audit_log');
    expectFailure(await verify({ hmacKey: null, anchor: head }), 3, 'truncated');
  });

  if (t.engine === 'postgres') {
    test('deleting the last rows is "truncated" without an anchor: audit_head still names the last row', async () => {
      await fill(10, KEY);
      await t.sql('DELETE FROM audit_log WHERE seq > 7');
      const result = await verify({ hmacKey: KEY });
      expectFailure(result, 10, 'truncated');
      expect(result).toMatchObject({ rows: 7 });
      expect(!result.ok && result.detail).toMatch(/audit_head records row 10, but the log ends at row 7/);
    });

    test('deleting only the last row is "truncated" at it; deleting every row is "truncated" too', async () => {
      await fill(3);
      await t.sql('DELETE FROM audit_log WHERE seq = 3');
      expectFailure(await verify({ hmacKey: null }), 3, 'truncated');
      await t.sql('DELETE FROM audit_log');
      const result = await verify({ hmacKey: null });
      expectFailure(result, 3, 'truncated');
      expect(!result.ok && result.detail).toMatch(/no row \(it is empty\)/);
    });

    test('the last row rewritten with a hash that fits the chain, audit_head left alone, is "modified" at it', async () => {
      await fill(10);
      const last = await on(t).rowAt(10);
      const forged = { ...last, status: 'denied' };
      await t.sql('UPDATE audit_log SET status = $1, hash = $2 WHERE seq = 10', ['denied', rowHash(last.prev_hash, forged, null)]);
      const result = await verify({ hmacKey: null });
      expectFailure(result, 10, 'modified');
      expect(!result.ok && result.detail).toMatch(/audit_head/);
    });
  }
});

describeEngines(engines, 'reordered rows', (t) => {
  const { fill, verify, rowAt } = on(t);

  /** Swaps every column but seq between two rows (hashes included). */
  async function swap(a: number, b: number): Promise<void> {
    const ra = await rowAt(a);
    const rb = await rowAt(b);
    const cols = Object.keys(ra).filter((c) => c !== 'seq') as (keyof AuditRow)[];
    const set = cols.map((c, i) => `${c} = $${i + 1}`).join(', ');
    const update = (row: AuditRow, seq: number) =>
      t.sql(`UPDATE audit_log SET ${set} WHERE seq = $${cols.length + 1}`, [...cols.map((c) => row[c]), seq]);
    await update(rb, a);
    await update(ra, b);
  }

  test.each([null, KEY])('swapping rows 5 and 6 is "reordered" at 5 (key: %s)', async (key) => {
    await fill(10, key);
    await swap(5, 6);
    expectFailure(await verify({ hmacKey: key }), 5, 'reordered');
  });

  test('swapping non-adjacent rows is "reordered" at the first', async () => {
    await fill(10);
    await swap(3, 8);
    expectFailure(await verify({ hmacKey: null }), 3, 'reordered');
  });

  test('swapping the first two rows is "reordered" at 1', async () => {
    await fill(10);
    await swap(1, 2);
    expectFailure(await verify({ hmacKey: null }), 1, 'reordered');
  });
});

describeEngines(engines, 'keys and rewrites', (t) => {
  const { fill, verify, rowAt, rows } = on(t);

  test('verifying an HMAC chain with another key is "wrong-key"', async () => {
    await fill(10, KEY);
    expectFailure(await verify({ hmacKey: OTHER_KEY }), 1, 'wrong-key');
  });

  test('verifying an HMAC chain without a key is "wrong-key"', async () => {
    await fill(10, KEY);
    expectFailure(await verify({ hmacKey: null }), 1, 'wrong-key');
  });

  test('verifying a plain chain with a key is "wrong-key"', async () => {
    await fill(10);
    expectFailure(await verify({ hmacKey: KEY }), 1, 'wrong-key');
  });

  /**
   * Rewrites the whole log with plain SHA-256, consistently, as someone without the key could
   * (on PostgreSQL, moving audit_head along as a gateway does).
   */
  async function rewritePlain(change: (row: AuditDraft, seq: number) => AuditDraft): Promise<void> {
    const all = await rows();
    await t.cutChain(0);
    await t.append(
      all.map(({ seq, prev_hash, hash, ...rest }) => change(rest, seq)),
      chain(null),
    );
  }

  test('a consistent plain SHA-256 rewrite of an HMAC log fails with the right key', async () => {
    await fill(10, KEY);
    const anchor = await t.store.head();
    await rewritePlain((row, seq) => (seq === 4 ? { ...row, status: 'ok', result: '{"forged":true}' } : row));
    expect(await verify({ hmacKey: null })).toMatchObject({ ok: false, reason: 'wrong-key' }); // audit_meta still says HMAC
    const result = await verify({ hmacKey: KEY });
    expect(result.ok).toBe(false);
    expect(['wrong-key', 'anchor-mismatch']).toContain(!result.ok && result.reason);
    expectFailure(result, 1, 'wrong-key');
    expect(await verify({ hmacKey: KEY, anchor })).toMatchObject({ ok: false, reason: 'wrong-key' });
  });

  test('the same rewrite with audit_meta changed to plain SHA-256 still fails with the right key', async () => {
    await fill(10, KEY);
    await rewritePlain((row, seq) => (seq === 4 ? { ...row, status: 'ok', result: '{"forged":true}' } : row));
    await t.sql("UPDATE audit_meta SET value = 'sha256' WHERE key = 'chain'");
    expectFailure(await verify({ hmacKey: KEY }), 1, 'wrong-key');
  });

  test('rewriting the tail without the key is "wrong-key" at the first rewritten row', async () => {
    await fill(10, KEY);
    await t.cutChain(5);
    // Appending with plain SHA-256 links to the real row 5 but cannot produce HMACs.
    await t.append([draft(60), draft(70)], chain(null));
    expectFailure(await verify({ hmacKey: KEY }), 6, 'wrong-key');
  });

  test('a consistent rewrite of a plain chain passes alone but not against an anchor', async () => {
    await fill(10);
    const anchor = { seq: 8, hash: (await rowAt(8)).hash };
    await rewritePlain((row, seq) => (seq === 3 ? { ...row, consumer_id: 'mallory' } : row));
    expect(await verify({ hmacKey: null })).toMatchObject({ ok: true, rows: 10 });
    expectFailure(await verify({ hmacKey: null, anchor }), 8, 'anchor-mismatch');
  });

  test('audit_meta altered while the rows are intact is reported', async () => {
    await fill(5, KEY);
    await t.sql("UPDATE audit_meta SET value = 'hmac-sha256:0000000000000000' WHERE key = 'chain'");
    expectFailure(await verify({ hmacKey: KEY }), 1, 'wrong-key');
  });

  test('a log written with hashChain off cannot be verified', async () => {
    await t.fill([draft(1), draft(2)], { hashChain: false, hmacKey: null });
    expectFailure(await verify({ hmacKey: null }), 1, 'unchained');
  });
});

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

describeEngines(engines, 'anchors', (t) => {
  const { fill, verify, rowAt } = on(t);

  test('an anchor with a hash prefix passes on its row, and fails "anchor-mismatch" on a rewritten one', async () => {
    await fill(10);
    const prefix = (await rowAt(7)).hash.slice(0, 16);
    expect(await verify({ hmacKey: null, anchor: parseAnchor(`7:${prefix}`)! })).toMatchObject({ ok: true, rows: 10 });
    const other = prefix.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    expectFailure(await verify({ hmacKey: null, anchor: parseAnchor(`7:${other}`)! }), 7, 'anchor-mismatch');
  });

  test('an anchor whose hash differs is "anchor-mismatch" at its seq', async () => {
    await fill(10);
    expectFailure(await verify({ hmacKey: null, anchor: { seq: 4, hash: 'b'.repeat(64) } }), 4, 'anchor-mismatch');
  });

  test('a break before the anchor is reported first', async () => {
    await fill(10);
    const anchor = { seq: 9, hash: (await rowAt(9)).hash };
    await t.sql("UPDATE audit_log SET name = 'other' WHERE seq = 2");
    expectFailure(await verify({ hmacKey: null, anchor }), 2, 'modified');
  });
});
