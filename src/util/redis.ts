import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';

/** A connection to a standalone Redis or to a Redis Cluster (ioredis's two clients). */
export type RedisClient = Redis | Cluster;

/** Where Redis is: one URL (standalone, or one seed of a cluster), or several seeds of a Redis Cluster. */
export interface RedisSpec {
  urls: string[];
  /** A Redis Cluster: ioredis's Cluster client, hash-tagged keys, sharded pub/sub. */
  cluster: boolean;
}

/**
 * Reads `redis://a:7000` (standalone) or `redis://a:7000,redis://b:7001,…` (the seeds of a Redis
 * Cluster: more than one URL means a cluster). `cluster: true` makes a single URL a cluster seed.
 * Throws on anything that is not a redis:// or rediss:// URL.
 */
export function parseRedisSpec(spec: string, cluster = false): RedisSpec {
  const urls = spec
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (urls.length === 0) throw new Error('redis: no URL given');
  for (const u of urls) {
    if (!u.startsWith('redis://') && !u.startsWith('rediss://'))
      throw new Error(`redis: "${redisHost(u)}" is not a redis:// or rediss:// URL`);
  }
  return { urls, cluster: cluster || urls.length > 1 };
}

/** host:port of each URL of a spec, never a password. */
export function redisHost(spec: string): string {
  return spec
    .split(',')
    .map((u) => {
      try {
        return new URL(u.trim()).host;
      } catch {
        return '(unparsable URL)';
      }
    })
    .join(',');
}

/**
 * A client for `spec` (not connected yet: `lazyConnect`). For a cluster, `options` apply to every
 * node's connection; the seeds' credentials and TLS are taken from the first URL.
 */
export function createRedis(
  spec: RedisSpec,
  options: RedisOptions,
  clusterOptions: Omit<ClusterOptions, 'redisOptions'> = {},
): RedisClient {
  const first = spec.urls[0] as string;
  if (!spec.cluster) return new Redis(first, { ...options, lazyConnect: true });
  const seeds = spec.urls.map((u) => {
    const url = new URL(u);
    return { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 6379) };
  });
  const url = new URL(first);
  const auth: RedisOptions = {};
  if (url.username !== '') auth.username = decodeURIComponent(url.username);
  if (url.password !== '') auth.password = decodeURIComponent(url.password);
  if (url.protocol === 'rediss:') auth.tls = {};
  // A node's connection must not reconnect forever by itself: ioredis drops a failed node and
  // learns the new slot owners (the promoted replica) from the cluster, which it cannot do while
  // that connection holds the node's commands in its queue.
  const { lazyConnect: _lazy, retryStrategy: _retry, ...nodeOptions } = options;
  return new Cluster(seeds, {
    lazyConnect: true,
    enableOfflineQueue: options.enableOfflineQueue ?? true,
    // Slot owners are re-read this often besides on MOVED and on a lost node.
    slotsRefreshInterval: 2000,
    ...clusterOptions,
    redisOptions: { ...nodeOptions, ...auth },
  });
}

/** Quits politely when connected, else drops the connection. */
export async function quitRedis(conn: RedisClient): Promise<void> {
  try {
    if (conn.status === 'ready') await conn.quit();
    else conn.disconnect();
  } catch {
    conn.disconnect();
  }
}

/**
 * FNV-1a (32 bit) of a string's UTF-16 units: how users and labels are spread over buckets.
 * Stable across processes and versions (it decides key names in Redis and channel names).
 */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
