import type { RedisOptions } from 'ioredis';
import { createRedis, fnv1a, parseRedisSpec, quitRedis, type RedisClient } from '../util/redis.js';
import { type Health, HealthState } from './health.js';
import { clusterClientOptions, clusterRedisOptions } from './redis-broker.js';
import {
  type ClusterStats,
  DEFAULT_LAST_NODE_TTL,
  type LiveNode,
  type NodeInfo,
  type NodeLoad,
  type OnlineChange,
  type Registry,
  summarize,
} from './registry.js';

/*
 * Layout. Times are Redis's own clock (TIME), so the nodes' clocks do not have to agree.
 *
 * The nodes, under N:
 * - N nodes          sorted set: node id -> expiresAt (ms). Alive while expiresAt >= now.
 * - N node:{id}      hash: info (JSON NodeInfo), ttl, load (JSON NodeLoad), conns, seen, and
 *                    resync (set when the node must send all its users again, see below).
 * - N gone           set: nodes found dead (or leaving) whose users are being removed.
 * The users, each in the bucket B of fnv1a(user) % 64:
 * - B u:{user}       set: the nodes the user has connections on (dead ones until swept).
 * - B last:{user}    string: the node the user was last seen on, expiring (PX).
 * - B users:{id}     set: the users of this bucket with a connection on node id.
 * - B online         counter: users of this bucket whose u:{user} set is not empty.
 * - B idem:{key}     string with a PX expiry: an idempotency key of a push (SET NX GET), in the
 *                    bucket of fnv1a(key).
 *
 * Standalone Redis: one bucket, and N and B are both the prefix P (default "pylon:cluster:"),
 * so the keys are P nodes, P u:alice, P online, … as in earlier versions. Redis Cluster: N is
 * P{nodes}: and bucket b is P{u<b>}: (hash tags), so each bucket is one slot and the buckets
 * spread over the masters: connects, disconnects and lookups (the bulk of the registry's work)
 * scale with the shards; only joins, heartbeats and sweeps go to the nodes' slot. Every script
 * touches one slot.
 *
 * A lookup reads u:{user} in its bucket and leaves out the nodes this process knows to be dead:
 * each heartbeat returns the live nodes with the ms they have left, kept as `live`; a node not
 * in it (newer than the last heartbeat) is answered. Every heartbeat sweeps: nodes past their
 * expiry move to `gone` (atomically), then their users are removed bucket by bucket in batches
 * (SPOP from users:{id}). A node that came back while it was being swept (it heartbeated in
 * time after all, or joined again) may have re-added users the sweep then removed: the sweep
 * stops, sets its resync flag, and its next heartbeat answers "forgotten", so it sends all its
 * users again (Membership.resync).
 */

/** Buckets users are spread over on a Redis Cluster. Every node of a cluster must agree. */
export const REGISTRY_BUCKETS = 64;

const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

const SCRIPTS = {
  /**
   * KEYS: nodes node:{id}; ARGV: id ttl info|'' load|''
   * -> [1 or 0 (unknown and not joining, or told to resync), id, ms left, id, ms left, ...] of the live nodes
   */
  pylonRegBeat: {
    numberOfKeys: 2,
    lua: `${NOW}
local joining = ARGV[3] ~= ''
local known = 1
if not joining and (not redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('EXISTS', KEYS[2]) == 0) then
  known = 0
elseif joining then
  local ttl = tonumber(ARGV[2])
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  redis.call('HSET', KEYS[2], 'info', ARGV[3], 'ttl', ttl, 'seen', now)
  redis.call('PEXPIRE', KEYS[2], ttl * 4)
else
  local ttl = tonumber(redis.call('HGET', KEYS[2], 'ttl')) or 15000
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], 'load', ARGV[4]) end
  redis.call('HSET', KEYS[2], 'seen', now)
  redis.call('PEXPIRE', KEYS[2], ttl * 4)
  if redis.call('HDEL', KEYS[2], 'resync') == 1 then known = 0 end
end
local out = { known }
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf', 'WITHSCORES')
for i = 1, #live, 2 do
  out[#out + 1] = live[i]
  out[#out + 1] = tostring(tonumber(live[i + 1]) - now)
end
return out`,
  },
  /** KEYS: online users:{id} (one bucket); ARGV: bucket prefix, id, lastTtl, user, flag, ... -> delta */
  pylonRegOnline: {
    numberOfKeys: 2,
    lua: `
local p, id, lastTtl = ARGV[1], ARGV[2], ARGV[3]
local delta = 0
for i = 4, #ARGV, 2 do
  local u = ARGV[i]
  local uk = p .. 'u:' .. u
  if ARGV[i + 1] == '1' then
    if redis.call('SADD', uk, id) == 1 and redis.call('SCARD', uk) == 1 then delta = delta + 1 end
    redis.call('SADD', KEYS[2], u)
  else
    if redis.call('SREM', uk, id) == 1 and redis.call('EXISTS', uk) == 0 then delta = delta - 1 end
    redis.call('SREM', KEYS[2], u)
  end
  redis.call('SET', p .. 'last:' .. u, id, 'PX', lastTtl)
end
if delta ~= 0 then redis.call('INCRBY', KEYS[1], delta) end
return delta`,
  },
  /** KEYS: node:{id}; ARGV: conns -> sets the node's connection count if it is registered */
  pylonRegConns: {
    numberOfKeys: 1,
    lua: `if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'conns', ARGV[1]) end
return 0`,
  },
  /** KEYS: online (one bucket, for routing); ARGV: bucket prefix, user, ... -> per user, its nodes */
  pylonRegLocate: {
    numberOfKeys: 1,
    readOnly: true,
    lua: `local out = {}
for i = 2, #ARGV do out[#out + 1] = redis.call('SMEMBERS', ARGV[1] .. 'u:' .. ARGV[i]) end
return out`,
  },
  /** KEYS: nodes; ARGV: nodes prefix -> [id, info, load, conns, seen, ...] of live nodes */
  pylonRegLive: {
    numberOfKeys: 1,
    readOnly: true,
    lua: `${NOW}
local out = {}
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  local h = redis.call('HMGET', ARGV[1] .. 'node:' .. n, 'info', 'load', 'conns', 'seen')
  if h[1] then
    out[#out + 1] = n
    out[#out + 1] = h[1]
    out[#out + 1] = h[2] or ''
    out[#out + 1] = h[3] or ''
    out[#out + 1] = h[4] or '0'
  end
end
return out`,
  },
  /** KEYS: nodes gone; ARGV: id|'' (leaving) -> the nodes to clean */
  pylonRegClaim: {
    numberOfKeys: 2,
    lua: `${NOW}
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
if ARGV[1] ~= '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[1])
end
for _, n in ipairs(dead) do
  redis.call('ZREM', KEYS[1], n)
  redis.call('SADD', KEYS[2], n)
end
return redis.call('SMEMBERS', KEYS[2])`,
  },
  /** KEYS: users:{id} online (one bucket); ARGV: bucket prefix, id, batch -> 1 while more to do */
  pylonRegClean: {
    numberOfKeys: 2,
    lua: `
local p, id = ARGV[1], ARGV[2]
local delta = 0
for _, u in ipairs(redis.call('SPOP', KEYS[1], tonumber(ARGV[3]))) do
  local uk = p .. 'u:' .. u
  if redis.call('SREM', uk, id) == 1 and redis.call('EXISTS', uk) == 0 then delta = delta - 1 end
end
if delta ~= 0 then redis.call('INCRBY', KEYS[2], delta) end
return redis.call('EXISTS', KEYS[1])`,
  },
  /**
   * KEYS: nodes gone node:{id}; ARGV: id -> 1 if the node is registered again (then told to
   * resync), 0 when it is forgotten
   */
  pylonRegForget: {
    numberOfKeys: 3,
    lua: `
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('HSET', KEYS[3], 'resync', '1')
  return 1
end
redis.call('DEL', KEYS[3])
return 0`,
  },
} as const;

type Arg = string | number;

interface ScriptCommands {
  pylonRegBeat(...args: Arg[]): Promise<Array<number | string>>;
  pylonRegOnline(...args: Arg[]): Promise<number>;
  pylonRegConns(...args: Arg[]): Promise<number>;
  pylonRegLocate(...args: Arg[]): Promise<string[][]>;
  pylonRegLive(...args: Arg[]): Promise<string[]>;
  pylonRegClaim(...args: Arg[]): Promise<string[]>;
  pylonRegClean(...args: Arg[]): Promise<number>;
  pylonRegForget(...args: Arg[]): Promise<number>;
}

export interface RedisRegistryOptions {
  /** Key prefix. Default "pylon:cluster:". On a Redis Cluster it must not contain braces. */
  prefix?: string;
  /** Treat a single URL as a seed of a Redis Cluster (several comma-separated URLs always are). */
  cluster?: boolean;
  /** How long `lastNodeOf` remembers a user's node (ms). Default 2 min. */
  lastNodeTtl?: number;
  /** Extra ioredis options. */
  redis?: RedisOptions;
}

const BATCH = 500;
/** How long a node known dead stays known (ms): past any sweep of it. */
const FORGET_DEAD = 10 * 60_000;
/** How long a node no heartbeat listed is answered (ms): several heartbeat intervals. */
const UNKNOWN_GRACE = 30_000;

/** The registry in Redis; see the layout above. One connection, failing fast while Redis is away. */
export class RedisRegistry implements Registry {
  private readonly state = new HealthState(true);
  private readonly cmd: ScriptCommands;
  /** The prefix of the nodes' keys. */
  private readonly n: string;
  /** The prefix of each bucket of users: [P] on a standalone Redis. */
  private readonly buckets: string[];
  private readonly lastTtl: number;
  /** Live nodes as of this process's last heartbeat: id -> Date.now() when its registration ends. */
  private live = new Map<string, number>();
  /** Nodes known dead here (left the live list, or found in `gone`): id -> until when to remember it. */
  private readonly dead = new Map<string, number>();
  /** Nodes answered by a lookup before any heartbeat listed them: id -> when first seen. */
  private readonly unknown = new Map<string, number>();
  /** When this process last heartbeated, and how long a node not yet listed is answered. */
  private lastBeat = 0;
  private grace = UNKNOWN_GRACE;
  private closed = false;

  private constructor(
    private readonly redis: RedisClient,
    options: RedisRegistryOptions,
    sharded: boolean,
  ) {
    const p = options.prefix ?? 'pylon:cluster:';
    if (sharded && /[{}]/.test(p))
      throw new Error(
        `redis registry: on a Redis Cluster the prefix "${p}" must not contain braces (the registry adds its own hash tags)`,
      );
    this.n = sharded ? `${p}{nodes}:` : p;
    this.buckets = sharded ? Array.from({ length: REGISTRY_BUCKETS }, (_, b) => `${p}{u${b}}:`) : [p];
    this.lastTtl = options.lastNodeTtl ?? DEFAULT_LAST_NODE_TTL;
    for (const [name, def] of Object.entries(SCRIPTS)) redis.defineCommand(name, def);
    this.cmd = redis as unknown as ScriptCommands;
    let lastError: string | undefined;
    redis.on('error', (err: Error) => {
      lastError = `redis registry: ${err.message}`;
      if (!this.state.up) this.state.set(false, lastError);
    });
    redis.on('close', () => {
      if (!this.closed) this.state.set(false, lastError ?? 'redis registry: connection closed');
    });
    redis.on('ready', () => {
      lastError = undefined;
      this.state.set(true);
    });
  }

  /** Connects to `url`: one redis:// URL, or the comma-separated seeds of a Redis Cluster. */
  static async connect(url: string, options: RedisRegistryOptions = {}): Promise<RedisRegistry> {
    const spec = parseRedisSpec(url, options.cluster);
    const redis = createRedis(spec, clusterRedisOptions(options.redis), clusterClientOptions());
    const ignore = () => {};
    redis.on('error', ignore);
    try {
      await redis.connect();
    } catch (err) {
      redis.disconnect();
      throw err;
    }
    redis.off('error', ignore);
    try {
      return new RedisRegistry(redis, options, spec.cluster);
    } catch (err) {
      redis.disconnect();
      throw err;
    }
  }

  get health(): Health {
    return this.state;
  }

  async join(node: NodeInfo, ttlMs: number): Promise<void> {
    const ttl = Math.max(1, Math.round(ttlMs));
    this.learn(
      await this.cmd.pylonRegBeat(
        `${this.n}nodes`,
        this.nodeKey(node.id),
        node.id,
        ttl,
        JSON.stringify(node),
        '',
      ),
    );
  }

  async heartbeat(node: string, load: NodeLoad): Promise<boolean> {
    const reply = await this.cmd.pylonRegBeat(
      `${this.n}nodes`,
      this.nodeKey(node),
      node,
      0,
      '',
      JSON.stringify(load),
    );
    const now = Date.now();
    if (this.lastBeat > 0) this.grace = Math.max(UNKNOWN_GRACE, 3 * (now - this.lastBeat));
    this.lastBeat = now;
    this.learn(reply);
    // The beat itself counted: a sweep that fails (a bucket's shard away) is retried next time.
    await this.sweep().catch(() => {});
    return Number(reply[0]) === 1;
  }

  async leave(node: string): Promise<void> {
    this.live.delete(node);
    await this.sweep(node);
  }

  async setOnline(node: string, changes: readonly OnlineChange[], connections?: number): Promise<void> {
    const work: Promise<unknown>[] = [];
    for (const [b, mine] of this.byBucket(changes, (c) => c.user)) {
      for (let i = 0; i < mine.length; i += BATCH) {
        const args: Arg[] = [`${b}online`, `${b}users:${node}`, b, node, this.lastTtl];
        for (const c of mine.slice(i, i + BATCH)) args.push(c.user, c.online ? '1' : '0');
        work.push(this.cmd.pylonRegOnline(...args));
      }
    }
    if (connections !== undefined) work.push(this.cmd.pylonRegConns(this.nodeKey(node), connections));
    await Promise.all(work);
  }

  async nodesOf(user: string): Promise<string[]> {
    const b = this.bucketOf(user);
    const [nodes] = await this.cmd.pylonRegLocate(`${b}online`, b, user);
    return (nodes ?? []).filter((n) => this.alive(n));
  }

  async locate(users: readonly string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    const work: Promise<void>[] = [];
    for (const [b, mine] of this.byBucket([...new Set(users)], (u) => u)) {
      for (let i = 0; i < mine.length; i += BATCH) {
        const batch = mine.slice(i, i + BATCH);
        work.push(
          this.cmd.pylonRegLocate(`${b}online`, b, ...batch).then((replies) => {
            replies.forEach((nodes, j) => {
              const user = batch[j] as string;
              for (const n of nodes) {
                if (!this.alive(n)) continue;
                const list = out.get(n);
                if (list) list.push(user);
                else out.set(n, [user]);
              }
            });
          }),
        );
      }
    }
    await Promise.all(work);
    return out;
  }

  async lastNodeOf(user: string): Promise<string | undefined> {
    return (await this.redis.get(`${this.bucketOf(user)}last:${user}`)) ?? undefined;
  }

  async usersOn(node: string): Promise<string[]> {
    const out = new Set<string>();
    for (const b of this.buckets) {
      let cursor = '0';
      do {
        const [next, members] = await this.redis.sscan(`${b}users:${node}`, cursor, 'COUNT', 1000);
        cursor = next;
        for (const m of members) out.add(m);
      } while (cursor !== '0');
    }
    return [...out];
  }

  async nodes(): Promise<LiveNode[]> {
    const flat = await this.cmd.pylonRegLive(`${this.n}nodes`, this.n);
    const out: LiveNode[] = [];
    for (let i = 0; i + 4 < flat.length; i += 5) {
      const info = JSON.parse(flat[i + 1] as string) as NodeInfo;
      const load = (flat[i + 2] ? JSON.parse(flat[i + 2] as string) : { connections: 0 }) as NodeLoad;
      const conns = Number(flat[i + 3]);
      if (flat[i + 3] !== '' && Number.isFinite(conns)) load.connections = conns;
      out.push({ ...info, load, seenAt: Number(flat[i + 4]) });
    }
    return out;
  }

  async stats(): Promise<ClusterStats> {
    await this.sweep();
    const [nodes, counts] = await Promise.all([
      this.nodes(),
      Promise.all(this.buckets.map((b) => this.redis.get(`${b}online`))),
    ]);
    const online = counts.reduce((sum: number, c) => sum + Math.max(0, Number(c ?? 0)), 0);
    return summarize(nodes, online);
  }

  async claim(key: string, value: string, ttlMs: number): Promise<string | undefined> {
    const px = Math.max(1, Math.round(ttlMs));
    const had = await this.redis.set(this.idemKey(key), value, 'PX', px, 'NX', 'GET');
    return had ?? undefined;
  }

  async settle(key: string, value: string, ttlMs: number): Promise<void> {
    await this.redis.set(this.idemKey(key), value, 'PX', Math.max(1, Math.round(ttlMs)), 'XX');
  }

  async release(key: string): Promise<void> {
    await this.redis.del(this.idemKey(key));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await quitRedis(this.redis);
  }

  /** Keeps the live nodes a heartbeat (or join) answered, with when each registration ends here. */
  private learn(reply: Array<number | string>): void {
    const now = Date.now();
    const live = new Map<string, number>();
    for (let i = 1; i + 1 < reply.length; i += 2) live.set(String(reply[i]), now + Number(reply[i + 1]));
    // A node that was live and is no longer listed is dead (its sweep may still be under way).
    for (const id of this.live.keys()) if (!live.has(id)) this.dead.set(id, now + FORGET_DEAD);
    for (const id of live.keys()) {
      this.dead.delete(id);
      this.unknown.delete(id);
    }
    for (const [id, until] of this.dead) if (until < now) this.dead.delete(id);
    for (const [id, since] of this.unknown) if (now - since > this.grace) this.unknown.delete(id);
    this.live = live;
  }

  /**
   * Whether to answer `node` in a lookup: a live node until the expiry its last heartbeat gave;
   * never one known dead; one not heard of yet (it joined after this process's last heartbeat)
   * for a grace (30 s, or three of this process's heartbeat intervals) after it was first seen, so entries left behind by a node forgotten for good
   * are not answered for ever.
   */
  private alive(node: string): boolean {
    const now = Date.now();
    const until = this.live.get(node);
    if (until !== undefined) return until >= now;
    if (this.dead.has(node)) return false;
    const since = this.unknown.get(node);
    if (since === undefined) {
      if (this.unknown.size < 10_000) this.unknown.set(node, now);
      return true;
    }
    return now - since <= this.grace;
  }

  /**
   * Moves dead nodes (and `leaving`) to `gone` and removes their users, bucket by bucket. A node
   * registered again meanwhile stops its sweep and is told to resync (see the layout).
   */
  private async sweep(leaving?: string): Promise<void> {
    const gone = await this.cmd.pylonRegClaim(`${this.n}nodes`, `${this.n}gone`, leaving ?? '');
    for (const id of gone) {
      // Dead while its sweep runs, unless it turns out to be registered again.
      const wasLive = this.live.get(id);
      this.live.delete(id);
      this.dead.set(id, Date.now() + FORGET_DEAD);
      for (const b of this.buckets) {
        if ((await this.redis.zscore(`${this.n}nodes`, id)) !== null) break;
        while ((await this.cmd.pylonRegClean(`${b}users:${id}`, `${b}online`, b, id, BATCH)) === 1);
      }
      const back = await this.cmd.pylonRegForget(`${this.n}nodes`, `${this.n}gone`, this.nodeKey(id), id);
      if (back === 1) {
        this.dead.delete(id);
        if (wasLive !== undefined) this.live.set(id, wasLive);
      }
    }
  }

  private byBucket<T>(items: readonly T[], userOf: (item: T) => string): Map<string, T[]> {
    const out = new Map<string, T[]>();
    for (const item of items) {
      const b = this.bucketOf(userOf(item));
      const list = out.get(b);
      if (list) list.push(item);
      else out.set(b, [item]);
    }
    return out;
  }

  private bucketOf(user: string): string {
    const b = this.buckets;
    return (b.length === 1 ? b[0] : b[fnv1a(user) % b.length]) as string;
  }

  private nodeKey(id: string): string {
    return `${this.n}node:${id}`;
  }

  private idemKey(key: string): string {
    return `${this.bucketOf(key)}idem:${key}`;
  }
}
