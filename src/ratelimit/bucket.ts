/**
 * A token bucket refilled continuously (design §5): `perMinute / 60` tokens a second, holding at
 * most `burst`. Time is passed in (milliseconds, monotonic), so the bucket is pure and testable.
 */
const TOLERANCE = 1e-9;

export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly perMs: number;

  constructor(
    readonly perMinute: number,
    readonly burst: number,
    now: number,
  ) {
    this.perMs = perMinute / 60_000;
    this.tokens = burst;
    this.last = now;
  }

  /** Tokens available at `now` (after refill). */
  available(now: number): number {
    this.refill(now);
    return this.tokens;
  }

  /** Milliseconds until one token is available (0 if one is now). */
  waitMs(now: number): number {
    this.refill(now);
    // The tolerance absorbs floating-point error: after waiting exactly the time promised, the
    // refill may come to 0.9999999999 of a token, and the call must then be admitted.
    // Aim at the middle of the band, so the promised wait still admits after rounding.
    return this.tokens >= 1 - TOLERANCE ? 0 : Math.ceil((1 - TOLERANCE / 2 - this.tokens) / this.perMs);
  }

  /** Takes one token; the caller checked `waitMs(now) === 0` first. */
  take(now: number): void {
    this.refill(now);
    this.tokens -= 1;
  }

  /** True when the bucket is full again: it can be dropped and made anew without changing anything. */
  isFull(now: number): boolean {
    return this.available(now) >= this.burst;
  }

  private refill(now: number): void {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + (now - this.last) * this.perMs);
      this.last = now;
    }
  }
}
