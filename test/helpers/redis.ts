/**
 * The machine's Redis for tests (127.0.0.1:6379, or REDIS_URL): whether it answers, a key prefix
 * of the run's own, and deleting that prefix's keys afterwards. Suites that need Redis skip, with
 * a message naming it, where none answers.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { Redis } from 'ioredis';

export const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';

/** A prefix no other run uses. */
export function redisPrefix(kind: string): string {
  return `mcpgw-${kind}-${process.pid}-${randomBytes(4).toString('hex')}:`;
}

/** Whether Redis answers at REDIS_URL (within 1 s); warns naming it when not. */
export async function redisAnswers(suite: string): Promise<boolean> {
  const up = await new Promise<boolean>((resolve) => {
    const url = new URL(REDIS_URL);
    const socket = connect(Number(url.port || 6379), url.hostname, () => {
      socket.end();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
    socket.setTimeout(1_000, () => {
      socket.destroy();
      resolve(false);
    });
  });
  if (!up) console.warn(`[${suite}] skipped: no Redis answers at ${REDIS_URL} (set REDIS_URL, or start redis-server)`);
  return up;
}

/** Deletes every key under `prefix`. */
export async function dropRedisPrefix(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL);
  try {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
  } finally {
    await redis.quit();
  }
}
