import type { RedisClient } from '../util/redis.js';
import { type Denial, type DenialLog, decodeDenial, denialKey, encodeDenial } from './denial-log.js';

/*
 * Layout, under the store's prefix P (one hash tag: one slot on a Redis Cluster, one script):
 * - P {denials}       hash: rule key -> the rule (JSON).
 * - P {denials}:ends  sorted set: rule key by its end (ms), so ended rules are found in O(log n).
 * - P {denials}:v     string: a counter bumped by every change.
 * The put deletes the rules that ended and merges a "before" rule with the one there (the later
 * time and end), in one atomic script: a rule another gateway just wrote is never lost.
 */
const PUT = `
local ended = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
for _, key in ipairs(ended) do
  redis.call('HDEL', KEYS[1], key)
  redis.call('ZREM', KEYS[2], key)
end
local rule = cjson.decode(ARGV[2])
if rule['kind'] == 'before' then
  local had = redis.call('HGET', KEYS[1], ARGV[1])
  if had then
    local ok, old = pcall(cjson.decode, had)
    if ok and type(old) == 'table' and old['kind'] == 'before' then
      if old['before'] > rule['before'] then rule['before'] = old['before'] end
      if old['until'] > rule['until'] then rule['until'] = old['until'] end
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rule))
redis.call('ZADD', KEYS[2], rule['until'], ARGV[1])
return redis.call('INCR', KEYS[3])
`;

const REMOVE = `
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('INCR', KEYS[3])
`;

export class RedisDenials implements DenialLog {
  private readonly hash: string;
  private readonly ends: string;
  private readonly counter: string;

  constructor(
    private readonly redis: RedisClient,
    prefix: string,
  ) {
    this.hash = `${prefix}{denials}`;
    this.ends = `${prefix}{denials}:ends`;
    this.counter = `${prefix}{denials}:v`;
  }

  async put(d: Denial): Promise<void> {
    await this.redis.eval(
      PUT,
      3,
      this.hash,
      this.ends,
      this.counter,
      denialKey(d),
      encodeDenial(d),
      String(Date.now()),
    );
  }

  async remove(key: string): Promise<void> {
    await this.redis.eval(REMOVE, 3, this.hash, this.ends, this.counter, key);
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
