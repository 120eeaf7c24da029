/**
 * The credential of each HTTP request (design §12): verified through the same code as stdio's,
 * once per credential per process (bcrypt and JWT signatures are not paid per request), and
 * checked again on every request, so revocation, disabling and expiry act on the next one.
 */
import { createHash } from 'node:crypto';
import type { GatewayConfig } from '../config/schema.js';
import type { KeyStore } from '../store/keys.js';
import { AuthError, authenticateBearer, type Authenticated } from './authenticate.js';
import type { JwtVerifier } from './jwt.js';
import { Session } from './session.js';

/** Credentials remembered (accepted or refused) at most; the oldest go first. */
const MAX_REMEMBERED = 10_000;
/** A refused credential is refused from memory this long (no bcrypt for a token tried again). */
const REFUSED_FOR_MS = 60_000;

export interface BearerOptions {
  /** The gateway's resource URL (http.publicUrl): a JWT must name it in `aud` (RFC 8707). */
  readonly resource?: string | undefined;
}

interface Remembered {
  readonly verdict: Promise<Authenticated>;
  readonly at: number;
}

export class BearerVerifier {
  /** By SHA-256 of the credential: the credential itself is not kept. */
  private readonly remembered = new Map<string, Remembered>();

  constructor(
    private readonly config: GatewayConfig,
    private readonly keys: KeyStore,
    private readonly jwt: JwtVerifier | undefined,
    private readonly options: BearerOptions = {},
  ) {}

  /**
   * The session of a request's credential, valid now; throws AuthError (one line, never the
   * credential) when it is not.
   */
  async verify(credential: string, now = Date.now()): Promise<Session> {
    const digest = createHash('sha256').update(credential).digest('base64url');
    let entry = this.remembered.get(digest);
    if (entry && entry.at + REFUSED_FOR_MS < now) {
      // Accepted ones stay (their check runs each time); refused ones are tried again after a while.
      const refused = await entry.verdict.then(
        () => false,
        () => true,
      );
      if (refused) {
        this.remembered.delete(digest);
        entry = undefined;
      }
    }
    if (!entry) {
      entry = { verdict: this.authenticate(credential), at: now };
      entry.verdict.catch(() => {});
      if (this.remembered.size >= MAX_REMEMBERED) this.remembered.delete(this.remembered.keys().next().value!);
      this.remembered.set(digest, entry);
    }
    const auth = await entry.verdict;
    const session = new Session(auth.identity, auth.check, auth.rateLimit);
    try {
      await session.verify(now);
    } catch (err) {
      if ((err as { code?: unknown }).code === 'SERVER_UNAVAILABLE') throw err;
      // Revoked, disabled, replaced or expired since: verified afresh next time (and refused then).
      this.remembered.delete(digest);
      throw new AuthError((err as Error).message);
    }
    // Checked for this request: the pipeline's identify stage does not ask the key store again.
    session.vouch(now);
    return session;
  }

  private async authenticate(credential: string): Promise<Authenticated> {
    const auth = await authenticateBearer(credential, this.config, this.keys, this.jwt);
    const resource = this.options.resource;
    if (resource !== undefined && auth.identity.method === 'jwt') {
      const aud = auth.identity.claims['aud'];
      const audiences = Array.isArray(aud) ? aud : [aud];
      if (!audiences.some((a) => typeof a === 'string' && sameResource(a, resource)))
        throw new AuthError(`the bearer token was not issued for this resource (its "aud" must include ${resource})`);
    }
    return auth;
  }
}

/** Resource URLs compared as RFC 8707 does in practice: a trailing slash does not matter. */
function sameResource(a: string, b: string): boolean {
  return a.replace(/\/+$/, '') === b.replace(/\/+$/, '');
}
