/**
 * The `requestState` the gateway gives a 2026-07-28 agent with an input-required result, and
 * takes back on its retry (design §9: sampling, elicitation and roots across eras). It round-trips
 * through the agent, so it is sealed with authenticated encryption (AES-256-GCM, a key of this
 * gateway): the agent can neither read it (it may hold a child's own state) nor forge or alter it.
 * It is bound to the caller and the call it was issued for, expires quickly, and is accepted once.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { GatewayError } from '../errors.js';

/** What a sealed state says: whose call it continues, and how. */
export interface RequestStatePayload {
  /** The caller it was issued to (consumer and key): no other caller may continue the call. */
  readonly consumer: string;
  readonly keyId: string | null;
  /** The call it continues: method, routed target and a digest of its arguments. */
  readonly call: string;
  /** A legacy child's call that waits for the agent's answers (in this process). */
  readonly flow?: string | undefined;
  /** A 2026-07-28 child's own input-required state, passed back to it on the retry. */
  readonly childState?: string | undefined;
  /** Answers the gateway gave the child itself (configured roots), added to the agent's on the retry. */
  readonly answered?: Readonly<Record<string, unknown>> | undefined;
  /**
   * The replica holding `flow` (its MCP URL), when replicas share the key: a retry that reaches
   * another replica is forwarded there.
   */
  readonly replica?: string | undefined;
}

interface Sealed extends RequestStatePayload {
  readonly exp: number;
  readonly nonce: string;
}

/** Why a state was refused (for the audit log; the agent is told it is invalid or expired). */
export class RequestStateError extends Error {}

const VERSION = 'g1';

export class RequestStates {
  private readonly key: Buffer;
  /** Nonces already accepted, with their expiry: a state is good once. */
  private readonly used = new Map<string, number>();
  private swept = 0;
  /** This process's MCP URL as other replicas reach it; sealed into states that hold a flow. */
  replica: string | undefined;
  /**
   * Spends a nonce for every process sharing the key (the store): false when one of them already
   * did. Without it a state is good once per process.
   */
  spendShared: ((nonce: string, expiresAt: number) => Promise<boolean>) | undefined;

  constructor(
    private readonly ttlMs = 5 * 60_000,
    key: Buffer = randomBytes(32),
    private readonly now: () => number = Date.now,
  ) {
    if (key.length !== 32) throw new Error('the request-state key must be 32 bytes');
    this.key = key;
  }

  /** Seals a payload for the agent. */
  seal(payload: RequestStatePayload): string {
    const sealed: Sealed = {
      ...payload,
      ...(payload.flow !== undefined && this.replica !== undefined ? { replica: this.replica } : {}),
      exp: this.now() + this.ttlMs,
      nonce: randomBytes(12).toString('base64url'),
    };
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const body = Buffer.concat([cipher.update(JSON.stringify(sealed), 'utf8'), cipher.final()]);
    return [VERSION, iv.toString('base64url'), body.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
  }

  /**
   * Opens a state the agent sent back for `expected` (caller and call), and spends it. Throws
   * RequestStateError when it is not ours, altered, expired, for another caller or call, or used.
   */
  open(state: string, expected: Pick<RequestStatePayload, 'consumer' | 'keyId' | 'call'>): RequestStatePayload {
    const sealed = this.unseal(state);
    const now = this.now();
    if (!(sealed.exp > now)) throw new RequestStateError('expired');
    if (sealed.consumer !== expected.consumer || sealed.keyId !== expected.keyId) throw new RequestStateError('issued to another caller');
    if (sealed.call !== expected.call) throw new RequestStateError('issued for another call');
    this.sweep(now);
    if (this.used.has(sealed.nonce)) throw new RequestStateError('already used');
    this.used.set(sealed.nonce, sealed.exp);
    return sealed;
  }

  /**
   * `open`, and the state spent for every replica too (`spendShared`): a retry replayed to another
   * replica is refused as used.
   */
  async openOnce(state: string, expected: Pick<RequestStatePayload, 'consumer' | 'keyId' | 'call'>): Promise<RequestStatePayload> {
    const opened = this.open(state, expected) as Sealed;
    if (!this.spendShared) return opened;
    let fresh: boolean;
    try {
      fresh = await this.spendShared(opened.nonce, opened.exp);
    } catch (err) {
      // Not known to be unspent: refused (fail closed), the store named as the reason.
      throw new GatewayError('SERVER_UNAVAILABLE', `cannot check the requestState: the store is unavailable (${(err as Error).message})`);
    }
    if (!fresh) throw new RequestStateError('already used');
    return opened;
  }

  /**
   * The replica a state's call continues on, without spending the state: undefined when it is not
   * a valid state of these replicas or needs no particular one (the retry's own checks say why).
   */
  ownerOf(state: string): string | undefined {
    try {
      const sealed = this.unseal(state);
      return sealed.exp > this.now() ? sealed.replica : undefined;
    } catch {
      return undefined;
    }
  }

  private unseal(state: string): Sealed {
    const parts = state.split('.');
    if (parts.length !== 4 || parts[0] !== VERSION) throw new RequestStateError('not a state this gateway issued');
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(parts[1]!, 'base64url'));
      decipher.setAuthTag(Buffer.from(parts[3]!, 'base64url'));
      const text = Buffer.concat([decipher.update(Buffer.from(parts[2]!, 'base64url')), decipher.final()]).toString('utf8');
      return JSON.parse(text) as Sealed;
    } catch {
      throw new RequestStateError('altered, or sealed with another key');
    }
  }

  /** Forgets spent nonces whose states have expired anyway (at most once a second). */
  private sweep(now: number): void {
    if (now - this.swept < 1_000) return;
    this.swept = now;
    for (const [nonce, exp] of this.used) if (exp <= now) this.used.delete(nonce);
  }
}

/** What a state is bound to: the method, the routed target and a digest of the arguments. */
export function callBinding(method: string, server: string | null, name: string, args: unknown): string {
  const digest = createHash('sha256')
    .update(JSON.stringify(args ?? null))
    .digest('base64url');
  return `${method} ${server ?? ''} ${name} ${digest}`;
}
