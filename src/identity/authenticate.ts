/**
 * Establishes who a session is (design §3), once per session, and builds the per-request check
 * that notices revocation, disabling, rotation and expiry. For stdio the credential is read from
 * the `serve` process's environment: MCP_GATEWAY_API_KEY (an API key) or MCP_GATEWAY_TOKEN (a JWT).
 */
import type { GatewayConfig, StaticKeyConfig } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import type { KeyState, KeyStore } from '../store/keys.js';
import { DUMMY_HASH, keyEqualsPlain, keyMatchesHash, parseKey } from './api-keys.js';
import { ANONYMOUS, type Identity } from './identity.js';
import { JwtError, JwtVerifier } from './jwt.js';
import type { CredentialCheck } from './session.js';

export const API_KEY_ENV = 'MCP_GATEWAY_API_KEY';
export const TOKEN_ENV = 'MCP_GATEWAY_TOKEN';
const BEARER = 'the bearer token';

/** The credential was missing or not accepted; `message` is one line that says what to set. */
export class AuthError extends Error {
  constructor(message: string) {
    // `serve` prints it as its one line on stderr, whatever a library put in the text.
    super(message.replace(/\s*[\r\n]+\s*/g, ' ').trim());
  }
}

export interface Authenticated {
  readonly identity: Identity;
  readonly check: CredentialCheck;
  /** Per-key rate limit override (`--rate` / `rateLimit` of a static key). */
  readonly rateLimit: { readonly perMinute: number; readonly burst?: number | undefined } | null;
}

/** The credential in the environment, known before it is verified, to redact from the start. */
export function credentialSecret(env: NodeJS.ProcessEnv): { name: string; value: string }[] {
  return [API_KEY_ENV, TOKEN_ENV].flatMap((name) => {
    const value = env[name]?.trim();
    return value ? [{ name, value }] : [];
  });
}

export async function authenticate(
  config: GatewayConfig,
  keys: KeyStore,
  env: NodeJS.ProcessEnv,
  jwtVerifier?: JwtVerifier,
): Promise<Authenticated> {
  const apiKey = env[API_KEY_ENV]?.trim() || undefined;
  const token = env[TOKEN_ENV]?.trim() || undefined;
  if (apiKey && token) throw new AuthError(`set only one of ${API_KEY_ENV} and ${TOKEN_ENV}`);
  if (apiKey) return authenticateKey(apiKey, config, keys, API_KEY_ENV);
  if (token) return authenticateToken(token, config, jwtVerifier, TOKEN_ENV);
  if (config.auth.anonymous) return { identity: ANONYMOUS, check: () => {}, rateLimit: null };
  throw new AuthError(
    `no credential: set ${API_KEY_ENV} to a key from \`mcp-gateway keys create\`` +
      (config.auth.jwt ? ` or ${TOKEN_ENV} to a JWT` : '') +
      ' in the environment of `mcp-gateway serve` (the "env" of its Claude Desktop entry)',
  );
}

/**
 * An HTTP request's bearer credential (design §12): a gateway key (`gw_…`) or, with auth.jwt, a
 * JWT. Messages name "the bearer token", never the token.
 */
export function authenticateBearer(
  token: string,
  config: GatewayConfig,
  keys: KeyStore,
  jwtVerifier?: JwtVerifier,
): Promise<Authenticated> {
  if (token.startsWith('gw_') || !config.auth.jwt) return authenticateKey(token, config, keys, BEARER);
  return authenticateToken(token, config, jwtVerifier, BEARER);
}

/** `source` names where the credential came from, for messages (an environment variable, the bearer token). */
async function authenticateKey(key: string, config: GatewayConfig, keys: KeyStore, source: string): Promise<Authenticated> {
  const parsed = parseKey(key);
  if (!parsed) throw new AuthError(`${source} is not a gateway key (expected gw_<keyId>_<secret>)`);
  const now = Date.now();

  const fromConfig = config.auth.apiKeys.static.find((k) => k.id === parsed.keyId);
  if (fromConfig) {
    const matches = fromConfig.hash !== undefined ? await keyMatchesHash(key, fromConfig.hash) : keyEqualsPlain(key, fromConfig.key!);
    if (!matches)
      throw new AuthError(source === BEARER ? `${source} is not a valid gateway key` : `${source} does not match key ${parsed.keyId}`);
    checkStatic(fromConfig, now, (m) => new AuthError(m));
    return {
      identity: freezeIdentity(fromConfig.consumerId, fromConfig.id, fromConfig.roles, fromConfig.expiresAt ?? null),
      check: (_identity, at) => checkStatic(fromConfig, at, (m) => new GatewayError('UNAUTHENTICATED', m)),
      rateLimit: fromConfig.rateLimit ?? null,
    };
  }

  const record = await keys.get(parsed.keyId);
  // Compare against something even for an unknown id, so response time does not reveal which ids exist.
  const matches = await keyMatchesHash(key, record?.hash ?? DUMMY_HASH);
  // Over HTTP anyone may try: an unknown key id and a wrong secret read the same (no id oracle).
  if (source === BEARER && (!record || !matches)) throw new AuthError(`${source} is not a valid gateway key`);
  if (!record) throw new AuthError(`${source}: no key ${parsed.keyId} (see \`mcp-gateway keys list\`)`);
  if (!matches) throw new AuthError(`${source} does not match key ${parsed.keyId}`);
  const hashAtStart = record.hash;
  const judge = (state: KeyState | undefined, at: number, fail: (m: string) => Error) => {
    if (!state) throw fail(`key ${record.id} no longer exists`);
    if (state.revokedAt) throw fail(`key ${record.id} was revoked at ${state.revokedAt}`);
    if (state.disabled) throw fail(`key ${record.id} is disabled`);
    if (state.hash !== hashAtStart) throw fail(`key ${record.id} was replaced`);
    if (state.expiresAt && at >= Date.parse(state.expiresAt)) throw fail(`key ${record.id} expired at ${state.expiresAt}`);
  };
  // Synchronous where the store is (SQLite); a query on every request where it is shared (PostgreSQL).
  const check = (at: number, fail: (m: string) => Error): void | Promise<void> => {
    const state = keys.state(record.id);
    if (state instanceof Promise)
      return state.then(
        (s) => judge(s, at, fail),
        (err: Error) => storeUnavailable(err),
      );
    judge(state, at, fail);
  };
  await check(now, (m) => new AuthError(m));
  return {
    identity: freezeIdentity(record.consumerId, record.id, record.roles, record.expiresAt),
    check: (_identity, at) => check(at, (m) => new GatewayError('UNAUTHENTICATED', `${m}; ask for a new key`)),
    rateLimit: record.ratePerMinute !== null ? { perMinute: record.ratePerMinute, burst: record.rateBurst ?? undefined } : null,
  };
}

async function authenticateToken(
  token: string,
  config: GatewayConfig,
  verifier: JwtVerifier | undefined,
  source: string,
): Promise<Authenticated> {
  if (!config.auth.jwt) throw new AuthError(`${source} is set but auth.jwt is not configured`);
  let identity: Identity;
  try {
    identity = await (verifier ?? new JwtVerifier(config.auth.jwt)).verify(token);
  } catch (err) {
    if (err instanceof JwtError) throw new AuthError(`${source}: ${err.message}`);
    throw err;
  }
  return {
    identity,
    check: (id, at) => {
      if (id.expiresAt !== null && at >= id.expiresAt) {
        throw new GatewayError('UNAUTHENTICATED', `the token expired at ${new Date(id.expiresAt).toISOString()}; get a new one`);
      }
    },
    rateLimit: null,
  };
}

/** The key store could not be asked: the request is refused (fail closed), saying why. */
function storeUnavailable(err: Error): never {
  throw new GatewayError('SERVER_UNAVAILABLE', `cannot check the key: the key store is unavailable (${err.message})`);
}

function checkStatic(key: StaticKeyConfig, at: number, fail: (m: string) => Error): void {
  if (!key.enabled) throw fail(`key ${key.id} is disabled in the config`);
  if (key.expiresAt && at >= Date.parse(key.expiresAt)) throw fail(`key ${key.id} expired at ${key.expiresAt}`);
}

function freezeIdentity(consumerId: string, keyId: string, roles: readonly string[], expiresAt: string | null): Identity {
  return Object.freeze({
    consumerId,
    keyId,
    method: 'api-key' as const,
    roles: Object.freeze([...roles]),
    claims: Object.freeze({}),
    expiresAt: expiresAt ? Date.parse(expiresAt) : null,
  });
}
