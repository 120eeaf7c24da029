/**
 * JWT verification with jose (design §3): HS* from a secret, RS/PS/ES/EdDSA from a PEM key or a
 * JWKS URI (cached; an unknown `kid` triggers a refetch). `algorithms` is required and "none" is
 * never accepted; issuer, audience, expiry and not-before are checked with a small tolerance.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { JWTPayload, JWTVerifyGetKey } from 'jose';
import type { JwtConfig } from '../config/schema.js';
import type { Identity } from './identity.js';

export class JwtError extends Error {}

type Jose = typeof import('jose');
let jose: Promise<Jose> | undefined;
/** jose is loaded on the first verification, not at startup (most gateways use API keys). */
const loadJose = (): Promise<Jose> => (jose ??= import('jose'));

/** `auth.jwt.publicKey` cannot be used; the message says why (the caller adds file and path). */
export class JwtConfigError extends Error {}

export interface JwtVerifierOptions {
  /** Minimum time between two JWKS fetches caused by unknown `kid`s (jose's cooldown). */
  readonly jwksCooldownMs?: number;
}

export class JwtVerifier {
  /** The secret or public key; null for a JWKS, which is set up on the first verification. */
  private readonly key: Uint8Array | KeyObject | null;
  private jwks: JWTVerifyGetKey | undefined;

  constructor(
    private readonly config: JwtConfig,
    private readonly options: JwtVerifierOptions = {},
  ) {
    if (config.secret !== undefined) this.key = new TextEncoder().encode(config.secret);
    else if (config.publicKey !== undefined) {
      const inline = config.publicKey.includes('-----BEGIN');
      try {
        this.key = createPublicKey(inline ? config.publicKey : readFileSync(config.publicKey, 'utf8'));
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new JwtConfigError(
          e.code === 'ENOENT' ? `no such file ${config.publicKey}` : `is not a usable public key (${e.message.split('\n')[0]})`,
        );
      }
    } else this.key = null;
  }

  /** Verifies a token and maps its claims to an identity; throws JwtError with a one-line reason. */
  async verify(token: string): Promise<Identity> {
    const { createRemoteJWKSet, errors, jwtVerify } = await loadJose();
    const key =
      this.key ??
      (this.jwks ??= createRemoteJWKSet(new URL(this.config.jwksUri!), {
        cooldownDuration: this.options.jwksCooldownMs ?? 30_000,
        cacheMaxAge: 10 * 60_000,
        timeoutDuration: 5_000,
      }));
    let payload: JWTPayload;
    try {
      const verifyOptions = {
        algorithms: [...this.config.algorithms],
        clockTolerance: this.config.clockToleranceSec,
        requiredClaims: ['exp'],
        ...(this.config.issuer !== undefined ? { issuer: this.config.issuer } : {}),
        ...(this.config.audience !== undefined ? { audience: this.config.audience } : {}),
      };
      // jose's overloads differ only by key type; the key is one of the three it accepts.
      ({ payload } = await jwtVerify(token, key as Uint8Array, verifyOptions));
    } catch (err) {
      throw new JwtError(describeJoseError(err, errors));
    }
    const consumer = claimAt(payload, this.config.consumerClaim);
    if (typeof consumer !== 'string' || consumer === '') {
      throw new JwtError(`the token has no "${this.config.consumerClaim}" claim to identify the consumer`);
    }
    const rolesClaim = claimAt(payload, this.config.rolesClaim);
    const roles = Array.isArray(rolesClaim)
      ? rolesClaim.filter((r): r is string => typeof r === 'string' && r !== '')
      : typeof rolesClaim === 'string'
        ? rolesClaim.split(/[\s,]+/).filter(Boolean)
        : [];
    return Object.freeze({
      consumerId: consumer,
      keyId: null,
      method: 'jwt' as const,
      roles: Object.freeze(roles),
      claims: Object.freeze({ ...payload }),
      expiresAt: typeof payload.exp === 'number' ? payload.exp * 1000 + this.config.clockToleranceSec * 1000 : null,
    });
  }
}

/** Reads a claim by dotted path (`realm_access.roles`), own properties only. */
export function claimAt(claims: Readonly<Record<string, unknown>>, dotted: string): unknown {
  let value: unknown = claims;
  for (const part of dotted.split('.')) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, part)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

function describeJoseError(err: unknown, joseErrors: Jose['errors']): string {
  if (err instanceof joseErrors.JWTExpired) return 'the token has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `the token's "${err.claim}" claim is not accepted (${err.reason})`;
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'the token signature is not valid';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'the token is signed with an algorithm that is not in auth.jwt.algorithms';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'no key in the JWKS matches the token (kid)';
  if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid) return 'the token is not a valid JWT';
  if (err instanceof joseErrors.JWKSTimeout) return 'the JWKS could not be fetched in time';
  if (err instanceof joseErrors.JOSENotSupported) return 'the token uses an unsupported algorithm or key type';
  return `the token could not be verified (${(err as Error)?.message ?? String(err)})`;
}
