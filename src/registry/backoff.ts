/**
 * When to restart a child that exited (design §8): exponential backoff with jitter, and a limit of
 * `maxRestarts` within `windowMs` after which the server is marked failed.
 */
import type { ServerConfig } from '../config/schema.js';

export type RestartPolicy = ServerConfig['restart'];

export type RestartDecision = { readonly restart: true; readonly delayMs: number } | { readonly restart: false };

export class RestartTracker {
  private readonly times: number[] = [];

  constructor(
    private readonly policy: RestartPolicy,
    private readonly random: () => number = Math.random,
  ) {}

  /** Restarts counted in the current window. */
  recent(now: number): number {
    this.prune(now);
    return this.times.length;
  }

  /** Called when the child ended unexpectedly at `now`: restart it (after a delay), or give up. */
  onExit(now: number): RestartDecision {
    this.prune(now);
    if (this.times.length >= this.policy.maxRestarts) return { restart: false };
    const exp = Math.min(this.policy.maxBackoffMs, this.policy.backoffMs * 2 ** this.times.length);
    this.times.push(now);
    // "Equal jitter": half fixed, half random, so restarts of many gateways do not align.
    return { restart: true, delayMs: Math.round(exp / 2 + (this.random() * exp) / 2) };
  }

  private prune(now: number): void {
    while (this.times.length > 0 && now - this.times[0]! >= this.policy.windowMs) this.times.shift();
  }
}
