import type { RedisClient } from '../util/redis.js';
import { decodeSession, encodeSession, type SessionLog, type StoredSession } from './session-log.js';

/*
 * Layout, under the store's prefix P (single keys: no hash tag needed on a Redis Cluster):
 * - P sess:<id>         string: a dropped session, with the resume window as its expiry.
 * - P state:<name> string: what a gateway left for its next run as it stopped, with an expiry.
 * Bounded by the expiries and by each gateway's own bounds (a session it pushes out is deleted).
 */
export class RedisSessions implements SessionLog {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  async save(sessions: readonly StoredSession[], ttlMs: number): Promise<void> {
    const px = Math.max(1, Math.ceil(ttlMs));
    await Promise.all(
      sessions.map((s) => this.redis.set(`${this.prefix}sess:${s.id}`, encodeSession(s), 'PX', px)),
    );
  }

  async take(id: string): Promise<StoredSession | undefined> {
    const text = await this.redis.getdel(`${this.prefix}sess:${id}`);
    return text === null ? undefined : decodeSession(id, text);
  }

  async remove(ids: readonly string[]): Promise<void> {
    await Promise.all(ids.map((id) => this.redis.del(`${this.prefix}sess:${id}`)));
  }

  async putState(name: string, snapshot: Uint8Array, ttlMs: number): Promise<void> {
    await this.redis.set(
      `${this.prefix}state:${name}`,
      Buffer.from(snapshot.buffer, snapshot.byteOffset, snapshot.length),
      'PX',
      Math.max(1, Math.ceil(ttlMs)),
    );
  }

  async takeState(name: string): Promise<Uint8Array | undefined> {
    const b = await this.redis.getdelBuffer(`${this.prefix}state:${name}`);
    return b === null ? undefined : new Uint8Array(b);
  }
}
