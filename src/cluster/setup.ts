import { Cluster, type ClusterOptions } from './cluster.js';
import { IpcBroker, IpcRegistry } from './ipc.js';
import { RedisBroker } from './redis-broker.js';
import { RedisRegistry } from './redis-registry.js';

type Rest = Omit<ClusterOptions, 'broker' | 'registry'>;

/**
 * A cluster over Redis at `url`: RedisBroker + RedisRegistry (keys and channels under `prefix`,
 * default "pylon:"). Pass it as the gateway's `cluster` option. Rejects if Redis is not reachable.
 */
export async function redisCluster(url: string, options: Rest = {}): Promise<Cluster> {
  const prefix = options.prefix ?? 'pylon:';
  const broker = await RedisBroker.connect(url);
  try {
    const registry = await RedisRegistry.connect(url, { prefix: `${prefix}cluster:` });
    return new Cluster({ ...options, prefix, broker, registry });
  } catch (err) {
    await broker.close();
    throw err;
  }
}

/** A cluster of the worker processes of one machine, through the primary (`servePrimary`). */
export function workerCluster(options: Rest = {}): Cluster {
  return new Cluster({ ...options, broker: new IpcBroker(), registry: new IpcRegistry() });
}
