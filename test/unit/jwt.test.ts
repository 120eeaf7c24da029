/**
 * Unit tests of JWT verification (design §3): algorithms, signatures, the classic attacks
 * (alg: none, HS/RS confusion), time claims with their tolerance, issuer/audience, claim mapping,
 * PEM keys and a JWKS served on loopback.
 */
import { createHmac } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { configSchema, type JwtConfig } from '../../src/config/schema.js';
import { claimAt, JwtError, JwtVerifier } from '../../src/identity/jwt.js';
import { tempDir } from '../helpers/gateway.js';
import { serveJwks, type JwksServer } from '../helpers/jwks.js';

const SECRET = 'a-test-secret-that-is-at-least-32-characters-long';
const ISSUER = 'https://login.example.test/';
const AUDIENCE = 'mcp-gateway';

function jwtConfig(jwt: Record<string, unknown>): JwtConfig {
  const parsed = configSchema.parse({ auth: { jwt } }).auth.jwt;
  if (!parsed) throw new Error('no jwt config');
  return parsed;
}

const hsConfig = (extra: Record<string, unknown> = {}) =>
  jwtConfig({ secret: SECRET, algorithms: ['HS256'], issuer: ISSUER, audience: AUDIENCE, ...extra });

const now = () => Math.floor(Date.now() / 1000);

/** A signed token with sensible defaults: sub, roles, iss, aud, exp in an hour. */
async function sign(
  key: CryptoKey | Uint8Array,
  alg: string,
  claims: JWTPayload = {},
  header: { kid?: string } = {},
  options: { exp?: number | null; iss?: string | null; aud?: string | null } = {},
): Promise<string> {
  const jwt = new SignJWT({ sub: 'alice', roles: ['reader'], ...claims }).setProtectedHeader({ alg, typ: 'JWT', ...header }).setIssuedAt();
  if (options.iss !== null) jwt.setIssuer(options.iss ?? ISSUER);
  if (options.aud !== null) jwt.setAudience(options.aud ?? AUDIENCE);
  if (options.exp !== null) jwt.setExpirationTime(options.exp ?? now() + 3_600);
  return jwt.sign(key);
}

const secretKey = new TextEncoder().encode(SECRET);
const hs = (claims: JWTPayload = {}, options: Parameters<typeof sign>[4] = {}) => sign(secretKey, 'HS256', claims, {}, options);

const b64url = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

async function rejects(verifier: JwtVerifier, token: string): Promise<JwtError> {
  const err = await verifier.verify(token).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(JwtError);
  // The reason is one line, for the `serve` error message.
  expect((err as Error).message).not.toMatch(/\n/);
  return err as JwtError;
}

// ---------------------------------------------------------------------------------------------

describe('HS256 from a secret', () => {
  const verifier = new JwtVerifier(hsConfig());

  test('a good token gives a jwt identity with consumer, roles, claims and expiry', async () => {
    const exp = now() + 600;
    const identity = await verifier.verify(await hs({ team: 'blue' }, { exp }));
    expect(identity.method).toBe('jwt');
    expect(identity.consumerId).toBe('alice');
    expect(identity.keyId).toBeNull();
    expect(identity.roles).toEqual(['reader']);
    expect(identity.claims['team']).toBe('blue');
    expect(identity.claims['iss']).toBe(ISSUER);
    // Expiry as epoch ms, within the clock tolerance (30 s by default).
    expect(identity.expiresAt).toBeGreaterThanOrEqual(exp * 1000);
    expect(identity.expiresAt).toBeLessThanOrEqual((exp + 30) * 1000);
    expect(Object.isFrozen(identity)).toBe(true);
    expect(Object.isFrozen(identity.roles)).toBe(true);
  });

  test('a bad signature is refused', async () => {
    const token = await hs();
    const [h, p] = token.split('.');
    const forged = createHmac('sha256', 'another-secret-another-secret-another').update(`${h}.${p}`).digest('base64url');
    await rejects(verifier, `${h}.${p}.${forged}`);
    // A changed payload under the original signature.
    const other = b64url({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), roles: ['admin'] });
    await rejects(verifier, `${h}.${other}.${token.split('.')[2]}`);
  });

  test('a token signed with another secret is refused', async () => {
    await rejects(verifier, await sign(new TextEncoder().encode('x'.repeat(40)), 'HS256'));
  });

  test('alg: none is never accepted, with or without a signature part', async () => {
    const payload = b64url({ sub: 'alice', roles: ['admin'], iss: ISSUER, aud: AUDIENCE, exp: now() + 600 });
    for (const header of [{ alg: 'none' }, { alg: 'none', typ: 'JWT' }, { alg: 'None' }, { alg: 'NONE' }]) {
      await rejects(verifier, `${b64url(header)}.${payload}.`);
      await rejects(verifier, `${b64url(header)}.${payload}`);
      // With the HS256 signature of the same content pasted on.
      const sig = createHmac('sha256', SECRET)
        .update(`${b64url(header)}.${payload}`)
        .digest('base64url');
      await rejects(verifier, `${b64url(header)}.${payload}.${sig}`);
    }
  });

  test('"none" cannot even be configured', () => {
    expect(() => jwtConfig({ secret: SECRET, algorithms: ['none'] })).toThrow();
    expect(() => jwtConfig({ secret: SECRET, algorithms: [] })).toThrow();
    expect(() => jwtConfig({ secret: SECRET })).toThrow();
  });

  test('an algorithm not in the list is refused even with the right secret', async () => {
    await rejects(verifier, await sign(secretKey, 'HS512'));
  });

  test('garbage is refused', async () => {
    for (const token of ['', 'abc', 'a.b.c', 'a.b', `${b64url({ alg: 'HS256' })}.notjson.sig`]) await rejects(verifier, token);
  });
});

describe('time claims', () => {
  const verifier = new JwtVerifier(hsConfig({ clockToleranceSec: 30 }));

  test('expired beyond the tolerance is refused', async () => {
    await rejects(verifier, await hs({}, { exp: now() - 120 }));
  });

  test('expired within the tolerance is still accepted (clock skew)', async () => {
    const identity = await verifier.verify(await hs({}, { exp: now() - 5 }));
    expect(identity.consumerId).toBe('alice');
  });

  test('a token without exp is refused', async () => {
    await rejects(verifier, await hs({}, { exp: null }));
  });

  test('nbf in the future beyond the tolerance is refused, within it accepted', async () => {
    await rejects(verifier, await hs({ nbf: now() + 300 }));
    await expect(verifier.verify(await hs({ nbf: now() + 5 }))).resolves.toMatchObject({ consumerId: 'alice' });
  });

  test('tolerance 0 is strict', async () => {
    const strict = new JwtVerifier(hsConfig({ clockToleranceSec: 0 }));
    await rejects(strict, await hs({}, { exp: now() - 2 }));
  });
});

describe('issuer and audience', () => {
  const verifier = new JwtVerifier(hsConfig());

  test('a wrong audience is refused', async () => {
    await rejects(verifier, await hs({}, { aud: 'someone-else' }));
  });

  test('a missing audience is refused when one is configured', async () => {
    await rejects(verifier, await hs({}, { aud: null }));
  });

  test('a wrong or missing issuer is refused', async () => {
    await rejects(verifier, await hs({}, { iss: 'https://evil.example.test/' }));
    await rejects(verifier, await hs({}, { iss: null }));
  });

  test('an audience list accepts any of its entries', async () => {
    const multi = new JwtVerifier(hsConfig({ audience: ['a', AUDIENCE] }));
    await expect(multi.verify(await hs())).resolves.toMatchObject({ consumerId: 'alice' });
    await rejects(multi, await hs({}, { aud: 'c' }));
  });
});

describe('claims to identity', () => {
  test('consumer and roles from dotted claims (realm_access.roles)', async () => {
    const verifier = new JwtVerifier(hsConfig({ consumerClaim: 'user.email', rolesClaim: 'realm_access.roles' }));
    const identity = await verifier.verify(
      await hs({ user: { email: 'ana@example.test' }, realm_access: { roles: ['admin', 'reader', 7, ''] }, roles: ['ignored'] }),
    );
    expect(identity.consumerId).toBe('ana@example.test');
    // Non-strings and empty strings are dropped.
    expect(identity.roles).toEqual(['admin', 'reader']);
  });

  test('roles as a space- or comma-separated string', async () => {
    const verifier = new JwtVerifier(hsConfig({ rolesClaim: 'scope' }));
    expect((await verifier.verify(await hs({ scope: 'read write,admin' }))).roles).toEqual(['read', 'write', 'admin']);
  });

  test('no roles claim gives no roles', async () => {
    const verifier = new JwtVerifier(hsConfig({ rolesClaim: 'groups' }));
    expect((await verifier.verify(await hs())).roles).toEqual([]);
  });

  test('a token without the consumer claim is refused', async () => {
    const verifier = new JwtVerifier(hsConfig({ consumerClaim: 'email' }));
    await rejects(verifier, await hs());
    await rejects(verifier, await hs({ email: '' }));
    await rejects(verifier, await hs({ email: 42 }));
  });

  test('claimAt reads own properties only', () => {
    const claims = JSON.parse('{"a":{"b":{"c":1}},"__proto__":{"polluted":true}}') as Record<string, unknown>;
    expect(claimAt(claims, 'a.b.c')).toBe(1);
    expect(claimAt(claims, 'a.b')).toEqual({ c: 1 });
    expect(claimAt(claims, 'a.x.c')).toBeUndefined();
    expect(claimAt(claims, 'toString')).toBeUndefined();
    expect(claimAt(claims, 'a.constructor')).toBeUndefined();
    expect(claimAt({ a: null }, 'a.b')).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------

describe('asymmetric keys from a PEM', () => {
  let rsa: { publicKey: CryptoKey; privateKey: CryptoKey };
  let rsaPem: string;

  beforeAll(async () => {
    rsa = await generateKeyPair('RS256', { extractable: true });
    rsaPem = await exportSPKI(rsa.publicKey);
  });

  test('RS256 with the public key PEM inline', async () => {
    const verifier = new JwtVerifier(jwtConfig({ publicKey: rsaPem, algorithms: ['RS256'], audience: AUDIENCE }));
    await expect(verifier.verify(await sign(rsa.privateKey, 'RS256'))).resolves.toMatchObject({ consumerId: 'alice', method: 'jwt' });
  });

  test('RS256 with the PEM in a file', async () => {
    const file = path.join(tempDir(), 'key.pem');
    writeFileSync(file, rsaPem);
    const verifier = new JwtVerifier(jwtConfig({ publicKey: file, algorithms: ['RS256'] }));
    await expect(verifier.verify(await sign(rsa.privateKey, 'RS256'))).resolves.toMatchObject({ consumerId: 'alice' });
  });

  test('HS/RS confusion: an HS256 token keyed with the public key PEM is refused', async () => {
    const verifier = new JwtVerifier(jwtConfig({ publicKey: rsaPem, algorithms: ['RS256'] }));
    for (const bytes of [rsaPem, rsaPem.trim(), `${rsaPem.trim()}\n`]) {
      await rejects(verifier, await sign(new TextEncoder().encode(bytes), 'HS256'));
    }
  });

  test('HS/RS confusion cannot be configured: HS* and asymmetric algorithms never mix', () => {
    expect(() => jwtConfig({ publicKey: rsaPem, algorithms: ['RS256', 'HS256'] })).toThrow();
    expect(() => jwtConfig({ publicKey: rsaPem, algorithms: ['HS256'] })).toThrow();
    expect(() => jwtConfig({ secret: SECRET, algorithms: ['RS256'] })).toThrow();
  });

  test('a token signed by another RSA key is refused', async () => {
    const other = await generateKeyPair('RS256');
    const verifier = new JwtVerifier(jwtConfig({ publicKey: rsaPem, algorithms: ['RS256'] }));
    await rejects(verifier, await sign(other.privateKey, 'RS256'));
  });

  test('ES256', async () => {
    const es = await generateKeyPair('ES256', { extractable: true });
    const verifier = new JwtVerifier(jwtConfig({ publicKey: await exportSPKI(es.publicKey), algorithms: ['ES256'] }));
    await expect(verifier.verify(await sign(es.privateKey, 'ES256'))).resolves.toMatchObject({ consumerId: 'alice' });
    // An RS256 token (wrong algorithm for the list and the key) is refused.
    await rejects(verifier, await sign(rsa.privateKey, 'RS256'));
    await rejects(verifier, await sign((await generateKeyPair('ES256')).privateKey, 'ES256'));
  });

  test.each(['PS256', 'RS512', 'ES384', 'ES512', 'Ed25519'])(
    'every configurable asymmetric algorithm verifies from a PEM: %s',
    async (alg) => {
      const pair = await generateKeyPair(alg, { extractable: true });
      const verifier = new JwtVerifier(jwtConfig({ publicKey: await exportSPKI(pair.publicKey), algorithms: [alg] }));
      await expect(verifier.verify(await sign(pair.privateKey, alg))).resolves.toMatchObject({ consumerId: 'alice' });
      await rejects(verifier, await sign((await generateKeyPair(alg)).privateKey, alg));
    },
  );

  test('EdDSA (Ed25519)', async () => {
    const ed = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const verifier = new JwtVerifier(jwtConfig({ publicKey: await exportSPKI(ed.publicKey), algorithms: ['EdDSA'] }));
    await expect(verifier.verify(await sign(ed.privateKey, 'EdDSA'))).resolves.toMatchObject({ consumerId: 'alice' });
    await rejects(verifier, await sign((await generateKeyPair('EdDSA', { crv: 'Ed25519' })).privateKey, 'EdDSA'));
  });
});

// ---------------------------------------------------------------------------------------------

describe('JWKS served on loopback', () => {
  let jwks: JwksServer;
  let uri: string;
  let a: JwksServer['a'];
  let b: JwksServer['b'];

  beforeAll(async () => {
    jwks = await serveJwks();
    ({ uri, a, b } = jwks);
  });

  afterAll(() => jwks.close());

  test('kid A verifies; after the JWKS gains key B, a kid B token verifies (refetch on unknown kid)', async () => {
    const verifier = new JwtVerifier(jwtConfig({ jwksUri: uri, algorithms: ['RS256'], issuer: ISSUER }), { jwksCooldownMs: 0 });
    const before = jwks.fetches;
    await expect(verifier.verify(await sign(a.privateKey, 'RS256', {}, { kid: 'A' }))).resolves.toMatchObject({ consumerId: 'alice' });
    expect(jwks.fetches).toBe(before + 1);

    // Cached: a second token with a known kid needs no fetch.
    await verifier.verify(await sign(a.privateKey, 'RS256', { sub: 'bob' }, { kid: 'A' }));
    expect(jwks.fetches).toBe(before + 1);

    // B is not published yet: refused (after a refetch that does not find it).
    const tokenB = await sign(b.privateKey, 'RS256', { sub: 'carol' }, { kid: 'B' });
    await rejects(verifier, tokenB);

    await jwks.publishB();
    const fetchesBeforeB = jwks.fetches;
    await expect(verifier.verify(tokenB)).resolves.toMatchObject({ consumerId: 'carol' });
    expect(jwks.fetches).toBeGreaterThan(fetchesBeforeB);

    // A token with kid A but signed by B's key is refused.
    await rejects(verifier, await sign(b.privateKey, 'RS256', {}, { kid: 'A' }));
  });

  test('an HS256 token keyed with a JWKS key is refused', async () => {
    const verifier = new JwtVerifier(jwtConfig({ jwksUri: uri, algorithms: ['RS256'] }), { jwksCooldownMs: 0 });
    const pem = await exportSPKI(a.publicKey);
    await rejects(verifier, await sign(new TextEncoder().encode(pem), 'HS256', {}, { kid: 'A' }));
  });

  test('an unreachable JWKS is a JwtError, not a crash', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const verifier = new JwtVerifier(jwtConfig({ jwksUri: `http://127.0.0.1:${port}/jwks.json`, algorithms: ['RS256'] }));
    await rejects(verifier, await sign(a.privateKey, 'RS256', {}, { kid: 'A' }));
  });
});
