/**
 * Who is calling (design §3). Established once per session (stdio: at startup) and re-checked on
 * every request for revocation, disabling and expiry.
 */
export type AuthMethod = 'api-key' | 'jwt' | 'anonymous';

export interface Identity {
  readonly consumerId: string;
  /** Key id for API keys (`gw_<keyId>_…`), null for JWT and anonymous callers. */
  readonly keyId: string | null;
  readonly method: AuthMethod;
  readonly roles: readonly string[];
  /** Verified JWT claims; empty for API keys and anonymous callers. */
  readonly claims: Readonly<Record<string, unknown>>;
  /** Epoch ms after which the credential is no longer valid, if it expires. */
  readonly expiresAt: number | null;
}

export const ANONYMOUS: Identity = Object.freeze({
  consumerId: 'anonymous',
  keyId: null,
  method: 'anonymous',
  roles: Object.freeze(['anonymous']),
  claims: Object.freeze({}),
  expiresAt: null,
});
