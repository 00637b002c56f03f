// Scale out: several gateways joined through a Broker (pub/sub) and a Registry (who is where).

export { type Broker, type ChannelTraffic, LocalBroker, LocalBus, type Reach } from './broker.js';
export {
  Cluster,
  type ClusterNodeOptions,
  type ClusterOptions,
  type ClusterStatus,
  clusterOf,
  type DispatchEntry,
  nodeOfConnection,
} from './cluster.js';
export { connectViaDispatcher, type DispatcherOptions } from './dispatch-client.js';
export type { Health } from './health.js';
export { IpcBroker, IpcRegistry, servePrimary } from './ipc.js';
export { type ClusterMessage, decodeMessage, encodeMessage } from './messages.js';
export { RedisBroker, type RedisBrokerOptions } from './redis-broker.js';
export { RedisRegistry, type RedisRegistryOptions } from './redis-registry.js';
export {
  type ClusterStats,
  type LiveNode,
  LocalRegistry,
  type NodeInfo,
  type NodeLoad,
  type OnlineChange,
  type Registry,
} from './registry.js';
export { redisCluster, workerCluster } from './setup.js';
export { ShardedBroker } from './sharded-broker.js';
