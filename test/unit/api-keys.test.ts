/**
 * Unit tests of API keys (design §3): the key format, hashing, the constant-time comparisons, and
 * `authenticate` with database and config keys, including the per-request check that notices
 * revocation, disabling, rotation and expiry. The database keys and the key store run on both
 * engines: a SQLite file and a PostgreSQL database (skipped, saying so, where none answers).
 */
import bcrypt from 'bcryptjs';
import * as nodeCrypto from 'node:crypto';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { configSchema, type GatewayConfig } from '../../src/config/schema.js';
import { isGatewayError } from '../../src/errors.js';
import { BCRYPT_COST, DUMMY_HASH, generateKey, hashKey, keyEqualsPlain, keyMatchesHash, parseKey } from '../../src/identity/api-keys.js';
import { API_KEY_ENV, AuthError, authenticate, TOKEN_ENV, type Authenticated } from '../../src/identity/authenticate.js';
import { issueKey, KeyAdminError, rotateKey } from '../../src/identity/key-admin.js';
import { openDatabase, type Db } from '../../src/store/db.js';
import { SqliteKeyStore, type KeyStore, type NewKeyRecord } from '../../src/store/keys.js';
import { describeEngines, engineCases } from '../helpers/engines.js';

const timingSafeEqual = vi.hoisted(() => ({ calls: 0 }));
vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  return {
    ...actual,
    timingSafeEqual: (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
      timingSafeEqual.calls++;
      return actual.timingSafeEqual(a, b);
    },
  };
});

const SECRET_RE = /^[A-Za-z0-9_-]{43}$/;

// ---------------------------------------------------------------------------------------------

describe('key format', () => {
  test('generateKey: gw_<keyId>_<secret>, keyId alphanumeric, secret 43 base64url characters (256 bits)', () => {
    const ids = new Set<string>();
    const secrets = new Set<string>();
    for (let i = 0; i < 500; i++) {
      const { keyId, key } = generateKey();
      expect(keyId).toMatch(/^[A-Za-z0-9]{1,32}$/);
      expect(key.startsWith(`gw_${keyId}_`)).toBe(true);
      const secret = key.slice(`gw_${keyId}_`.length);
      expect(secret).toMatch(SECRET_RE);
      expect(Buffer.from(secret, 'base64url')).toHaveLength(32);
      // bcrypt reads only the first 72 bytes: the whole key must fit.
      expect(Buffer.byteLength(key)).toBeLessThanOrEqual(72);
      const parsed = parseKey(key);
      expect(parsed).toEqual({ keyId, secret });
      ids.add(keyId);
      secrets.add(secret);
    }
    expect(secrets.size).toBe(500);
    expect(ids.size).toBeGreaterThan(490);
  });

  test('parseKey splits at the first underscore after the id, whatever the secret holds', () => {
    const secret = '_-_abcdefghij_klmnopqrstuvwxyz0123456789AB';
    expect(parseKey(`gw_abc123_${secret}`)).toEqual({ keyId: 'abc123', secret });
    expect(parseKey(`  gw_abc123_${secret}\n`)).toEqual({ keyId: 'abc123', secret });
  });

  test.each([
    ['empty', ''],
    ['prefix only', 'gw_'],
    ['no secret', 'gw_abc123'],
    ['empty secret', 'gw_abc123_'],
    ['empty keyId', 'gw__abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG'],
    ['other prefix', 'gk_abc123_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG'],
    ['upper-case prefix', 'GW_abc123_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG'],
    ['no prefix', 'abc123_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG'],
    ['keyId too long', `gw_${'a'.repeat(33)}_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG`],
    ['secret too short', 'gw_abc123_short'],
    ['secret with +', 'gw_abc123_abcdefghijklmnopqrstuvwxyz+123456789ABCDEFG'],
    ['secret with /', 'gw_abc123_abcdefghijklmnopqrstuvwxyz/123456789ABCDEFG'],
    ['secret with padding =', 'gw_abc123_abcdefghijklmnopqrstuvwxyz0123456789ABCDEF='],
    ['space inside', 'gw_abc123_abcdefghijklmno pqrstuvwxyz0123456789ABCDEFG'],
    ['a JWT', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJlc2lnbmF0dXJl'],
    ['non-ASCII', 'gw_abc123_abcdefghijklmnopqrstuvwxyzé0123456789ABCDEF'],
  ])('parseKey rejects %s', (_what, key) => {
    expect(parseKey(key)).toBeUndefined();
  });

  test('a keyId may hold "-" (static ids such as ci-bot), never "_" (it separates the parts)', () => {
    expect(parseKey('gw_ci-bot_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG')).toEqual({
      keyId: 'ci-bot',
      secret: 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG',
    });
    expect(parseKey('gw_-lead_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG')).toBeUndefined();
  });
});

describe('hashing and comparison', () => {
  test('hashKey makes a bcrypt hash at cost 12 that only the key matches', async () => {
    const { key } = generateKey();
    const hash = hashKey(key);
    expect(BCRYPT_COST).toBe(12);
    expect(bcrypt.getRounds(hash)).toBe(12);
    expect(hash).toMatch(/^\$2[aby]\$12\$.{53}$/);
    expect(hash).not.toContain(key.slice(-43));
    expect(await keyMatchesHash(key, hash)).toBe(true);
    expect(await keyMatchesHash(`${key}x`, hash)).toBe(false);
    expect(await keyMatchesHash(key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A'), hash)).toBe(false);
    expect(await keyMatchesHash(generateKey().key, hash)).toBe(false);
  });

  test('two hashes of one key differ (salted) and both verify', async () => {
    const { key } = generateKey();
    const [h1, h2] = [hashKey(key, 4), hashKey(key, 4)];
    expect(h1).not.toBe(h2);
    expect(await keyMatchesHash(key, h1)).toBe(true);
    expect(await keyMatchesHash(key, h2)).toBe(true);
  });

  test('keyMatchesHash is false, not an exception, for a broken hash', async () => {
    expect(await keyMatchesHash('gw_a_b', 'not a hash')).toBe(false);
    expect(await keyMatchesHash('gw_a_b', '')).toBe(false);
  });

  test('DUMMY_HASH is a real cost-12 hash that no key matches (unknown ids take as long as known ones)', async () => {
    expect(bcrypt.getRounds(DUMMY_HASH)).toBe(BCRYPT_COST);
    expect(DUMMY_HASH).toMatch(/^\$2[aby]\$12\$.{53}$/);
    expect(await keyMatchesHash(generateKey().key, DUMMY_HASH)).toBe(false);
  });

  test('keyEqualsPlain: equal keys match; different keys, of any length, do not', () => {
    const { key } = generateKey();
    expect(keyEqualsPlain(key, key)).toBe(true);
    expect(keyEqualsPlain(key, `${key}x`)).toBe(false);
    expect(keyEqualsPlain(key, key.slice(0, -1))).toBe(false);
    expect(keyEqualsPlain(key, '')).toBe(false);
    expect(keyEqualsPlain('', '')).toBe(true);
    expect(keyEqualsPlain(key, key.toUpperCase())).toBe(false);
  });

  test('keyEqualsPlain compares with crypto.timingSafeEqual (equal-length digests), never with ===', () => {
    const before = timingSafeEqual.calls;
    expect(keyEqualsPlain('gw_a_1234567890123456', 'gw_b_1234567890123456789012345')).toBe(false);
    expect(keyEqualsPlain('same', 'same')).toBe(true);
    expect(timingSafeEqual.calls).toBe(before + 2);
    // The mock wraps the real function: the module under test saw the wrapped one.
    expect(nodeCrypto.timingSafeEqual(Buffer.from('a'), Buffer.from('a'))).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------

const STATIC_PLAIN = 'gw_plain1_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG';
const STATIC_HASHED = 'gw_hashed1_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG';
let hashedHash: string;

function config(auth: Record<string, unknown> = {}): GatewayConfig {
  return configSchema.parse({ database: ':memory:', auth });
}

const staticKeys = () =>
  config({
    apiKeys: {
      static: [
        { id: 'plain1', consumerId: 'ci', roles: ['reader'], key: STATIC_PLAIN, rateLimit: { perMinute: 120 } },
        { id: 'hashed1', consumerId: 'bot', roles: ['admin'], hash: (hashedHash ??= hashKey(STATIC_HASHED, 4)) },
        { id: 'off1', consumerId: 'off', roles: ['reader'], key: 'gw_off1_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG', enabled: false },
        {
          id: 'old1',
          consumerId: 'old',
          roles: ['reader'],
          key: 'gw_old1_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG',
          expiresAt: '2020-01-01T00:00:00Z',
        },
        {
          id: 'soon1',
          consumerId: 'soon',
          roles: ['reader'],
          key: 'gw_soon1_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG',
          expiresAt: new Date(Date.now() + 60_000).toISOString(),
        },
      ],
    },
  });

async function refused(promise: Promise<Authenticated>): Promise<AuthError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuthError);
  expect((err as Error).message).not.toMatch(/\n/);
  return err as AuthError;
}

/** The per-request check (synchronous on SQLite, a query on PostgreSQL) fails UNAUTHENTICATED. */
async function unauthenticated(fn: () => void | Promise<void>): Promise<void> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  expect(isGatewayError(err) && err.code).toBe('UNAUTHENTICATED');
}

/** The per-request check passes. */
async function passes(fn: () => void | Promise<void>): Promise<void> {
  await expect((async () => fn())()).resolves.toBeUndefined();
}

const engines = await engineCases('api-keys');

describeEngines(engines, 'authenticate with database keys', (t) => {
  const store = () => t.store.keys;

  afterEach(() => {
    vi.restoreAllMocks();
  });

  function newDbKey(spec: Partial<{ expiresAt: string | null; ratePerMinute: number | null; roles: string[] }> = {}) {
    return issueKey(store(), config(), {
      name: 'test',
      consumerId: 'ana',
      roles: spec.roles ?? ['reader', 'writer'],
      expiresAt: spec.expiresAt ?? null,
      ratePerMinute: spec.ratePerMinute ?? null,
    });
  }

  const setExpiry = (id: string, at: number) =>
    t.sql('UPDATE api_keys SET expires_at = $1 WHERE id = $2', [new Date(at).toISOString(), id]);

  test('a database key: identity, rate override, and a check that passes while it is valid', async () => {
    const { record, key } = await newDbKey({ ratePerMinute: 30 });
    const auth = await authenticate(config(), store(), { [API_KEY_ENV]: key });
    expect(auth.identity).toMatchObject({ consumerId: 'ana', keyId: record.id, method: 'api-key', roles: ['reader', 'writer'] });
    expect(auth.identity.expiresAt).toBeNull();
    expect(auth.rateLimit).toEqual({ perMinute: 30, burst: undefined });
    await passes(() => auth.check(auth.identity, Date.now()));
    // Surrounding whitespace (a pasted line) is ignored.
    await expect(authenticate(config(), store(), { [API_KEY_ENV]: ` ${key}\n` })).resolves.toBeTruthy();
  });

  test('bcrypt runs once per session, never in the per-request check', async () => {
    const { key } = await newDbKey();
    const compare = vi.spyOn(bcrypt, 'compare');
    const auth = await authenticate(config(), store(), { [API_KEY_ENV]: key });
    expect(compare).toHaveBeenCalledTimes(1);
    for (let i = 0; i < 100; i++) await auth.check(auth.identity, Date.now());
    expect(compare).toHaveBeenCalledTimes(1);
    // On SQLite the check is a local read, synchronous; on PostgreSQL a query (a revocation on any
    // replica is seen by the next request on all).
    const result = auth.check(auth.identity, Date.now());
    if (t.engine === 'sqlite') expect(result).toBeUndefined();
    else expect(result).toBeInstanceOf(Promise);
    await result;
  });

  test('a wrong secret, an unknown keyId and a malformed key are refused', async () => {
    const { record, key } = await newDbKey();
    const wrong = `gw_${record.id}_${'A'.repeat(43)}`;
    await refused(authenticate(config(), store(), { [API_KEY_ENV]: wrong }));
    await refused(authenticate(config(), store(), { [API_KEY_ENV]: key.replace(record.id, 'nosuchkey1') }));
    await refused(authenticate(config(), store(), { [API_KEY_ENV]: 'not-a-key' }));
    await refused(authenticate(config(), store(), { [API_KEY_ENV]: key.slice(0, 20) }));
  });

  test('an unknown keyId is still compared against a hash (no early exit that reveals which ids exist)', async () => {
    const compare = vi.spyOn(bcrypt, 'compare');
    await refused(authenticate(config(), store(), { [API_KEY_ENV]: `gw_nosuchkey1_${'A'.repeat(43)}` }));
    expect(compare).toHaveBeenCalledTimes(1);
    expect(compare.mock.calls[0]![1]).toBe(DUMMY_HASH);
  });

  test('revoked, disabled or replaced after the session began: the next check fails UNAUTHENTICATED', async () => {
    const { record, key } = await newDbKey();
    const auth = await authenticate(config(), store(), { [API_KEY_ENV]: key });
    await store().setDisabled(record.id, true);
    await unauthenticated(() => auth.check(auth.identity, Date.now()));
    await store().setDisabled(record.id, false);
    await passes(() => auth.check(auth.identity, Date.now()));
    await store().revoke(record.id, new Date().toISOString());
    await unauthenticated(() => auth.check(auth.identity, Date.now()));
  });

  test('rotated: the old key is refused on its next check; the new key authenticates', async () => {
    const { record, key } = await newDbKey({ ratePerMinute: 10 });
    const auth = await authenticate(config(), store(), { [API_KEY_ENV]: key });
    const rotated = await rotateKey(store(), config(), record.id);
    await unauthenticated(() => auth.check(auth.identity, Date.now()));
    await refused(authenticate(config(), store(), { [API_KEY_ENV]: key }));
    const next = await authenticate(config(), store(), { [API_KEY_ENV]: rotated.key });
    expect(next.identity).toMatchObject({ consumerId: 'ana', keyId: rotated.record.id, roles: ['reader', 'writer'] });
    expect(next.rateLimit?.perMinute).toBe(10);
    expect(rotated.record.rotatedFrom).toBe(record.id);
    expect(rotated.old.id).toBe(record.id);
    // A revoked key cannot be rotated again.
    await expect(rotateKey(store(), config(), record.id)).rejects.toThrow(KeyAdminError);
    await expect(rotateKey(store(), config(), 'nosuchkey')).rejects.toThrow(KeyAdminError);
  });

  test('two rotations of one key at once: exactly one succeeds, the other says the key was revoked', async () => {
    const { record } = await newDbKey({ ratePerMinute: 10 });
    // Each rotation reads the key before the other writes: both go on to the transaction, where the race is decided.
    const keys0 = store();
    const read = keys0.get.bind(keys0);
    let reads = 0;
    let bothRead!: () => void;
    const barrier = new Promise<void>((resolve) => (bothRead = resolve));
    vi.spyOn(keys0, 'get').mockImplementation(async (id) => {
      const value = await read(id);
      if (id === record.id && ++reads === 2) bothRead();
      if (id === record.id) await barrier;
      return value;
    });
    const replace = vi.spyOn(store(), 'replace');
    const outcomes = await Promise.allSettled([rotateKey(store(), config(), record.id), rotateKey(store(), config(), record.id)]);
    // Both found the key unrevoked and got as far as the transaction: the race was decided there.
    expect(replace).toHaveBeenCalledTimes(2);
    const won = outcomes.filter((o) => o.status === 'fulfilled');
    const lost = outcomes.filter((o) => o.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(lost[0]!.reason).toBeInstanceOf(KeyAdminError);
    expect((lost[0]!.reason as Error).message).toMatch(new RegExp(`key ${record.id} was revoked at`));
    // One replacement stored, not two; the old key revoked once.
    const keys = await store().list();
    expect(keys).toHaveLength(2);
    const fresh = keys.find((k) => k.id !== record.id)!;
    expect(fresh).toMatchObject({ rotatedFrom: record.id, revokedAt: null, ratePerMinute: 10 });
    expect((await store().get(record.id))?.revokedAt).not.toBeNull();
    const winner = (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof rotateKey>>>).value;
    expect(winner.record.id).toBe(fresh.id);
    await expect(authenticate(config(), store(), { [API_KEY_ENV]: winner.key })).resolves.toBeTruthy();
  });

  test('an expired key is not rotated (its replacement would be born expired); the old key stays as it was', async () => {
    const { record } = await newDbKey({ expiresAt: new Date(Date.now() + 60_000).toISOString() });
    await setExpiry(record.id, Date.now() - 1_000);
    await expect(rotateKey(store(), config(), record.id)).rejects.toThrow(KeyAdminError);
    expect((await store().get(record.id))?.revokedAt).toBeNull();
    expect(await store().list()).toHaveLength(1);
  });

  test('a key deleted from the database is refused on the next check', async () => {
    const { record, key } = await newDbKey();
    const auth = await authenticate(config(), store(), { [API_KEY_ENV]: key });
    await t.sql('DELETE FROM api_keys WHERE id = $1', [record.id]);
    await unauthenticated(() => auth.check(auth.identity, Date.now()));
  });

  test('expiry: refused at startup once expired; a running session fails its first check after', async () => {
    const expiresAt = new Date(Date.now() + 60_000).toISOString();
    const { key } = await newDbKey({ expiresAt });
    const auth = await authenticate(config(), store(), { [API_KEY_ENV]: key });
    expect(auth.identity.expiresAt).toBe(Date.parse(expiresAt));
    await passes(() => auth.check(auth.identity, Date.parse(expiresAt) - 1));
    await unauthenticated(() => auth.check(auth.identity, Date.parse(expiresAt)));

    const { key: expired, record } = await newDbKey({ expiresAt: new Date(Date.now() + 60_000).toISOString() });
    await setExpiry(record.id, Date.now() - 1_000);
    await refused(authenticate(config(), store(), { [API_KEY_ENV]: expired }));
  });

  test('an expiry moved earlier in the database is seen by a running session', async () => {
    const { record, key } = await newDbKey();
    const auth = await authenticate(config(), store(), { [API_KEY_ENV]: key });
    await setExpiry(record.id, Date.now() - 1_000);
    await unauthenticated(() => auth.check(auth.identity, Date.now()));
  });

  test('both a key and a token, or a token without auth.jwt, are refused', async () => {
    const { key } = await newDbKey();
    await refused(authenticate(config(), store(), { [API_KEY_ENV]: key, [TOKEN_ENV]: 'a.b.c' }));
    await refused(authenticate(config(), store(), { [TOKEN_ENV]: 'a.b.c' }));
  });
});

describeEngines(engines, 'the key store', (t) => {
  const store = () => t.store.keys;
  const record = (id: string, extra: Partial<NewKeyRecord> = {}): NewKeyRecord => ({
    id,
    name: `key ${id}`,
    consumerId: 'ana',
    roles: ['reader', 'writer'],
    hash: `hash-of-${id}`,
    createdAt: '2026-03-01T10:00:00.000Z',
    expiresAt: null,
    ratePerMinute: null,
    rateBurst: null,
    rotatedFrom: null,
    ...extra,
  });

  test('a stored key reads back as written; list is in creation order', async () => {
    await store().insert(record('k2', { createdAt: '2026-03-01T11:00:00.000Z', ratePerMinute: 2.5, rateBurst: 10, rotatedFrom: 'k0' }));
    await store().insert(record('k1', { expiresAt: '2027-01-01T00:00:00.000Z', roles: [] }));
    expect(await store().get('k2')).toEqual({
      ...record('k2', { createdAt: '2026-03-01T11:00:00.000Z', ratePerMinute: 2.5, rateBurst: 10, rotatedFrom: 'k0' }),
      revokedAt: null,
      disabled: false,
    });
    expect(await store().get('nosuch')).toBeUndefined();
    expect((await store().list()).map((k) => [k.id, k.roles, k.expiresAt])).toEqual([
      ['k1', [], '2027-01-01T00:00:00.000Z'],
      ['k2', ['reader', 'writer'], null],
    ]);
    expect(await store().state('k1')).toEqual({
      hash: 'hash-of-k1',
      revokedAt: null,
      expiresAt: '2027-01-01T00:00:00.000Z',
      disabled: false,
    });
    expect(await store().state('nosuch')).toBeUndefined();
  });

  test('revoke: once (a second revoke, or of an unknown key, is false); disable and enable', async () => {
    await store().insert(record('k1'));
    expect(await store().revoke('k1', '2026-03-02T00:00:00.000Z')).toBe(true);
    expect(await store().revoke('k1', '2026-03-03T00:00:00.000Z')).toBe(false);
    expect(await store().revoke('nosuch', '2026-03-03T00:00:00.000Z')).toBe(false);
    expect((await store().get('k1'))?.revokedAt).toBe('2026-03-02T00:00:00.000Z');
    expect(await store().setDisabled('k1', true)).toBe(true);
    expect(await store().state('k1')).toMatchObject({ disabled: true, revokedAt: '2026-03-02T00:00:00.000Z' });
    expect(await store().setDisabled('k1', false)).toBe(true);
    expect((await store().get('k1'))?.disabled).toBe(false);
    expect(await store().setDisabled('nosuch', true)).toBe(false);
  });

  test('replace stores the new key and revokes the old in one transaction; nothing is stored when the old one was revoked', async () => {
    await store().insert(record('old'));
    expect(await store().replace(record('new1', { rotatedFrom: 'old' }), 'old', '2026-03-02T00:00:00.000Z')).toBe(true);
    expect((await store().get('old'))?.revokedAt).toBe('2026-03-02T00:00:00.000Z');
    expect(await store().get('new1')).toMatchObject({ rotatedFrom: 'old', revokedAt: null });
    expect(await store().replace(record('new2', { rotatedFrom: 'old' }), 'old', '2026-03-03T00:00:00.000Z')).toBe(false);
    expect(await store().get('new2')).toBeUndefined();
    expect((await store().list()).map((k) => k.id)).toEqual(['new1', 'old']);
  });

  test('a failed insert inside replace leaves the old key unrevoked', async () => {
    await store().insert(record('old'));
    await store().insert(record('taken'));
    // The new key's id is taken: the insert fails, and the revocation is rolled back with it.
    await expect(store().replace(record('taken'), 'old', '2026-03-02T00:00:00.000Z')).rejects.toThrow();
    expect((await store().get('old'))?.revokedAt).toBeNull();
  });

  test('two replacements of one key at once: one is stored, the other is not', async () => {
    await store().insert(record('old'));
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => store().replace(record(`new${i}`, { rotatedFrom: 'old' }), 'old', '2026-03-02T00:00:00.000Z')),
    );
    expect(results.filter(Boolean)).toHaveLength(1);
    expect(await store().list()).toHaveLength(2);
  });
});

describe('authenticate with config keys, or none', () => {
  let db: Db;
  let store: KeyStore;

  beforeEach(() => {
    db = openDatabase(':memory:');
    store = new SqliteKeyStore(db);
  });
  afterEach(() => {
    db.close();
    vi.restoreAllMocks();
  });

  test('static keys: plain `key:` and bcrypt `hash:`', async () => {
    const plain = await authenticate(staticKeys(), store, { [API_KEY_ENV]: STATIC_PLAIN });
    expect(plain.identity).toMatchObject({ consumerId: 'ci', keyId: 'plain1', method: 'api-key', roles: ['reader'] });
    expect(plain.rateLimit).toEqual({ perMinute: 120 });
    const hashed = await authenticate(staticKeys(), store, { [API_KEY_ENV]: STATIC_HASHED });
    expect(hashed.identity).toMatchObject({ consumerId: 'bot', keyId: 'hashed1', roles: ['admin'] });
    expect(hashed.rateLimit).toBeNull();
    await refused(authenticate(staticKeys(), store, { [API_KEY_ENV]: STATIC_PLAIN.replace(/G$/, 'H') }));
    await refused(authenticate(staticKeys(), store, { [API_KEY_ENV]: STATIC_HASHED.replace(/G$/, 'H') }));
  });

  test('static keys: disabled or expired in the config are refused; expiry is checked per request', async () => {
    await refused(authenticate(staticKeys(), store, { [API_KEY_ENV]: 'gw_off1_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG' }));
    await refused(authenticate(staticKeys(), store, { [API_KEY_ENV]: 'gw_old1_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG' }));
    const soon = await authenticate(staticKeys(), store, { [API_KEY_ENV]: 'gw_soon1_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG' });
    await passes(() => soon.check(soon.identity, Date.now()));
    await unauthenticated(() => soon.check(soon.identity, Date.now() + 120_000));
  });

  test('no credential: refused with a reason naming MCP_GATEWAY_API_KEY, unless anonymous is on', async () => {
    const err = await refused(authenticate(config(), store, {}));
    expect(err.message).toContain(API_KEY_ENV);
    await refused(authenticate(config(), store, { [API_KEY_ENV]: '   ' }));
    const anon = await authenticate(config({ anonymous: true }), store, {});
    expect(anon.identity).toMatchObject({ consumerId: 'anonymous', keyId: null, method: 'anonymous', roles: ['anonymous'] });
    await passes(() => anon.check(anon.identity, Date.now()));
  });

  test('anonymous does not rescue a bad credential', async () => {
    await refused(
      authenticate(config({ anonymous: true }), store, { [API_KEY_ENV]: 'gw_nope_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG' }),
    );
    await refused(authenticate(config({ anonymous: true }), store, { [API_KEY_ENV]: 'garbage' }));
  });

  test('an AuthError is always one line (serve prints it as its one line on stderr)', () => {
    expect(new AuthError('first\n  second\r\nthird\n').message).toBe('first second third');
  });
});
