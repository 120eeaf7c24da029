/**
 * The secret values the gateway knows at startup, to redact everywhere (design §8): every value
 * injected into a child's `env`, the audit HMAC key, the JWT secret and plain static keys.
 */
import type { GatewayConfig } from '../config/schema.js';
import type { Secret } from './redactor.js';

export class MissingSecretError extends Error {}

export interface GatewaySecrets {
  readonly values: readonly Secret[];
  /** The audit chain's HMAC key, when `audit.hmacKeyEnv` is set. */
  readonly hmacKey: Buffer | null;
}

export function gatewaySecrets(config: GatewayConfig, env: NodeJS.ProcessEnv): GatewaySecrets {
  const values: Secret[] = [];
  for (const server of config.servers) {
    for (const [name, value] of Object.entries(server.env)) values.push({ name, value });
  }
  let hmacKey: Buffer | null = null;
  const keyEnv = config.audit.hmacKeyEnv;
  if (config.audit.enabled && config.audit.hashChain && keyEnv !== undefined) {
    const value = env[keyEnv];
    if (!value) {
      // Writing a plain SHA-256 chain when an HMAC chain was asked for would weaken it silently.
      throw new MissingSecretError(`audit.hmacKeyEnv: ${keyEnv} is not set (the audit chain needs its HMAC key)`);
    }
    if (value.length < 16) throw new MissingSecretError(`audit.hmacKeyEnv: ${keyEnv} must be at least 16 characters`);
    hmacKey = Buffer.from(value, 'utf8');
    values.push({ name: keyEnv, value });
  }
  if (config.auth.jwt?.secret) values.push({ name: 'auth.jwt.secret', value: config.auth.jwt.secret });
  config.auth.apiKeys.static.forEach((k) => {
    if (k.key) values.push({ name: `auth.apiKeys.static.${k.id}`, value: k.key });
  });
  return { values, hmacKey };
}
