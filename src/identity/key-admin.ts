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
export function issueKey(store: KeyStore, config: GatewayConfig, spec: NewKey, rotatedFrom: string | null = null): { record: KeyRecord; key: string } {
  const staticIds = new Set(config.auth.apiKeys.static.map((k) => k.id));
  let generated = generateKey();
  while (staticIds.has(generated.keyId) || store.get(generated.keyId)) generated = generateKey();
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
  store.insert(record);
  return { record, key: generated.key };
}

/** A new key with the old one's consumer, roles, limit and expiry; the old key is revoked. */
export function rotateKey(store: KeyStore, config: GatewayConfig, keyId: string): { record: KeyRecord; key: string; old: KeyRecord } {
  const old = store.get(keyId);
  if (!old) {
    const isStatic = config.auth.apiKeys.static.some((k) => k.id === keyId);
    throw new KeyAdminError(isStatic ? `key ${keyId} is defined in the config: change it there` : `no key ${keyId}`);
  }
  if (old.revokedAt) throw new KeyAdminError(`key ${keyId} was revoked at ${old.revokedAt}; create a new one instead`);
  return store.transaction(() => {
    const fresh = issueKey(store, config, { ...old, ratePerMinute: old.ratePerMinute }, old.id);
    store.revoke(old.id, new Date().toISOString());
    return { ...fresh, old };
  });
}
