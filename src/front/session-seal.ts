/**
 * Sealed session ids (issue 14): a 2025-era agent's session id carries, encrypted and
 * authenticated (AES-256-GCM), what any replica needs to serve the session: who opened it, when,
 * and its `initialize` parameters. A replica that does not hold the session opens the id, checks it
 * belongs to the request's caller, and builds the session afresh by replaying that initialize. The
 * key comes from the shared store, so every replica on it opens every id; an id is useless without
 * its owner's credential (the owner is checked on every request), and a changed byte fails the tag.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';

export interface SealedSession {
  /** Who opened it (method, consumer, key id). */
  readonly owner: string;
  /** When it was opened (epoch ms). */
  readonly createdAt: number;
  /** The params of the `initialize` that opened it. */
  readonly initialize: Record<string, unknown>;
}

const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;

export class SessionSeal {
  private readonly key: Buffer;

  /** `secret`: 32 bytes shared by the replicas (Store.sharedSecret). */
  constructor(secret: Buffer) {
    this.key = Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), 'mcp-gateway session id v1', 32));
  }

  seal(session: SealedSession): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const plain = Buffer.from(JSON.stringify({ v: VERSION, o: session.owner, t: session.createdAt, i: session.initialize }));
    const body = Buffer.concat([cipher.update(plain), cipher.final()]);
    return Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url');
  }

  /** The sealed session, or undefined for an id this key did not seal (or one changed since). */
  open(id: string): SealedSession | undefined {
    if (id.length > 16_384 || !/^[A-Za-z0-9_-]+$/.test(id)) return undefined;
    const raw = Buffer.from(id, 'base64url');
    if (raw.length < IV_BYTES + TAG_BYTES + 2) return undefined;
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, IV_BYTES));
      decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
      const plain = Buffer.concat([decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]);
      const value = JSON.parse(plain.toString('utf8')) as { v?: unknown; o?: unknown; t?: unknown; i?: unknown };
      if (
        value.v !== VERSION ||
        typeof value.o !== 'string' ||
        typeof value.t !== 'number' ||
        typeof value.i !== 'object' ||
        value.i === null
      )
        return undefined;
      return { owner: value.o, createdAt: value.t, initialize: value.i as Record<string, unknown> };
    } catch {
      return undefined;
    }
  }
}

/** How an ended session is remembered in the store (not the id itself: it would open the session). */
export function sessionIdHash(id: string): string {
  return createHash('sha256').update(id).digest('base64url');
}
