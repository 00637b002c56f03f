import { type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import { quitRedis } from '../util/redis.js';
import type { Broker, Reach } from './broker.js';
import { type Health, HealthState } from './health.js';
import { type ClusterMessage, decodeMessage, encodeMessage } from './messages.js';

export interface RedisBrokerOptions {
  /** Called for a message that cannot be decoded (it is dropped). */
  onBadMessage?: (err: unknown, channel: string) => void;
  /** Extra ioredis options for both connections. */
  redis?: RedisOptions;
}

/**
 * Connection options shared by the cluster's Redis clients: fail fast while disconnected
 * (no offline queue, no re-sending of commands whose reply was lost: a PUBLISH or a registry
 * write is either confirmed or reported as failed, never run twice; a command left without a
 * reply fails after `commandTimeout`), and reconnect forever with a short capped backoff.
 */
export function clusterRedisOptions(extra: RedisOptions = {}): RedisOptions {
  return {
    lazyConnect: true,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    // Without re-sending, ioredis drops (never settles) a command whose connection closed before
    // its reply: the timeout turns that into a failure the caller sees.
    commandTimeout: 2000,
    retryStrategy: (times) => Math.min(times * 100, 1000),
    ...extra,
  };
}

/** ioredis Cluster options for the cluster's clients: follow slot moves, wait out a failover. */
export function clusterClientOptions(): Omit<ClusterOptions, 'redisOptions'> {
  return {
    // While slots move, commands wait for the new owner (bounded by commandTimeout) instead of
    // failing on the dead node's connection.
    enableOfflineQueue: true,
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    maxRedirections: 16,
    clusterRetryStrategy: (times) => Math.min(times * 100, 1000),
  };
}

/**
 * Redis pub/sub (PUBLISH/SUBSCRIBE), at most once (see Broker). Two connections: one to publish,
 * one in subscriber mode. After a reconnection ioredis re-subscribes by itself (`autoResubscribe`,
 * in its ready handler) but says nothing when that is done; so on every `ready` this broker sends
 * its own SUBSCRIBE for the same channels (idempotent) and declares itself up only once Redis
 * has confirmed it. From then on every message published reaches it; what was published in
 * between is lost (at most once), which the cluster makes up for by resynchronising.
 */
export class RedisBroker implements Broker {
  readonly reach: Reach = 'network';
  private readonly state = new HealthState(false, 'connecting');
  private readonly handlers = new Map<string, (m: ClusterMessage) => void>();
  private closed = false;
  private pubReady = false;
  private subReady = false;
  private subGeneration = 0;
  private lastError: string | undefined;

  private constructor(
    private readonly pub: Redis,
    private readonly sub: Redis,
    private readonly options: RedisBrokerOptions,
  ) {
    for (const [conn, which] of [
      [pub, 'publisher'],
      [sub, 'subscriber'],
    ] as const) {
      conn.on('error', (err: Error) => {
        this.lastError = `redis ${which}: ${err.message}`;
        if (!this.state.up) this.state.set(false, this.lastError);
      });
      conn.on('close', () => this.lost(which));
      conn.on('end', () => this.lost(which));
    }
    pub.on('ready', () => {
      this.pubReady = true;
      this.update();
    });
    sub.on('ready', () => {
      // ioredis sends its own re-SUBSCRIBE right after emitting ready; ours goes after it.
      queueMicrotask(() => this.confirmSubscriptions());
    });
    sub.on('messageBuffer', (channel: Buffer, message: Buffer) =>
      this.onMessage(channel.toString(), message),
    );
  }

  /** Connects both connections to `url` (redis://host:port[/db]); rejects if Redis cannot be reached now. */
  static async connect(url: string, options: RedisBrokerOptions = {}): Promise<RedisBroker> {
    const o = clusterRedisOptions(options.redis);
    const pub = new Redis(url, o);
    const sub = new Redis(url, o);
    // Until the constructor attaches its listeners, keep ioredis from printing unhandled errors.
    const ignore = () => {};
    pub.on('error', ignore);
    sub.on('error', ignore);
    try {
      await Promise.all([pub.connect(), sub.connect()]);
    } catch (err) {
      pub.disconnect();
      sub.disconnect();
      throw err;
    }
    const broker = new RedisBroker(pub, sub, options);
    pub.off('error', ignore);
    sub.off('error', ignore);
    broker.pubReady = true;
    broker.subReady = true;
    broker.update();
    return broker;
  }

  get health(): Health {
    return this.state;
  }

  async publish(channel: string, msg: ClusterMessage): Promise<void> {
    if (this.closed) throw new Error('redis broker: closed');
    await this.pub.publish(channel, Buffer.from(encodeMessage(msg)));
  }

  async subscribe(
    channels: string | readonly string[],
    onMessage: (m: ClusterMessage) => void,
  ): Promise<void> {
    if (this.closed) throw new Error('redis broker: closed');
    const list = typeof channels === 'string' ? [channels] : [...channels];
    for (const c of list) this.handlers.set(c, onMessage);
    if (list.length > 0) await this.sub.subscribe(...list);
  }

  async unsubscribe(channels: readonly string[]): Promise<void> {
    if (this.closed || channels.length === 0) return;
    for (const c of channels) this.handlers.delete(c);
    await this.sub.unsubscribe(...channels);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.handlers.clear();
    await Promise.all([quit(this.pub), quit(this.sub)]);
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

  private lost(which: 'publisher' | 'subscriber'): void {
    if (this.closed) return;
    if (which === 'publisher') this.pubReady = false;
    else {
      this.subReady = false;
      this.subGeneration++;
    }
    this.state.set(false, this.lastError ?? `redis ${which}: connection closed`);
  }

  private confirmSubscriptions(): void {
    if (this.closed) return;
    const generation = this.subGeneration;
    const names = [...this.handlers.keys()];
    const chunks: Promise<unknown>[] = [];
    for (let i = 0; i < names.length; i += 1000) chunks.push(this.sub.subscribe(...names.slice(i, i + 1000)));
    const done = Promise.all(chunks);
    done.then(
      () => {
        if (generation !== this.subGeneration || this.closed) return;
        this.subReady = true;
        this.update();
      },
      (err: Error) => this.state.set(false, `redis subscriber: re-subscribe failed: ${err.message}`),
    );
  }

  private update(): void {
    if (this.closed) return;
    if (this.pubReady && this.subReady) {
      this.lastError = undefined;
      this.state.set(true);
    } else this.state.set(false, this.lastError ?? 'redis: connecting');
  }
}

const quit = quitRedis;
