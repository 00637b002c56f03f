import type { Cluster as RedisCluster } from 'ioredis';
import { createRedis, parseRedisSpec, quitRedis } from '../util/redis.js';
import type { Broker, Reach } from './broker.js';
import { type Health, HealthState } from './health.js';
import { type ClusterMessage, decodeMessage, encodeMessage } from './messages.js';
import { clusterClientOptions, clusterRedisOptions, type RedisBrokerOptions } from './redis-broker.js';

/**
 * Sharded pub/sub on a Redis Cluster (SPUBLISH/SSUBSCRIBE, Redis 7): a channel lives on the
 * shard of its slot, so node, label and broadcast channels spread over the masters instead of
 * every message crossing every shard as PUBLISH does on a cluster. ioredis keeps one subscriber
 * connection per master and subscribes again when slots move (a failover, a reshard). At most
 * once, like every Broker: what is published while a shard's subscriber reconnects is lost for
 * this node; health goes down meanwhile, and the cluster re-reads its users' inboxes when it is
 * back up.
 */
export class ShardedBroker implements Broker {
  readonly reach: Reach = 'network';
  private readonly state = new HealthState(false, 'connecting');
  private readonly handlers = new Map<string, (m: ClusterMessage) => void>();
  private closed = false;

  private constructor(
    private readonly redis: RedisCluster,
    private readonly options: RedisBrokerOptions,
  ) {
    redis.on('error', (err: Error) => {
      if (!this.state.up) this.state.set(false, `redis cluster: ${err.message}`);
    });
    for (const event of ['close', 'end', '-subscriber']) {
      redis.on(event, () => {
        if (!this.closed)
          this.state.set(
            false,
            `redis cluster: ${event === '-subscriber' ? 'a shard subscriber was lost' : 'connection closed'}`,
          );
      });
    }
    for (const event of ['ready', 'subscribersReady', '+subscriber']) {
      redis.on(event, () => {
        if (!this.closed && redis.status === 'ready') this.state.set(true);
      });
    }
    redis.on('smessageBuffer', (channel: Buffer, message: Buffer) =>
      this.onMessage(channel.toString(), message),
    );
  }

  /** Connects to the cluster through its seeds (comma-separated redis:// URLs). */
  static async connect(seeds: string, options: RedisBrokerOptions = {}): Promise<ShardedBroker> {
    const spec = parseRedisSpec(seeds, true);
    const redis = createRedis(spec, clusterRedisOptions(options.redis), {
      ...clusterClientOptions(),
      shardedSubscribers: true,
    }) as RedisCluster;
    const ignore = () => {};
    redis.on('error', ignore);
    try {
      await redis.connect();
    } catch (err) {
      redis.disconnect();
      throw err;
    }
    const broker = new ShardedBroker(redis, options);
    redis.off('error', ignore);
    broker.state.set(true);
    return broker;
  }

  get health(): Health {
    return this.state;
  }

  async publish(channel: string, msg: ClusterMessage): Promise<void> {
    if (this.closed) throw new Error('redis broker: closed');
    await this.redis.spublish(channel, Buffer.from(encodeMessage(msg)));
  }

  async subscribe(
    channels: string | readonly string[],
    onMessage: (m: ClusterMessage) => void,
  ): Promise<void> {
    if (this.closed) throw new Error('redis broker: closed');
    const list = typeof channels === 'string' ? [channels] : [...channels];
    for (const c of list) this.handlers.set(c, onMessage);
    // One channel per command: the channels of one call may live on different shards.
    await Promise.all(list.map((c) => this.redis.ssubscribe(c)));
  }

  async unsubscribe(channels: readonly string[]): Promise<void> {
    if (this.closed) return;
    for (const c of channels) this.handlers.delete(c);
    await Promise.all(channels.map((c) => this.redis.sunsubscribe(c)));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.handlers.clear();
    await quitRedis(this.redis);
  }

  private onMessage(channel: string, message: Buffer): void {
    const handler = this.handlers.get(channel);
    if (handler === undefined) return;
    let m: ClusterMessage;
    try {
      m = decodeMessage(message);
    } catch (err) {
      this.options.onBadMessage?.(err, channel);
      return;
    }
    handler(m);
  }
}
