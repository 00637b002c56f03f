import type { ClusterNode } from '../gateway/cluster-link.js';
import type { WheelTimer } from '../timer/wheel.js';
import type { Broker } from './broker.js';
import type { ClusterMessage } from './messages.js';

export interface InterestOptions {
  /** The channel of a label. */
  channel(label: string): string;
  handler(m: ClusterMessage): void;
  /** ms a channel is kept after its label's last member left. */
  linger: number;
  log(msg: string, err: unknown): void;
}

/** Channels per SUBSCRIBE or UNSUBSCRIBE command. */
const CHUNK = 1000;

/**
 * Which label channels a node listens on: the labels it holds members of. The hub says when a
 * label gets its first member here and when it loses its last; changes of one event-loop turn
 * go to the broker in one command. An emptied label keeps its channel for `linger` ms (a label
 * that empties and fills again costs nothing), then is unsubscribed. A push published on a
 * label's channel before this node's SUBSCRIBE was confirmed does not reach it (at most once,
 * like every broker message); qos-1 members read their inbox when they connect.
 */
export class Interest {
  /** Label -> subscribed (or being subscribed). */
  private readonly held = new Set<string>();
  /** Labels without members here, by when they emptied. */
  private readonly emptied = new Map<string, number>();
  private toSubscribe = new Set<string>();
  private flushScheduled = false;
  private sweeper: WheelTimer | undefined;
  private unwatch: (() => void) | undefined;
  private stopped = false;

  constructor(
    private readonly broker: Broker,
    private readonly node: ClusterNode,
    private readonly o: InterestOptions,
  ) {}

  /** Label channels subscribed. */
  get size(): number {
    return this.held.size;
  }

  start(): void {
    this.unwatch = this.node.watchLabels((label, present) => this.change(label, present));
    for (const label of this.node.labelCounts().keys()) this.change(label, true);
    const every = Math.max(50, Math.floor(this.o.linger / 2));
    this.sweeper = this.node.every(every, () => this.sweep());
  }

  stop(): void {
    this.stopped = true;
    this.unwatch?.();
    this.sweeper?.cancel();
  }

  private change(label: string, present: boolean): void {
    if (this.stopped) return;
    if (!present) {
      if (this.held.has(label) || this.toSubscribe.has(label)) this.emptied.set(label, Date.now());
      return;
    }
    this.emptied.delete(label);
    if (this.held.has(label) || this.toSubscribe.has(label)) return;
    this.toSubscribe.add(label);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.stopped) return;
    const labels = [...this.toSubscribe];
    this.toSubscribe = new Set();
    for (const l of labels) this.held.add(l);
    for (let i = 0; i < labels.length; i += CHUNK) {
      const channels = labels.slice(i, i + CHUNK).map((l) => this.o.channel(l));
      // A failure while the broker is down is made good by the broker's re-subscribe when it is back.
      this.broker
        .subscribe(channels, this.o.handler)
        .catch((err: unknown) => this.o.log('label subscribe failed', err));
    }
  }

  /** Unsubscribes the labels empty for longer than `linger`. */
  private sweep(): void {
    if (this.emptied.size === 0 || this.stopped) return;
    const before = Date.now() - this.o.linger;
    const gone: string[] = [];
    for (const [label, at] of this.emptied) {
      if (at > before) continue;
      this.emptied.delete(label);
      if (this.toSubscribe.delete(label)) continue;
      if (this.held.delete(label)) gone.push(label);
    }
    for (let i = 0; i < gone.length; i += CHUNK) {
      const channels = gone.slice(i, i + CHUNK).map((l) => this.o.channel(l));
      this.broker.unsubscribe(channels).catch((err: unknown) => this.o.log('label unsubscribe failed', err));
    }
  }
}
