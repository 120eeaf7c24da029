/**
 * An agent's session: the identity established when it connected (stdio: at `serve` startup), and
 * the check that confirms, on every request, that the credential behind it is still valid
 * (not revoked, disabled or expired: design §3).
 */
import type { Identity } from './identity.js';
import type { SessionRef } from '../pipeline/context.js';

/**
 * Throws (or rejects with) GatewayError UNAUTHENTICATED when the credential is no longer valid at
 * `now`; asynchronous only when the key store is (PostgreSQL).
 */
export type CredentialCheck = (identity: Identity, now: number) => void | Promise<void>;

export class Session implements SessionRef {
  constructor(
    readonly identity: Identity,
    private readonly check: CredentialCheck,
    /** The key's own rate limit, when it has one. */
    readonly rateLimit: { readonly perMinute: number; readonly burst?: number | undefined } | null = null,
  ) {}

  /** The identity, if its credential is still valid; throws UNAUTHENTICATED otherwise. */
  verify(now = Date.now()): Identity | Promise<Identity> {
    const pending = this.check(this.identity, now);
    return pending ? pending.then(() => this.identity) : this.identity;
  }
}
