import type { ChainableCommander } from 'ioredis';
import { Packr } from 'msgpackr';
import { createRedis, fnv1a, parseRedisSpec, quitRedis, type RedisClient, redisHost } from '../util/redis.js';
import { DEFAULT_DEDUPE_WINDOW, DEFAULT_MAX_DEAD_LETTERS, DEFAULT_MAX_PER_USER } from './memory-store.js';
import type {
  DeadLetter,
  DeadReason,
  MessageStore,
  NewMessage,
  StoredMessage,
  StoreOptions,
  StoreStats,
} from './store.js';

/*
 * Layout (P = the prefix, default "pylon:"):
 * - P seq:{user}    string: the user's last seq (INCR); never deleted, so seqs are never reused.
 * - P order:{user}  sorted set: member = seq, score = seq (the unacked seqs, in order).
 * - P inbox:{user}  hash: seq -> the encoded message.
 * - P expiry        sorted set over all users: member = "{seq}:{user}", score = expiresAt.
 * - P dead          list, newest first (LPUSH, LTRIM to maxDeadLetters): each entry is a JSON
 *                   header [user, seq, reason, deadAt] (strings), a newline, the encoded message.
 * - P stats         hash: messages (in inboxes), dead (moved aside, ever).
 * - P ids:{user}    sorted set: member = message id, score = seq, the user's last `dedupeWindow`
 *                   appends: an append of an id the user already got returns that seq and
 *                   stores nothing (so a command re-sent after a reconnection, or one push
 *                   appended by several gateways holding the user, gives one seq).
 * A message is encoded once per push with msgpackr (useRecords: false) as
 * { id, type, data, createdAt, expiresAt }: JSON values and Uint8Array data (MessagePack bin)
 * round-trip; the seq lives in the keys. The Lua scripts never decode it.
 *
 * Every per-user step is one Lua script (atomic); the scripts of one `append` are pipelined, so a
 * batch is one round trip but not one transaction across users.
 *
 * On a Redis Cluster, users are spread over `buckets` buckets (FNV-1a of the user id, default
 * 64) and every key above is under a per-bucket prefix with a hash tag, P{b<n>}: (e.g.
 * pylon:{b17}:seq:alice): each bucket, with its own expiry, stats and dead keys, is one slot,
 * so every script touches one slot and the buckets spread over the shards. `expire`, `stats`
 * and `deadLetters` visit every bucket. The count is kept in P{b0}:buckets and a store opened
 * with another count is refused (users would move between buckets). A standalone Redis keeps
 * the layout above unchanged (one bucket, prefix P).
 * Durability is Redis's: with appendonly yes and appendfsync everysec, a crash of Redis (not of
 * this process) can lose the last second of appends.
 */

/** moveAside(order, inbox, expiry, stats, dead, user, seq, reason, now, maxDead) -> 0 or 1 */
const MOVE_ASIDE = `
local function moveAside(order, inbox, expiry, stats, dead, user, seq, reason, now, maxDead)
  local val = redis.call('HGET', inbox, seq)
  if not val then return 0 end
  redis.call('HDEL', inbox, seq)
  redis.call('ZREM', order, seq)
  redis.call('ZREM', expiry, seq .. ':' .. user)
  if maxDead > 0 then
    redis.call('LPUSH', dead, cjson.encode({user, seq, reason, now}) .. '\\n' .. val)
    redis.call('LTRIM', dead, 0, maxDead - 1)
  end
  redis.call('HINCRBY', stats, 'messages', -1)
  redis.call('HINCRBY', stats, 'dead', 1)
  return 1
end
`;

const SCRIPTS = {
  /** KEYS: seq order inbox expiry stats dead ids; ARGV: user packed expiresAt createdAt maxPerUser maxDead id window */
  pylonAppend: {
    numberOfKeys: 7,
    lua: `${MOVE_ASIDE}
local had = redis.call('ZSCORE', KEYS[7], ARGV[7])
if had then return tonumber(had) end
local seq = tostring(redis.call('INCR', KEYS[1]))
local user = ARGV[1]
redis.call('ZADD', KEYS[7], seq, ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', tonumber(seq) - tonumber(ARGV[8]))
redis.call('ZADD', KEYS[2], seq, seq)
redis.call('HSET', KEYS[3], seq, ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], seq .. ':' .. user)
redis.call('HINCRBY', KEYS[5], 'messages', 1)
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if over > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do
    moveAside(KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], user, old, 'overflow', ARGV[4], tonumber(ARGV[6]))
  end
end
return tonumber(seq)`,
  },
  /** KEYS: order inbox expiry; ARGV: user afterSeq limit now -> [seq, packed, seq, packed, ...] */
  pylonPending: {
    numberOfKeys: 3,
    readOnly: true,
    lua: `
local user, limit, now = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local out, n, from = {}, 0, '(' .. ARGV[2]
while n < limit do
  local seqs = redis.call('ZRANGEBYSCORE', KEYS[1], from, '+inf', 'LIMIT', 0, limit - n)
  if #seqs == 0 then break end
  for _, s in ipairs(seqs) do
    local exp = redis.call('ZSCORE', KEYS[3], s .. ':' .. user)
    if not exp or tonumber(exp) >= now then
      out[#out + 1] = s
      out[#out + 1] = redis.call('HGET', KEYS[2], s)
      n = n + 1
    end
  end
  from = '(' .. seqs[#seqs]
end
return out`,
  },
  /** KEYS: order inbox expiry stats; ARGV: user uptoSeq -> removed */
  pylonAck: {
    numberOfKeys: 4,
    lua: `
local user = ARGV[1]
local seqs = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local n = #seqs
if n == 0 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
for i = 1, n, 1000 do
  local fields, members = {}, {}
  for j = i, math.min(i + 999, n) do
    fields[#fields + 1] = seqs[j]
    members[#members + 1] = seqs[j] .. ':' .. user
  end
  redis.call('HDEL', KEYS[2], unpack(fields))
  redis.call('ZREM', KEYS[3], unpack(members))
end
redis.call('HINCRBY', KEYS[4], 'messages', -n)
return n`,
  },
  /** KEYS: order inbox expiry stats dead; ARGV: user seq reason now maxDead -> 0 or 1 */
  pylonBury: {
    numberOfKeys: 5,
    lua: `${MOVE_ASIDE}
return moveAside(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]))`,
  },
  /** KEYS: expiry stats dead; ARGV: prefix now maxDead batch -> members looked at */
  pylonExpire: {
    numberOfKeys: 3,
    lua: `${MOVE_ASIDE}
local p, now, maxDead = ARGV[1], ARGV[2], tonumber(ARGV[3])
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[4]))
local moved = 0
for _, m in ipairs(members) do
  local i = string.find(m, ':', 1, true)
  local seq, user = string.sub(m, 1, i - 1), string.sub(m, i + 1)
  local n = moveAside(p .. 'order:' .. user, p .. 'inbox:' .. user, KEYS[1], KEYS[2], KEYS[3], user, seq,
    'expired', now, maxDead)
  if n == 0 then redis.call('ZREM', KEYS[1], m) end
  moved = moved + n
end
return {#members, moved}`,
  },
} as const;

type Arg = string | number | Buffer;

/** The scripts as ioredis adds them (defineCommand); `...Buffer` variants reply with Buffers. */
interface ScriptCommands {
  pylonAppend(...args: Arg[]): Promise<number>;
  pylonPendingBuffer(...args: Arg[]): Promise<Buffer[]>;
  pylonAck(...args: Arg[]): Promise<number>;
  pylonBury(...args: Arg[]): Promise<number>;
  pylonExpire(...args: Arg[]): Promise<[number, number]>;
}
type ScriptPipeline = ChainableCommander & { pylonAppend(...args: Arg[]): ScriptPipeline };

const EXPIRE_BATCH = 1000;

export interface RedisStoreOptions extends StoreOptions {
  /** Key prefix. Default "pylon:". */
  prefix?: string;
  /** Treat a single URL as a seed of a Redis Cluster (several comma-separated URLs always are). */
  cluster?: boolean;
  /** Redis Cluster only: buckets users are spread over (fixed for the life of the data). Default 64. */
  buckets?: number;
  /**
   * Replicas that must have an append before it resolves (WAIT after the append, on the same
   * connection: the master of the user's bucket). Redis replicates asynchronously: without this,
   * a master that fails right after acknowledging an append may lose it when its replica takes
   * over. An append not confirmed by this many replicas within `waitTimeout` rejects (it may
   * still have been stored; retrying it with the same id stores it once). Default 0.
   */
  waitReplicas?: number;
  /** ms for `waitReplicas`. Default 1000. */
  waitTimeout?: number;
}

/** A MessageStore in Redis (ioredis), standalone or Redis Cluster; see the layout above. */
export class RedisStore implements MessageStore {
  private readonly maxPerUser: number;
  private readonly maxDeadLetters: number;
  private readonly dedupeWindow: number;
  private readonly deadPerBucket: number;
  private readonly waitReplicas: number;
  private readonly waitTimeout: number;
  private readonly packr = new Packr({ useRecords: false });
  private readonly cmd: ScriptCommands;
  /** The prefix of each bucket: [prefix] on a standalone Redis. */
  private readonly buckets: string[];
  private closed = false;

  private constructor(
    readonly redis: RedisClient,
    prefix: string,
    buckets: number,
    options: RedisStoreOptions,
  ) {
    this.waitReplicas = Math.max(0, Math.floor(options.waitReplicas ?? 0));
    this.waitTimeout = Math.max(1, Math.floor(options.waitTimeout ?? 1000));
    this.maxPerUser = Math.max(1, options.maxPerUser ?? DEFAULT_MAX_PER_USER);
    this.maxDeadLetters = Math.max(0, options.maxDeadLetters ?? DEFAULT_MAX_DEAD_LETTERS);
    this.dedupeWindow = Math.max(1, options.dedupeWindow ?? DEFAULT_DEDUPE_WINDOW);
    for (const [name, def] of Object.entries(SCRIPTS)) redis.defineCommand(name, def);
    this.cmd = redis as unknown as ScriptCommands;
    this.buckets = buckets === 0 ? [prefix] : Array.from({ length: buckets }, (_, i) => `${prefix}{b${i}}:`);
    // Each bucket keeps up to maxDeadLetters (users need not spread evenly); reads return the
    // newest maxDeadLetters of all: on a cluster the lists hold at most buckets × maxDeadLetters.
    this.deadPerBucket = this.maxDeadLetters;
  }

  /**
   * Connects to `url`: redis://host:port[/db], or the comma-separated seeds of a Redis Cluster.
   * Commands whose reply was lost in a reconnection are sent again: every write is idempotent
   * (append by message id, ack cumulative, bury by seq), and a command timeout makes sure none
   * waits forever.
   */
  static async connect(url: string, options: RedisStoreOptions = {}): Promise<RedisStore> {
    const spec = parseRedisSpec(url, options.cluster);
    const redis = createRedis(
      spec,
      { autoResendUnfulfilledCommands: true, commandTimeout: 5000 },
      {
        retryDelayOnFailover: 200,
        retryDelayOnClusterDown: 200,
        retryDelayOnTryAgain: 200,
        maxRedirections: 32,
      },
    );
    redis.on('error', () => {
      // Reconnects are ioredis's job; failed commands reject to their callers.
    });
    try {
      await redis.connect();
    } catch (err) {
      redis.disconnect();
      throw new Error(
        `redis store at ${redisHost(url)}: cannot connect: ${(err as Error).message}; is redis-server running there?`,
        { cause: err },
      );
    }
    const prefix = options.prefix ?? 'pylon:';
    let buckets = 0;
    if (spec.cluster) {
      buckets = Math.max(1, Math.floor(options.buckets ?? 64));
      const key = `${prefix}{b0}:buckets`;
      await redis.set(key, String(buckets), 'NX');
      const had = Number(await redis.get(key));
      if (had !== buckets) {
        redis.disconnect();
        throw new Error(
          `redis store at ${redisHost(url)}: its data is spread over ${had} buckets, not ${buckets}; open it with buckets: ${had}`,
        );
      }
    }
    return new RedisStore(redis, prefix, buckets, options);
  }

  async append(users: readonly string[], message: NewMessage): Promise<number[]> {
    if (users.length === 0) return [];
    const packed = this.packr.pack({
      id: message.id,
      type: message.type,
      data: message.data,
      createdAt: message.createdAt,
      expiresAt: message.expiresAt,
    });
    // One pipeline per bucket (a cluster pipeline must stay in one slot); one on a standalone Redis.
    const byBucket = new Map<string, number[]>();
    users.forEach((user, i) => {
      const b = this.bucketOf(user);
      const list = byBucket.get(b);
      if (list) list.push(i);
      else byBucket.set(b, [i]);
    });
    const seqs: number[] = new Array(users.length);
    await Promise.all(
      [...byBucket].map(async ([b, indexes]) => {
        const p = this.redis.pipeline() as ScriptPipeline;
        for (const i of indexes) {
          const user = users[i] as string;
          p.pylonAppend(
            `${b}seq:${user}`,
            `${b}order:${user}`,
            `${b}inbox:${user}`,
            `${b}expiry`,
            `${b}stats`,
            `${b}dead`,
            `${b}ids:${user}`,
            user,
            packed,
            message.expiresAt,
            message.createdAt,
            this.maxPerUser,
            this.deadPerBucket,
            message.id,
            this.dedupeWindow,
          );
        }
        if (this.waitReplicas > 0) p.call('WAIT', this.waitReplicas, this.waitTimeout);
        const results = await p.exec();
        if (results === null) throw new Error('redis store: append pipeline was discarded');
        for (let j = 0; j < indexes.length; j++) {
          const [err, seq] = results[j] as [Error | null, unknown];
          if (err) throw err;
          seqs[indexes[j] as number] = Number(seq);
        }
        if (this.waitReplicas > 0) {
          const [err, acked] = results[indexes.length] as [Error | null, unknown];
          if (err) throw err;
          if (Number(acked) < this.waitReplicas)
            throw new Error(
              `redis store: append reached ${acked} of ${this.waitReplicas} replicas within ${this.waitTimeout} ms`,
            );
        }
      }),
    );
    return seqs;
  }

  async pending(user: string, afterSeq: number, limit: number, now: number): Promise<StoredMessage[]> {
    if (limit <= 0) return [];
    const b = this.bucketOf(user);
    const flat = await this.cmd.pylonPendingBuffer(
      `${b}order:${user}`,
      `${b}inbox:${user}`,
      `${b}expiry`,
      user,
      afterSeq,
      Math.floor(limit),
      now,
    );
    const out: StoredMessage[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      out.push(this.decode(Number((flat[i] as Buffer).toString()), flat[i + 1] as Buffer));
    }
    return out;
  }

  async ack(user: string, uptoSeq: number): Promise<number> {
    const b = this.bucketOf(user);
    return this.cmd.pylonAck(
      `${b}order:${user}`,
      `${b}inbox:${user}`,
      `${b}expiry`,
      `${b}stats`,
      user,
      uptoSeq,
    );
  }

  async lastSeq(user: string): Promise<number> {
    return Number((await this.redis.get(`${this.bucketOf(user)}seq:${user}`)) ?? 0);
  }

  async bury(user: string, seq: number, reason: DeadReason, now: number): Promise<void> {
    const b = this.bucketOf(user);
    await this.cmd.pylonBury(
      `${b}order:${user}`,
      `${b}inbox:${user}`,
      `${b}expiry`,
      `${b}stats`,
      `${b}dead`,
      user,
      seq,
      reason,
      now,
      this.deadPerBucket,
    );
  }

  async expire(now: number): Promise<number> {
    const moved = await Promise.all(this.buckets.map((b) => this.expireBucket(b, now)));
    return moved.reduce((a, n) => a + n, 0);
  }

  private async expireBucket(p: string, now: number): Promise<number> {
    let total = 0;
    for (;;) {
      const [seen, moved] = await this.cmd.pylonExpire(
        `${p}expiry`,
        `${p}stats`,
        `${p}dead`,
        p,
        now,
        this.deadPerBucket,
        EXPIRE_BATCH,
      );
      total += moved;
      if (seen < EXPIRE_BATCH) return total;
    }
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    limit = Math.min(limit, this.maxDeadLetters);
    if (limit <= 0) return [];
    const lists = await Promise.all(
      this.buckets.map((b) => this.redis.lrangeBuffer(`${b}dead`, 0, Math.floor(limit) - 1)),
    );
    const out: DeadLetter[] = [];
    for (const entries of lists) {
      for (const entry of entries) {
        const nl = entry.indexOf(0x0a);
        const [user, seq, reason, deadAt] = JSON.parse(entry.subarray(0, nl).toString()) as string[];
        out.push({
          ...this.decode(Number(seq), entry.subarray(nl + 1)),
          user: user as string,
          reason: reason as DeadReason,
          deadAt: Number(deadAt),
        });
      }
    }
    // Each bucket's list is newest first; across buckets, by the time they were moved aside.
    if (lists.length > 1) out.sort((x, y) => y.deadAt - x.deadAt);
    return out.slice(0, Math.floor(limit));
  }

  async stats(): Promise<StoreStats> {
    const all = await Promise.all(this.buckets.map((b) => this.redis.hmget(`${b}stats`, 'messages', 'dead')));
    let messages = 0;
    let deadLetters = 0;
    for (const [m, d] of all) {
      messages += Number(m ?? 0);
      deadLetters += Number(d ?? 0);
    }
    return { messages, deadLetters };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await quitRedis(this.redis);
  }

  /** The key prefix of `user`'s bucket. */
  private bucketOf(user: string): string {
    const b = this.buckets;
    return b.length === 1 ? (b[0] as string) : (b[fnv1a(user) % b.length] as string);
  }

  private decode(seq: number, packed: Buffer): StoredMessage {
    const m = this.packr.unpack(packed) as Omit<StoredMessage, 'seq'>;
    // msgpackr gives bin as a Buffer over the reply: hand out a plain Uint8Array of our own.
    const data = m.data instanceof Uint8Array ? new Uint8Array(m.data) : m.data;
    return { seq, id: m.id, type: m.type, data, createdAt: m.createdAt, expiresAt: m.expiresAt };
  }
}
