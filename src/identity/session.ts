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

/** How long a check done for a request stands for the pipeline's check of the same request. */
const VOUCHED_FOR_MS = 1_000;

export class Session implements SessionRef {
  constructor(
    readonly identity: Identity,
    private readonly check: CredentialCheck,
    /** The key's own rate limit, when it has one. */
    readonly rateLimit: { readonly perMinute: number; readonly burst?: number | undefined } | null = null,
  ) {}

  /** When the credential was just checked for this request (HTTP: by the bearer check), once. */
  private vouchedAt: number | undefined;

  /**
   * Says the credential was checked at `now` for the request this session serves: the next verify
   * within a second takes that answer instead of asking the key store again (on PostgreSQL, a
   * round trip saved per request).
   */
  vouch(now: number): void {
    this.vouchedAt = now;
  }

  /** The identity, if its credential is still valid; throws UNAUTHENTICATED otherwise. */
  verify(now = Date.now()): Identity | Promise<Identity> {
    const vouched = this.vouchedAt;
    this.vouchedAt = undefined;
    if (vouched !== undefined && now - vouched >= 0 && now - vouched < VOUCHED_FOR_MS) return this.identity;
    const pending = this.check(this.identity, now);
    return pending ? pending.then(() => this.identity) : this.identity;
  }
}
