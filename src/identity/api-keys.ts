/**
 * API keys (design §3): `gw_<keyId>_<secret>`, keyId short and alphanumeric (what listings and the
 * audit show), secret 32 random bytes in base64url. Only a bcrypt hash is stored. bcrypt runs once
 * per session, never per call.
 */
import bcrypt from 'bcryptjs';
import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';

export const KEY_PREFIX = 'gw_';
export const BCRYPT_COST = 12;
const KEY_ID_ALPHABET = 'abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';
const KEY_ID_LENGTH = 10;

export interface ParsedKey {
  readonly keyId: string;
  readonly secret: string;
}

/** A fresh key: 10-character id (unambiguous letters and digits), 256-bit secret. */
export function generateKey(): { keyId: string; key: string } {
  let keyId = '';
  for (let i = 0; i < KEY_ID_LENGTH; i++) keyId += KEY_ID_ALPHABET[randomInt(KEY_ID_ALPHABET.length)];
  return { keyId, key: `${KEY_PREFIX}${keyId}_${randomBytes(32).toString('base64url')}` };
}

/** Splits a key into id and secret; undefined when it is not of the gateway's form. */
export function parseKey(key: string): ParsedKey | undefined {
  const m = /^gw_([A-Za-z0-9][A-Za-z0-9-]{0,31})_([A-Za-z0-9_-]{16,})$/.exec(key.trim());
  return m ? { keyId: m[1]!, secret: m[2]! } : undefined;
}

export function hashKey(key: string, cost = BCRYPT_COST): string {
  return bcrypt.hashSync(key, cost);
}

/**
 * bcrypt comparison (constant time over the digest). Asynchronous: at cost 12 it takes a quarter
 * of a second, during which the gateway keeps answering (initialize must not wait for it).
 */
export async function keyMatchesHash(key: string, hash: string): Promise<boolean> {
  try {
    return await bcrypt.compare(key, hash);
  } catch {
    return false;
  }
}

/** Equal-length digests compared in constant time, for keys given in plain config (`key: ${ENV}`). */
export function keyEqualsPlain(key: string, plain: string): boolean {
  const a = createHash('sha256').update(key).digest();
  const b = createHash('sha256').update(plain).digest();
  return timingSafeEqual(a, b);
}

/** A hash no key matches: compared against when a keyId is unknown, so timing does not tell. */
export const DUMMY_HASH = '$2b$12$C6UzMDM.H6dfI/f/IKcEeO5L6D/4yGZ6I1Yd4u3cwt7y/3Xb3Wz0S';
