import type { RedisOptions } from 'ioredis';
import { createRedis, parseRedisSpec, quitRedis, type RedisClient } from '../util/redis.js';
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
 * Layout (P = the prefix, default "pylon:cluster:"); times are Redis's own clock (TIME), so the
 * nodes' clocks do not have to agree:
 * - P nodes          sorted set: node id -> expiresAt (ms). Alive while expiresAt >= now.
 * - P node:{id}      hash: info (JSON NodeInfo), ttl, load (JSON NodeLoad), conns, seen.
 * - P users:{id}     set: the users with a connection on the node.
 * - P u:{user}       set: the nodes the user has connections on (dead ones included until swept).
 * - P last:{user}    string: the node the user was last seen on, expiring (PX).
 * - P online         counter: users whose u:{user} set is not empty.
 * - P gone           set: nodes found dead (or leaving) whose users are being removed.
 * Readers filter u:{user} by `nodes`, so a dead node is never answered even before it is swept.
 * Every heartbeat sweeps: nodes past their expiry move to `gone` (atomically), then their users
 * are removed in batches (SPOP from users:{id}); a batch stops if the node came back meanwhile.
 * The scripts derive per-user key names. On a Redis Cluster the prefix carries a hash tag
 * (default "pylon:{cluster}:"), so every key of the registry is in one slot and every script
 * runs on one shard: the registry is then as fast as one Redis core (docs/scaling.md has what
 * that carries), while the store and the pub/sub channels spread over every shard.
 * Idempotency keys of pushes: P idem:{key}, a string with a PX expiry (SET NX GET).
 */

const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

const SCRIPTS = {
  /** KEYS: nodes node:{id}; ARGV: id ttl info|'' load|'' -> 1, or 0 when unknown and not joining */
  pylonRegBeat: {
    numberOfKeys: 2,
    lua: `${NOW}
local joining = ARGV[3] ~= ''
if not joining and (not redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('EXISTS', KEYS[2]) == 0) then
  return 0
end
local ttl = tonumber(ARGV[2])
if not joining then ttl = tonumber(redis.call('HGET', KEYS[2], 'ttl')) or 15000 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if joining then redis.call('HSET', KEYS[2], 'info', ARGV[3], 'ttl', ttl) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], 'load', ARGV[4]) end
redis.call('HSET', KEYS[2], 'seen', now)
redis.call('PEXPIRE', KEYS[2], ttl * 4)
return 1`,
  },
  /** KEYS: online users:{id} node:{id}; ARGV: prefix id lastTtl conns user flag ... -> delta */
  pylonRegOnline: {
    numberOfKeys: 3,
    lua: `
local p, id, lastTtl = ARGV[1], ARGV[2], ARGV[3]
local delta = 0
for i = 5, #ARGV, 2 do
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
if ARGV[4] ~= '-1' and redis.call('EXISTS', KEYS[3]) == 1 then redis.call('HSET', KEYS[3], 'conns', ARGV[4]) end
return delta`,
  },
  /** KEYS: nodes; ARGV: prefix user ... -> per user, its live nodes */
  pylonRegLocate: {
    numberOfKeys: 1,
    readOnly: true,
    lua: `${NOW}
local alive, out = {}, {}
for i = 2, #ARGV do
  local live = {}
  for _, n in ipairs(redis.call('SMEMBERS', ARGV[1] .. 'u:' .. ARGV[i])) do
    if alive[n] == nil then
      local s = redis.call('ZSCORE', KEYS[1], n)
      alive[n] = (s and tonumber(s) >= now) and 1 or 0
    end
    if alive[n] == 1 then live[#live + 1] = n end
  end
  out[#out + 1] = live
end
return out`,
  },
  /** KEYS: nodes; ARGV: prefix -> [id, info, load, conns, seen, ...] of live nodes */
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
if ARGV[1] ~= '' then dead[#dead + 1] = ARGV[1] end
for _, n in ipairs(dead) do
  redis.call('ZREM', KEYS[1], n)
  redis.call('SADD', KEYS[2], n)
end
return redis.call('SMEMBERS', KEYS[2])`,
  },
  /** KEYS: nodes gone online; ARGV: prefix id batch -> 1 while more to do */
  pylonRegClean: {
    numberOfKeys: 3,
    lua: `
local p, id = ARGV[1], ARGV[2]
local uset = p .. 'users:' .. id
if redis.call('ZSCORE', KEYS[1], id) then
  redis.call('SREM', KEYS[2], id)
  return 0
end
local delta = 0
for _, u in ipairs(redis.call('SPOP', uset, tonumber(ARGV[3]))) do
  local uk = p .. 'u:' .. u
  if redis.call('SREM', uk, id) == 1 and redis.call('EXISTS', uk) == 0 then delta = delta - 1 end
end
if delta ~= 0 then redis.call('INCRBY', KEYS[3], delta) end
if redis.call('EXISTS', uset) == 1 then return 1 end
redis.call('DEL', p .. 'node:' .. id)
redis.call('SREM', KEYS[2], id)
return 0`,
  },
} as const;

type Arg = string | number;

interface ScriptCommands {
  pylonRegBeat(...args: Arg[]): Promise<number>;
  pylonRegOnline(...args: Arg[]): Promise<number>;
  pylonRegLocate(...args: Arg[]): Promise<string[][]>;
  pylonRegLive(...args: Arg[]): Promise<string[]>;
  pylonRegClaim(...args: Arg[]): Promise<string[]>;
  pylonRegClean(...args: Arg[]): Promise<number>;
}

export interface RedisRegistryOptions {
  /** Key prefix. Default "pylon:cluster:" ("pylon:{cluster}:" on a Redis Cluster: one slot). */
  prefix?: string;
  /** Treat a single URL as a seed of a Redis Cluster (several comma-separated URLs always are). */
  cluster?: boolean;
  /** How long `lastNodeOf` remembers a user's node (ms). Default 2 min. */
  lastNodeTtl?: number;
  /** Extra ioredis options. */
  redis?: RedisOptions;
}

const BATCH = 500;

/** The registry in Redis; see the layout above. One connection, failing fast while Redis is away. */
export class RedisRegistry implements Registry {
  private readonly state = new HealthState(true);
  private readonly cmd: ScriptCommands;
  private readonly p: string;
  private readonly lastTtl: number;
  private closed = false;

  private constructor(
    private readonly redis: RedisClient,
    options: RedisRegistryOptions,
    sharded: boolean,
  ) {
    this.p = options.prefix ?? (sharded ? 'pylon:{cluster}:' : 'pylon:cluster:');
    if (sharded && !/\{[^}]+\}/.test(this.p))
      throw new Error(`redis registry: on a Redis Cluster the prefix needs a hash tag, e.g. "{${this.p}}"`);
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
    return new RedisRegistry(redis, options, spec.cluster);
  }

  get health(): Health {
    return this.state;
  }

  async join(node: NodeInfo, ttlMs: number): Promise<void> {
    const ttl = Math.max(1, Math.round(ttlMs));
    await this.cmd.pylonRegBeat(
      this.key('nodes'),
      this.key(`node:${node.id}`),
      node.id,
      ttl,
      JSON.stringify(node),
      '',
    );
  }

  async heartbeat(node: string, load: NodeLoad): Promise<boolean> {
    const ok = await this.cmd.pylonRegBeat(
      this.key('nodes'),
      this.key(`node:${node}`),
      node,
      0,
      '',
      JSON.stringify(load),
    );
    await this.sweep();
    return ok === 1;
  }

  async leave(node: string): Promise<void> {
    await this.sweep(node);
  }

  async setOnline(node: string, changes: readonly OnlineChange[], connections?: number): Promise<void> {
    if (changes.length === 0 && connections === undefined) return;
    let i = 0;
    do {
      const args: Arg[] = [this.key('online'), this.key(`users:${node}`), this.key(`node:${node}`)];
      args.push(this.p, node, this.lastTtl, connections ?? -1);
      for (const c of changes.slice(i, i + BATCH)) args.push(c.user, c.online ? '1' : '0');
      await this.cmd.pylonRegOnline(...args);
      i += BATCH;
    } while (i < changes.length);
  }

  async nodesOf(user: string): Promise<string[]> {
    const [live] = await this.cmd.pylonRegLocate(this.key('nodes'), this.p, user);
    return live ?? [];
  }

  async locate(users: readonly string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    const unique = [...new Set(users)];
    for (let i = 0; i < unique.length; i += BATCH) {
      const batch = unique.slice(i, i + BATCH);
      const replies = await this.cmd.pylonRegLocate(this.key('nodes'), this.p, ...batch);
      replies.forEach((nodes, j) => {
        const user = batch[j] as string;
        for (const n of nodes) {
          const list = out.get(n);
          if (list) list.push(user);
          else out.set(n, [user]);
        }
      });
    }
    return out;
  }

  async lastNodeOf(user: string): Promise<string | undefined> {
    return (await this.redis.get(this.key(`last:${user}`))) ?? undefined;
  }

  async usersOn(node: string): Promise<string[]> {
    const out: string[] = [];
    let cursor = '0';
    do {
      const [next, members] = await this.redis.sscan(this.key(`users:${node}`), cursor, 'COUNT', 1000);
      cursor = next;
      out.push(...members);
    } while (cursor !== '0');
    return [...new Set(out)];
  }

  async nodes(): Promise<LiveNode[]> {
    const flat = await this.cmd.pylonRegLive(this.key('nodes'), this.p);
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
    const [nodes, online] = await Promise.all([this.nodes(), this.redis.get(this.key('online'))]);
    return summarize(nodes, Math.max(0, Number(online ?? 0)));
  }

  async claim(key: string, value: string, ttlMs: number): Promise<string | undefined> {
    const px = Math.max(1, Math.round(ttlMs));
    const had = await this.redis.set(this.key(`idem:${key}`), value, 'PX', px, 'NX', 'GET');
    return had ?? undefined;
  }

  async settle(key: string, value: string, ttlMs: number): Promise<void> {
    await this.redis.set(this.key(`idem:${key}`), value, 'PX', Math.max(1, Math.round(ttlMs)), 'XX');
  }

  async release(key: string): Promise<void> {
    await this.redis.del(this.key(`idem:${key}`));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await quitRedis(this.redis);
  }

  /** Moves dead nodes (and `leaving`) to `gone` and removes their users. */
  private async sweep(leaving?: string): Promise<void> {
    const gone = await this.cmd.pylonRegClaim(this.key('nodes'), this.key('gone'), leaving ?? '');
    for (const id of gone) {
      while (
        (await this.cmd.pylonRegClean(
          this.key('nodes'),
          this.key('gone'),
          this.key('online'),
          this.p,
          id,
          BATCH,
        )) === 1
      );
    }
  }

  private key(k: string): string {
    return this.p + k;
  }
}
