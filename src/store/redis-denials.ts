import type { RedisClient } from '../util/redis.js';
import type { Denial } from './denial-log.js';
import { type DenialLog, decodeDenial, denialKey, encodeDenial } from './denial-log.js';

/*
 * Layout, under the store's prefix P (one hash tag: one slot on a Redis Cluster, one MULTI):
 * - P {denials}    hash: rule key -> the rule (JSON); ended rules are deleted as they are listed.
 * - P {denials}:v  string: a counter bumped by every change.
 */
export class RedisDenials implements DenialLog {
  private readonly hash: string;
  private readonly counter: string;

  constructor(
    private readonly redis: RedisClient,
    prefix: string,
  ) {
    this.hash = `${prefix}{denials}`;
    this.counter = `${prefix}{denials}:v`;
  }

  async put(d: Denial): Promise<void> {
    await this.redis.multi().hset(this.hash, denialKey(d), encodeDenial(d)).incr(this.counter).exec();
  }

  async remove(key: string): Promise<void> {
    await this.redis.multi().hdel(this.hash, key).incr(this.counter).exec();
  }

  async list(): Promise<Denial[]> {
    const all = await this.redis.hgetall(this.hash);
    const now = Date.now();
    const out: Denial[] = [];
    const ended: string[] = [];
    for (const [key, text] of Object.entries(all)) {
      const d = decodeDenial(text);
      if (d === undefined || d.until <= now) ended.push(key);
      else out.push(d);
    }
    if (ended.length > 0) await this.redis.hdel(this.hash, ...ended);
    return out;
  }

  async version(): Promise<string> {
    return (await this.redis.get(this.counter)) ?? '0';
  }
}
