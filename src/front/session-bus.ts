/**
 * Messages for 2025-era agents' GET streams across replicas (issue 14), over Redis pub/sub. A
 * notification a session's front sends outside any request (a resource update, a list change, a
 * log message) goes on the agent's GET stream, which may be open to another replica. With `redis`
 * configured, such notifications are published on the session's channel, and the replica that
 * holds the GET stream (subscribed while it is open) writes them to it. Without Redis they stay
 * in the process, as before. Delivery is at most once, like the stream itself.
 */
import { Redis } from 'ioredis';
import type { GatewayConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { sessionIdHash } from './session-seal.js';

type Deliver = (message: unknown) => void;

export class SessionBus {
  private readonly pub: Redis;
  private readonly sub: Redis;
  private readonly prefix: string;
  /** Channel → the GET streams of this process that listen on it. */
  private readonly listeners = new Map<string, Set<Deliver>>();

  constructor(
    redis: NonNullable<GatewayConfig['redis']>,
    private readonly log: Logger,
  ) {
    const options = { enableOfflineQueue: true, maxRetriesPerRequest: 1, lazyConnect: false, connectTimeout: redis.timeoutMs };
    this.pub = new Redis(redis.url, options);
    this.sub = new Redis(redis.url, options);
    for (const client of [this.pub, this.sub]) client.on('error', (err: Error) => this.log.debug(`session bus: ${err.message}`));
    this.prefix = `${redis.keyPrefix}session:`;
    this.sub.on('message', (channel: string, text: string) => {
      const targets = this.listeners.get(channel);
      if (!targets) return;
      let message: unknown;
      try {
        message = JSON.parse(text);
      } catch {
        return;
      }
      for (const deliver of targets) deliver(message);
    });
  }

  private channel(sessionId: string): string {
    return `${this.prefix}${sessionIdHash(sessionId)}`;
  }

  /** Sends a message to the session's GET stream, wherever it is open. */
  publish(sessionId: string, message: unknown): Promise<void> {
    return this.pub.publish(this.channel(sessionId), JSON.stringify(message)).then(
      () => {},
      (err: Error) => this.log.warn(`could not pass a notification to a session's stream (Redis: ${err.message})`),
    );
  }

  /** Delivers the session's messages to `deliver` until the returned function is called (the GET stream closed). */
  listen(sessionId: string, deliver: Deliver): () => void {
    const channel = this.channel(sessionId);
    let set = this.listeners.get(channel);
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
      this.sub
        .subscribe(channel)
        .catch((err: Error) => this.log.warn(`could not listen for a session's notifications (Redis: ${err.message})`));
    }
    set.add(deliver);
    return () => {
      const current = this.listeners.get(channel);
      if (!current?.delete(deliver) || current.size > 0) return;
      this.listeners.delete(channel);
      this.sub.unsubscribe(channel).catch(() => {});
    };
  }

  async close(): Promise<void> {
    this.listeners.clear();
    await Promise.all([this.pub.quit().catch(() => {}), this.sub.quit().catch(() => {})]);
  }
}
