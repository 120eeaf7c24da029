/**
 * Making and replacing database keys (`keys create`, `keys rotate`). The key is returned once and
 * never stored: only its bcrypt hash is.
 */
import type { GatewayConfig } from '../config/schema.js';
import type { KeyRecord, KeyStore } from '../store/keys.js';
import { generateKey, hashKey } from './api-keys.js';

export interface NewKey {
  readonly name: string;
  readonly consumerId: string;
  readonly roles: readonly string[];
  readonly expiresAt: string | null;
  readonly ratePerMinute: number | null;
}

export class KeyAdminError extends Error {}

/** Creates a key; its id never collides with a static key of the config or an existing key. */
export async function issueKey(
  store: KeyStore,
  config: GatewayConfig,
  spec: NewKey,
  rotatedFrom: string | null = null,
): Promise<{ record: KeyRecord; key: string }> {
  const fresh = await prepareKey(store, config, spec, rotatedFrom);
  await store.insert(fresh.record);
  return fresh;
}

/** A new key and its record, not yet stored. bcrypt runs here, outside any database transaction. */
async function prepareKey(
  store: KeyStore,
  config: GatewayConfig,
  spec: NewKey,
  rotatedFrom: string | null,
): Promise<{ record: KeyRecord; key: string }> {
  const staticIds = new Set(config.auth.apiKeys.static.map((k) => k.id));
  let generated = generateKey();
  while (staticIds.has(generated.keyId) || (await store.get(generated.keyId))) generated = generateKey();
  const record: KeyRecord = {
    id: generated.keyId,
    name: spec.name,
    consumerId: spec.consumerId,
    roles: [...spec.roles],
    hash: hashKey(generated.key),
    createdAt: new Date().toISOString(),
    expiresAt: spec.expiresAt,
    revokedAt: null,
    disabled: false,
    ratePerMinute: spec.ratePerMinute,
    rateBurst: null,
    rotatedFrom,
  };
  return { record, key: generated.key };
}

/**
 * A new key with the old one's consumer, roles, limit and expiry; the old key is revoked. An
 * expired key is not rotated: its replacement would be born expired (create a new one instead).
 */
export async function rotateKey(
  store: KeyStore,
  config: GatewayConfig,
  keyId: string,
): Promise<{ record: KeyRecord; key: string; old: KeyRecord }> {
  const rotatable = (key: KeyRecord | undefined): KeyRecord => {
    if (!key) {
      const isStatic = config.auth.apiKeys.static.some((k) => k.id === keyId);
      throw new KeyAdminError(isStatic ? `key ${keyId} is defined in the config: change it there` : `no key ${keyId}`);
    }
    if (key.revokedAt) throw new KeyAdminError(`key ${keyId} was revoked at ${key.revokedAt}; create a new one instead`);
    if (key.expiresAt && Date.parse(key.expiresAt) <= Date.now()) {
      throw new KeyAdminError(`key ${keyId} expired at ${key.expiresAt}; create a new one instead`);
    }
    return key;
  };
  const old = rotatable(await store.get(keyId));
  // bcrypt (a quarter of a second) runs before the write lock is taken: gateways sharing the
  // database keep writing their audit rows meanwhile.
  const fresh = await prepareKey(store, config, { ...old, ratePerMinute: old.ratePerMinute }, old.id);
  // The old key is revoked only if it still is not, in the transaction that stores the new one:
  // of two rotations at once, one succeeds and the other says why it did not.
  if (!(await store.replace(fresh.record, old.id, new Date().toISOString()))) rotatable(await store.get(keyId));
  return { ...fresh, old };
}
