import { Cluster } from 'ioredis';
import { Packr } from 'msgpackr';
import { createRedis, fnv1a, parseRedisSpec, quitRedis, type RedisClient, redisHost } from '../util/redis.js';
import type { DenialLog } from './denial-log.js';
import type { HistoryLog } from './history-log.js';
import { DEFAULT_DEDUPE_WINDOW, DEFAULT_MAX_DEAD_LETTERS, DEFAULT_MAX_PER_USER } from './memory-store.js';
import { RedisDenials } from './redis-denials.js';
import { RedisHistory } from './redis-history.js';
import { RedisSessions } from './redis-sessions.js';
import { type Arg, RedisTurn } from './redis-turn.js';
import type { SessionLog } from './session-log.js';
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
 * - P stats         hash: messages (in inboxes), dead (moved aside, ever); with waitReplicas,
 *                   also repeats (appends of an id the user already had).
 * - P ids:{user}    sorted set: member = message id, score = seq, the ids of the user's last
 *                   `dedupeWindow` appends (older ones are trimmed by the append script): an
 *                   append of an id in it returns that seq and stores nothing.
 * A message is encoded once per push with msgpackr (useRecords: false) as
 * { id, type, data, createdAt, expiresAt }: JSON values and Uint8Array data (MessagePack bin)
 * round-trip; the seq lives in the keys. The Lua scripts never decode it.
 *
 * Every per-user step is one Lua script (atomic); the appends and acks of one event-loop turn,
 * from every push and connection, are pipelined together (RedisTurn: one pipeline per bucket),
 * so a turn is one round trip per bucket but not one transaction across users.
 *
 * Standalone Redis: one bucket whose prefix is P itself, so the keys are exactly the ones above
 * (pylon:seq:alice, pylon:expiry, …), as in every earlier version; `buckets` is ignored.
 *
 * Redis Cluster: users are spread over `buckets` buckets (fnv1a(user) % buckets, default 64), and
 * every key of bucket b, its own expiry, stats and dead keys included, is under P{b<b>}: (e.g.
 * pylon:{b17}:seq:alice, pylon:{b17}:expiry). The hash tag puts a bucket in one slot, so every
 * script touches one slot, and the buckets spread over the masters. `expire`, `stats` and
 * `deadLetters` visit every bucket. The count is kept in P{b0}:buckets; a store opened with
 * another count is refused (users would move to other buckets and lose their seqs). The two
 * layouts differ: data does not move between a standalone Redis and a cluster by itself.
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
  /**
   * The appends and acks of one event-loop turn in one bucket (RedisTurn), in call order.
   * KEYS: expiry stats dead; ARGV: prefix maxPerUser maxDead window waiting,
   *   nMessages, then per message: packed expiresAt createdAt id,
   *   nAppends, then per append: user message (1-based),
   *   nAcks, then per ack: user uptoSeq
   * -> each append's seq, then each ack's count of removed messages.
   * Keys are built from the prefix (the bucket's, so all in one slot on a cluster). An append of
   * an id the user got within the last `window` appends returns that seq and stores nothing.
   */
  pylonTurn: {
    numberOfKeys: 3,
    lua: `${MOVE_ASIDE}
local expiry, stats, dead = KEYS[1], KEYS[2], KEYS[3]
local p, maxPerUser, maxDead, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local waiting = ARGV[5] == '1'
local out, added, repeats = {}, 0, 0
local i = 7
local msgs = {}
for m = 1, tonumber(ARGV[6]) do
  msgs[m] = i
  i = i + 4
end
local nAppends = tonumber(ARGV[i])
i = i + 1
for _ = 1, nAppends do
  local user, m = ARGV[i], msgs[tonumber(ARGV[i + 1])]
  i = i + 2
  local ids = p .. 'ids:' .. user
  local had = redis.call('ZSCORE', ids, ARGV[m + 3])
  if had then
    repeats = repeats + 1
    out[#out + 1] = tonumber(had)
  else
    local order, inbox = p .. 'order:' .. user, p .. 'inbox:' .. user
    local seq = redis.call('INCR', p .. 'seq:' .. user)
    local s = tostring(seq)
    redis.call('ZADD', ids, seq, ARGV[m + 3])
    redis.call('ZREMRANGEBYSCORE', ids, '-inf', seq - window)
    redis.call('ZADD', order, seq, s)
    redis.call('HSET', inbox, s, ARGV[m])
    redis.call('ZADD', expiry, ARGV[m + 1], s .. ':' .. user)
    added = added + 1
    local over = redis.call('ZCARD', order) - maxPerUser
    if over > 0 then
      for _, old in ipairs(redis.call('ZRANGE', order, 0, over - 1)) do
        moveAside(order, inbox, expiry, stats, dead, user, old, 'overflow', ARGV[m + 2], maxDead)
      end
    end
    out[#out + 1] = seq
  end
end
local nAcks = tonumber(ARGV[i])
i = i + 1
for _ = 1, nAcks do
  local user, upto = ARGV[i], ARGV[i + 1]
  i = i + 2
  local order = p .. 'order:' .. user
  local seqs = redis.call('ZRANGEBYSCORE', order, '-inf', upto)
  local n = #seqs
  if n > 0 then
    redis.call('ZREMRANGEBYSCORE', order, '-inf', upto)
    local inbox = p .. 'inbox:' .. user
    for j = 1, n, 1000 do
      local fields, members = {}, {}
      for k = j, math.min(j + 999, n) do
        fields[#fields + 1] = seqs[k]
        members[#members + 1] = seqs[k] .. ':' .. user
      end
      redis.call('HDEL', inbox, unpack(fields))
      redis.call('ZREM', expiry, unpack(members))
    end
  end
  added = added - n
  out[#out + 1] = n
end
if added ~= 0 then redis.call('HINCRBY', stats, 'messages', added) end
-- A write, so that a WAIT after this call also covers the first append of a repeated id (WAIT
-- counts from the connection's last write; a read would let it return at once).
if waiting and repeats > 0 then redis.call('HINCRBY', stats, 'repeats', repeats) end
return out`,
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

/** The scripts as ioredis adds them (defineCommand); `...Buffer` variants reply with Buffers. */
interface ScriptCommands {
  pylonPendingBuffer(...args: Arg[]): Promise<Buffer[]>;
  pylonBury(...args: Arg[]): Promise<number>;
  pylonExpire(...args: Arg[]): Promise<[number, number]>;
}

const EXPIRE_BATCH = 1000;

export interface RedisStoreOptions extends StoreOptions {
  /** Key prefix. Default "pylon:". On a Redis Cluster it must not contain braces. */
  prefix?: string;
  /** Treat a single URL as a seed of a Redis Cluster (several comma-separated URLs always are). */
  cluster?: boolean;
  /**
   * Redis Cluster only (ignored on a standalone Redis): buckets users are spread over, fixed for
   * the life of the data (recorded in Redis; another count is refused). Default 64.
   */
  buckets?: number;
  /**
   * Replicas that must confirm an append before it resolves (WAIT on the master that ran it,
   * after the append's scripts in the same pipeline). Default 0: no wait. See the class comment.
   */
  waitReplicas?: number;
  /** ms WAIT may take for `waitReplicas`; fewer confirmations by then reject the append. Default 1000. */
  waitTimeout?: number;
  /**
   * ms one call may take, re-sends and retries included, before it rejects (plus `waitTimeout`
   * for an append that waits for replicas). Default 5000.
   */
  commandTimeout?: number;
}

/**
 * A MessageStore in Redis (ioredis), standalone or Redis Cluster; see the layout above.
 *
 * Commands whose reply was lost in a reconnection are sent again (ioredis's
 * autoResendUnfulfilledCommands on a standalone Redis; on a cluster ioredis follows MOVED and ASK
 * and retries on CLUSTERDOWN, TRYAGAIN and lost connections, and an append retries its pipeline
 * itself on those). That is safe because every write is idempotent: append by (user, message id),
 * ack cumulative, bury by seq. No call waits longer than `commandTimeout` (+ `waitTimeout`).
 *
 * Durability: an append has resolved once its script ran on the master holding the user's
 * bucket. Redis's persistence decides what a crash of that server loses (appendonly yes with
 * appendfsync everysec: up to the last second). Redis replicates asynchronously: when a master
 * fails and a replica takes over, the appends the replica had not received yet are gone although
 * they resolved, and the user's next appends get their seqs again. With `waitReplicas: n`, an
 * append resolves only after WAIT confirmed that n replicas of that master have it (in their
 * memory, not necessarily on their disk), so a failover to one of those replicas keeps it; it
 * rejects if fewer confirm within `waitTimeout` (it may have been stored all the same: retrying
 * it with the same id stores it once and returns its seq). With more replicas than n, Redis may
 * promote one that did not confirm. WAIT holds up the connection to that master: while fewer than
 * n replicas are reachable, each append to it takes `waitTimeout` and the calls behind it on that
 * connection wait their turn.
 */
export class RedisStore implements MessageStore {
  private readonly maxPerUser: number;
  private readonly maxDeadLetters: number;
  private readonly dedupeWindow: number;
  private readonly deadPerBucket: number;
  private readonly waitReplicas: number;
  private readonly waitTimeout: number;
  /** ms a call may take (an append that waits for replicas: plus waitTimeout). */
  private readonly timeout: number;
  private readonly packr = new Packr({ useRecords: false });
  /** Label histories, in the same Redis. */
  readonly history: HistoryLog;
  /** Resume sessions and journals, in the same Redis. */
  readonly sessions: SessionLog;
  /** Bans and revocations, in the same Redis. */
  readonly denials: DenialLog;
  private readonly cmd: ScriptCommands;
  /** This turn's appends and acks, one pipeline per bucket. */
  private readonly turn: RedisTurn;
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
    this.waitTimeout = waitTimeoutOf(options);
    this.timeout = timeoutOf(options);
    this.maxPerUser = Math.max(1, options.maxPerUser ?? DEFAULT_MAX_PER_USER);
    this.maxDeadLetters = Math.max(0, options.maxDeadLetters ?? DEFAULT_MAX_DEAD_LETTERS);
    this.dedupeWindow = Math.max(1, options.dedupeWindow ?? DEFAULT_DEDUPE_WINDOW);
    // Each bucket keeps up to maxDeadLetters (users need not spread evenly); reads return the
    // newest maxDeadLetters of all: on a cluster the lists hold at most buckets × maxDeadLetters.
    this.deadPerBucket = this.maxDeadLetters;
    for (const [name, def] of Object.entries(SCRIPTS)) redis.defineCommand(name, def);
    this.cmd = redis as unknown as ScriptCommands;
    this.turn = new RedisTurn(redis, {
      waitReplicas: this.waitReplicas,
      waitTimeout: this.waitTimeout,
      timeout: this.timeout,
      maxPerUser: this.maxPerUser,
      maxDead: this.deadPerBucket,
      window: this.dedupeWindow,
      closed: () => this.closed,
      within: (p, deadline) => this.within(p, deadline),
    });
    this.buckets = buckets === 0 ? [prefix] : Array.from({ length: buckets }, (_, i) => `${prefix}{b${i}}:`);
    this.history = new RedisHistory(redis, prefix, buckets !== 0);
    this.sessions = new RedisSessions(redis, prefix);
    this.denials = new RedisDenials(redis, prefix);
  }

  /**
   * Connects to `url`: redis://host:port[/db] (standalone, or with `cluster: true` one seed of a
   * Redis Cluster), or the comma-separated seeds of a Redis Cluster. Rejects with the host named
   * if Redis does not answer, and on a cluster if the data there was written with another
   * bucket count.
   */
  static async connect(url: string, options: RedisStoreOptions = {}): Promise<RedisStore> {
    const spec = parseRedisSpec(url, options.cluster);
    const prefix = options.prefix ?? 'pylon:';
    if (spec.cluster && /[{}]/.test(prefix))
      throw new Error(
        `redis store: prefix "${prefix}" has a brace; on a Redis Cluster the store adds the hash tag`,
      );
    const waiting = Math.floor(options.waitReplicas ?? 0) > 0;
    const redis = createRedis(
      spec,
      {
        autoResendUnfulfilledCommands: true,
        // Also bounds a WAIT, which Redis ends after waitTimeout.
        commandTimeout: timeoutOf(options) + (waiting ? waitTimeoutOf(options) : 0),
      },
      // About 6 s of retries while a master fails over (bounded by commandTimeout too).
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
    let buckets = 0;
    if (spec.cluster) {
      buckets = Math.max(1, Math.floor(options.buckets ?? 64));
      const key = `${prefix}{b0}:buckets`;
      let had: number;
      try {
        await redis.set(key, String(buckets), 'NX');
        had = Number(await redis.get(key));
      } catch (err) {
        redis.disconnect();
        throw new Error(`redis store at ${redisHost(url)}: ${(err as Error).message}`, { cause: err });
      }
      if (had !== buckets) {
        redis.disconnect();
        throw new Error(
          `redis store at ${redisHost(url)}: its data (prefix "${prefix}") is spread over ${had} buckets, not ${buckets}; open it with buckets: ${had}`,
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
    // Each user's append goes in this turn's script for the user's bucket (see RedisTurn).
    return Promise.all(users.map((user) => this.turn.append(this.bucketOf(user), user, packed, message)));
  }

  async pending(user: string, afterSeq: number, limit: number, now: number): Promise<StoredMessage[]> {
    if (limit <= 0) return [];
    this.turn.flush();
    const b = this.bucketOf(user);
    const flat = await this.within(
      this.cmd.pylonPendingBuffer(
        `${b}order:${user}`,
        `${b}inbox:${user}`,
        `${b}expiry`,
        user,
        afterSeq,
        Math.floor(limit),
        now,
      ),
    );
    const out: StoredMessage[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      out.push(this.decode(Number((flat[i] as Buffer).toString()), flat[i + 1] as Buffer));
    }
    return out;
  }

  async ack(user: string, uptoSeq: number): Promise<number> {
    return this.turn.ack(this.bucketOf(user), user, uptoSeq);
  }

  async lastSeq(user: string): Promise<number> {
    this.turn.flush();
    return Number((await this.within(this.redis.get(`${this.bucketOf(user)}seq:${user}`))) ?? 0);
  }

  async bury(user: string, seq: number, reason: DeadReason, now: number): Promise<void> {
    this.turn.flush();
    const b = this.bucketOf(user);
    await this.within(
      this.cmd.pylonBury(
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
      ),
    );
  }

  async expire(now: number): Promise<number> {
    this.turn.flush();
    const moved = await Promise.all(this.buckets.map((b) => this.expireBucket(b, now)));
    return moved.reduce((a, n) => a + n, 0);
  }

  private async expireBucket(p: string, now: number): Promise<number> {
    let total = 0;
    for (;;) {
      const [seen, moved] = await this.within(
        this.cmd.pylonExpire(`${p}expiry`, `${p}stats`, `${p}dead`, p, now, this.deadPerBucket, EXPIRE_BATCH),
      );
      total += moved;
      if (seen < EXPIRE_BATCH) return total;
    }
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    limit = Math.min(limit, this.maxDeadLetters);
    if (limit <= 0) return [];
    const lists = await Promise.all(
      this.buckets.map((b) => this.within(this.redis.lrangeBuffer(`${b}dead`, 0, Math.floor(limit) - 1))),
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
    this.turn.flush();
    const all = await Promise.all(
      this.buckets.map((b) => this.within(this.redis.hmget(`${b}stats`, 'messages', 'dead'))),
    );
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
    this.turn.flush();
    this.closed = true;
    await quitRedis(this.redis);
  }

  /**
   * `p`, or a rejection at `deadline`. ioredis's commandTimeout bounds a command once it was
   * handed to a node's connection; on a cluster a command can also wait before that (while the
   * client reconnects to the cluster or between retries), which this bounds. Standalone: `p`.
   */
  private within<T>(p: Promise<T>, deadline = Date.now() + this.timeout): Promise<T> {
    if (!(this.redis instanceof Cluster)) return p;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(`redis store: no answer from the cluster in time (commandTimeout ${this.timeout} ms)`),
          ),
        Math.max(0, deadline - Date.now()),
      );
      p.then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
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

function timeoutOf(options: RedisStoreOptions): number {
  return Math.max(1, Math.floor(options.commandTimeout ?? 5000));
}

function waitTimeoutOf(options: RedisStoreOptions): number {
  return Math.max(1, Math.floor(options.waitTimeout ?? 1000));
}
