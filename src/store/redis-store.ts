import { type ChainableCommander, Redis } from 'ioredis';
import { Packr } from 'msgpackr';
import { DEFAULT_MAX_DEAD_LETTERS, DEFAULT_MAX_PER_USER } from './memory-store.js';
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
 * A message is encoded once per push with msgpackr (useRecords: false) as
 * { id, type, data, createdAt, expiresAt }: JSON values and Uint8Array data (MessagePack bin)
 * round-trip; the seq lives in the keys. The Lua scripts never decode it.
 *
 * Every per-user step is one Lua script (atomic); the scripts of one `append` are pipelined, so a
 * batch is one round trip but not one transaction across users. `expire` derives per-user key
 * names inside its script, so this needs a standalone Redis (or Sentinel), not Redis Cluster.
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
  /** KEYS: seq order inbox expiry stats dead; ARGV: user packed expiresAt createdAt maxPerUser maxDead */
  pylonAppend: {
    numberOfKeys: 6,
    lua: `${MOVE_ASIDE}
local seq = tostring(redis.call('INCR', KEYS[1]))
local user = ARGV[1]
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

/** A MessageStore in Redis (ioredis); see the layout above. */
export class RedisStore implements MessageStore {
  private readonly maxPerUser: number;
  private readonly maxDeadLetters: number;
  private readonly packr = new Packr({ useRecords: false });
  private readonly cmd: ScriptCommands;
  private closed = false;

  private constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    options: StoreOptions,
  ) {
    this.maxPerUser = Math.max(1, options.maxPerUser ?? DEFAULT_MAX_PER_USER);
    this.maxDeadLetters = Math.max(0, options.maxDeadLetters ?? DEFAULT_MAX_DEAD_LETTERS);
    for (const [name, def] of Object.entries(SCRIPTS)) redis.defineCommand(name, def);
    this.cmd = redis as unknown as ScriptCommands;
  }

  /** Connects to `url` (redis://host:port[/db]); keys start with `prefix` (default "pylon:"). */
  static async connect(url: string, options: StoreOptions & { prefix?: string } = {}): Promise<RedisStore> {
    // No re-sending of commands whose reply was lost in a reconnect: an append Redis ran just
    // before it went away would be stored twice, under two seqs. A lost reply fails the append
    // instead (the caller is told), and a command timeout makes sure it does.
    const redis = new Redis(url, {
      lazyConnect: true,
      autoResendUnfulfilledCommands: false,
      commandTimeout: 5000,
    });
    redis.on('error', () => {
      // Reconnects are ioredis's job; failed commands reject to their callers.
    });
    try {
      await redis.connect();
    } catch (err) {
      redis.disconnect();
      throw new Error(
        `redis store at ${hostOf(url)}: cannot connect: ${(err as Error).message}; is redis-server running there?`,
        { cause: err },
      );
    }
    return new RedisStore(redis, options.prefix ?? 'pylon:', options);
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
    const p = this.redis.pipeline() as ScriptPipeline;
    for (const user of users) {
      const k = this.keys(user);
      p.pylonAppend(
        k.seq,
        k.order,
        k.inbox,
        `${this.prefix}expiry`,
        `${this.prefix}stats`,
        `${this.prefix}dead`,
        user,
        packed,
        message.expiresAt,
        message.createdAt,
        this.maxPerUser,
        this.maxDeadLetters,
      );
    }
    const results = await p.exec();
    if (results === null) throw new Error('redis store: append pipeline was discarded');
    return results.map(([err, seq]) => {
      if (err) throw err;
      return Number(seq);
    });
  }

  async pending(user: string, afterSeq: number, limit: number, now: number): Promise<StoredMessage[]> {
    if (limit <= 0) return [];
    const k = this.keys(user);
    const flat = await this.cmd.pylonPendingBuffer(
      k.order,
      k.inbox,
      `${this.prefix}expiry`,
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
    const k = this.keys(user);
    return this.cmd.pylonAck(k.order, k.inbox, `${this.prefix}expiry`, `${this.prefix}stats`, user, uptoSeq);
  }

  async lastSeq(user: string): Promise<number> {
    return Number((await this.redis.get(this.keys(user).seq)) ?? 0);
  }

  async bury(user: string, seq: number, reason: DeadReason, now: number): Promise<void> {
    const k = this.keys(user);
    const p = this.prefix;
    await this.cmd.pylonBury(
      k.order,
      k.inbox,
      `${p}expiry`,
      `${p}stats`,
      `${p}dead`,
      user,
      seq,
      reason,
      now,
      this.maxDeadLetters,
    );
  }

  async expire(now: number): Promise<number> {
    const p = this.prefix;
    let total = 0;
    for (;;) {
      const [seen, moved] = await this.cmd.pylonExpire(
        `${p}expiry`,
        `${p}stats`,
        `${p}dead`,
        p,
        now,
        this.maxDeadLetters,
        EXPIRE_BATCH,
      );
      total += moved;
      if (seen < EXPIRE_BATCH) return total;
    }
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    if (limit <= 0) return [];
    const entries = await this.redis.lrangeBuffer(`${this.prefix}dead`, 0, Math.floor(limit) - 1);
    return entries.map((entry) => {
      const nl = entry.indexOf(0x0a);
      const [user, seq, reason, deadAt] = JSON.parse(entry.subarray(0, nl).toString()) as string[];
      return {
        ...this.decode(Number(seq), entry.subarray(nl + 1)),
        user: user as string,
        reason: reason as DeadReason,
        deadAt: Number(deadAt),
      };
    });
  }

  async stats(): Promise<StoreStats> {
    const [messages, dead] = await this.redis.hmget(`${this.prefix}stats`, 'messages', 'dead');
    return { messages: Number(messages ?? 0), deadLetters: Number(dead ?? 0) };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }

  private keys(user: string): { seq: string; order: string; inbox: string } {
    const p = this.prefix;
    return { seq: `${p}seq:${user}`, order: `${p}order:${user}`, inbox: `${p}inbox:${user}` };
  }

  private decode(seq: number, packed: Buffer): StoredMessage {
    const m = this.packr.unpack(packed) as Omit<StoredMessage, 'seq'>;
    // msgpackr gives bin as a Buffer over the reply: hand out a plain Uint8Array of our own.
    const data = m.data instanceof Uint8Array ? new Uint8Array(m.data) : m.data;
    return { seq, id: m.id, type: m.type, data, createdAt: m.createdAt, expiresAt: m.expiresAt };
  }
}

/** host:port of a Redis URL, never its password. */
function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '(unparsable URL)';
  }
}
