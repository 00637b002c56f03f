import { ALWAYS_UP, type Health } from './health.js';
import { type ClusterMessage, decodeMessage, encodeMessage } from './messages.js';

/**
 * How far a broker reaches, and so how far the message store must be shared for qos 1:
 * `process` (several gateways in one process), `machine` (worker processes of one machine),
 * `network` (many machines).
 */
export type Reach = 'process' | 'machine' | 'network';

/**
 * Pub/sub between the nodes of a cluster. **At most once**: a message published while a
 * subscriber is disconnected (or while the broker itself is down) is lost for that subscriber,
 * and nothing is re-sent; a message is never delivered twice. Order is kept per channel and
 * per publisher. Whatever must not be lost goes through the shared message store (qos 1), and
 * the cluster resynchronises from the store when the broker comes back.
 *
 * Deliberately only pub/sub: who is online where lives in the Registry, stored messages in the
 * MessageStore.
 */
export interface Broker {
  readonly reach: Reach;
  /** Up while messages can be published and are received. */
  readonly health: Health;
  /** Publish to every current subscriber of `channel` (the publisher too, if it subscribed). Rejects while down. */
  publish(channel: string, msg: ClusterMessage): Promise<void>;
  /**
   * Resolves once subscribed; the subscription survives reconnections (also when this call
   * failed because the broker was down). One handler per channel.
   */
  subscribe(channels: string | readonly string[], onMessage: (m: ClusterMessage) => void): Promise<void>;
  /** Stops receiving on these channels. */
  unsubscribe(channels: readonly string[]): Promise<void>;
  /** Unsubscribes everything and releases the connections. */
  close(): Promise<void>;
}

/** What a LocalBus counted, per channel: messages published and bytes. */
export interface ChannelTraffic {
  messages: number;
  bytes: number;
}

/**
 * An in-process bus: several gateways in one process, each with its own LocalBroker over the
 * same bus (tests, and the in-memory default double). Messages are encoded and decoded as on a
 * real broker (so data that would not survive Redis fails here too) and delivered on a later
 * macrotask, never inside `publish`.
 */
export class LocalBus {
  /** Published messages and bytes by channel, for tests and benchmarks. */
  readonly traffic = new Map<string, ChannelTraffic>();
  private readonly subscribers = new Map<string, Set<(bytes: Uint8Array) => void>>();

  publish(channel: string, bytes: Uint8Array): void {
    const t = this.traffic.get(channel) ?? { messages: 0, bytes: 0 };
    t.messages++;
    t.bytes += bytes.length;
    this.traffic.set(channel, t);
    const subs = this.subscribers.get(channel);
    if (subs === undefined || subs.size === 0) return;
    const targets = [...subs];
    setImmediate(() => {
      for (const fn of targets) fn(bytes);
    });
  }

  subscribe(channel: string, fn: (bytes: Uint8Array) => void): void {
    let subs = this.subscribers.get(channel);
    if (subs === undefined) {
      subs = new Set();
      this.subscribers.set(channel, subs);
    }
    subs.add(fn);
  }

  unsubscribe(channel: string, fn: (bytes: Uint8Array) => void): void {
    this.subscribers.get(channel)?.delete(fn);
  }

  /** Messages published on channels starting with `prefix`, summed. */
  count(prefix = ''): number {
    let n = 0;
    for (const [ch, t] of this.traffic) if (ch.startsWith(prefix)) n += t.messages;
    return n;
  }

  resetTraffic(): void {
    this.traffic.clear();
  }
}

/** One node's handle on a LocalBus. */
export class LocalBroker implements Broker {
  readonly reach: Reach = 'process';
  readonly health: Health = ALWAYS_UP;
  private readonly subs = new Map<string, (bytes: Uint8Array) => void>();
  private closed = false;

  constructor(readonly bus: LocalBus) {}

  async publish(channel: string, msg: ClusterMessage): Promise<void> {
    if (this.closed) throw new Error('local broker: closed');
    this.bus.publish(channel, encodeMessage(msg));
  }

  async subscribe(
    channels: string | readonly string[],
    onMessage: (m: ClusterMessage) => void,
  ): Promise<void> {
    if (this.closed) throw new Error('local broker: closed');
    const fn = (bytes: Uint8Array) => {
      let m: ClusterMessage;
      try {
        m = decodeMessage(bytes);
      } catch {
        return; // not a cluster message: dropped, as RedisBroker does
      }
      onMessage(m);
    };
    for (const channel of typeof channels === 'string' ? [channels] : channels) {
      const previous = this.subs.get(channel);
      if (previous) this.bus.unsubscribe(channel, previous);
      this.subs.set(channel, fn);
      this.bus.subscribe(channel, fn);
    }
  }

  async unsubscribe(channels: readonly string[]): Promise<void> {
    for (const channel of channels) {
      const fn = this.subs.get(channel);
      if (fn === undefined) continue;
      this.subs.delete(channel);
      this.bus.unsubscribe(channel, fn);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const [channel, fn] of this.subs) this.bus.unsubscribe(channel, fn);
    this.subs.clear();
  }
}
