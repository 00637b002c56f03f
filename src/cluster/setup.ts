import { parseRedisSpec } from '../util/redis.js';
import type { Broker } from './broker.js';
import { Cluster, type ClusterOptions } from './cluster.js';
import { IpcBroker, IpcRegistry } from './ipc.js';
import { RedisBroker } from './redis-broker.js';
import { RedisRegistry } from './redis-registry.js';
import { ShardedBroker } from './sharded-broker.js';

type Rest = Omit<ClusterOptions, 'broker' | 'registry'>;

/**
 * A cluster over Redis at `url`: RedisBroker + RedisRegistry (keys and channels under `prefix`,
 * default "pylon:"). `url` is one redis:// URL, or the comma-separated seeds of a Redis Cluster
 * (`redisCluster: true` makes a single URL a seed): then sharded pub/sub (ShardedBroker) and a
 * registry whose users are spread over 64 hash slots. Pass it as the gateway's `cluster` option. Rejects if Redis is not
 * reachable.
 */
export async function redisCluster(
  url: string,
  options: Rest & { redisCluster?: boolean } = {},
): Promise<Cluster> {
  const { redisCluster: forceCluster, ...rest } = options;
  const prefix = rest.prefix ?? 'pylon:';
  const sharded = parseRedisSpec(url, forceCluster).cluster;
  const broker: Broker = sharded ? await ShardedBroker.connect(url) : await RedisBroker.connect(url);
  try {
    const registry = await RedisRegistry.connect(url, {
      prefix: `${prefix}cluster:`,
      cluster: sharded,
    });
    return new Cluster({ ...rest, prefix, broker, registry });
  } catch (err) {
    await broker.close();
    throw err;
  }
}

/** A cluster of the worker processes of one machine, through the primary (`servePrimary`). */
export function workerCluster(options: Rest = {}): Cluster {
  return new Cluster({ ...options, broker: new IpcBroker(), registry: new IpcRegistry() });
}
