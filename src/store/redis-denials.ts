import type { RedisClient } from '../util/redis.js';
import { type Denial, type DenialLog, decodeDenial, denialKey, encodeDenial } from './denial-log.js';

/*
 * Layout, under the store's prefix P (one hash tag: one slot on a Redis Cluster, one script):
 * - P {denials}    hash: rule key -> the rule (JSON).
 * - P {denials}:v  string: a counter bumped by every change.
 * Ended rules are deleted by the next put, in the same script (read, compare and delete in one
 * atomic step: a rule another gateway just wrote is never taken for an ended one).
 */
const PUT = `
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, rule = pcall(cjson.decode, all[i + 1])
  if not ok or type(rule) ~= 'table' or type(rule['until']) ~= 'number' or rule['until'] <= tonumber(ARGV[3]) then
    redis.call('HDEL', KEYS[1], all[i])
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('INCR', KEYS[2])
`;

const REMOVE = `
redis.call('HDEL', KEYS[1], ARGV[1])
return redis.call('INCR', KEYS[2])
`;

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
    await this.redis.eval(PUT, 2, this.hash, this.counter, denialKey(d), encodeDenial(d), String(Date.now()));
  }

  async remove(key: string): Promise<void> {
    await this.redis.eval(REMOVE, 2, this.hash, this.counter, key);
  }

  /** The rules in force (ended ones are left for the next put to delete). */
  async list(): Promise<Denial[]> {
    const all = await this.redis.hgetall(this.hash);
    const now = Date.now();
    const out: Denial[] = [];
    for (const text of Object.values(all)) {
      const d = decodeDenial(text);
      if (d !== undefined && d.until > now) out.push(d);
    }
    return out;
  }

  async version(): Promise<string> {
    return (await this.redis.get(this.counter)) ?? '0';
  }
}
