import type { ClusterLink, ClusterNode, IdempotencyKeys, Operation } from '../gateway/cluster-link.js';
import type { HandedSession } from '../gateway/types.js';
import type { LabelQuery, Target } from '../hub/member.js';
import { PylonError } from '../protocol/errors.js';
import type { WheelTimer } from '../timer/wheel.js';
import type { Broker } from './broker.js';
import { Interest } from './interest.js';
import { type ClusterNodeOptions, type DispatchEntry, Membership } from './membership.js';
import { type ClusterMessage, channels } from './messages.js';
import type { ClusterStats, Registry } from './registry.js';
import { checkStoreReach, forEachChunked } from './support.js';

export type { ClusterNodeOptions, DispatchEntry } from './membership.js';

export interface ClusterOptions {
  broker: Broker;
  registry: Registry;
  node?: ClusterNodeOptions;
  /** A node that misses heartbeats for this long is forgotten (ms). Heartbeats every ttl/3. Default 15 s. */
  ttl?: number;
  /** Channel prefix. Default "pylon:". */
  prefix?: string;
  /**
   * qos 1 needs one message store that every node of the cluster reaches (stored on the node that
   * accepts a push, sent by the nodes holding the users). The cluster refuses to start when the
   * store is known not to reach as far as the broker (memory across processes, SQLite across
   * machines). Set this to skip the check (e.g. a custom shared store, or no qos 1 at all).
   */
  sharedStore?: boolean;
  /** Labels per node kept in the registry's stats (the largest). Default 1000. */
  maxLabelsInStats?: number;
  /**
   * After the broker comes back, local users' inboxes are read again at once and once more this
   * much later (ms): store reads that were in flight during the outage may fail only later, and
   * a failed read is not retried by itself when nothing is in flight. Default 5 s; 0: no second read.
   */
  recheckAfter?: number;
  /**
   * A node keeps a label's channel this long after its last member left (ms), so that a label
   * emptied and filled again is not unsubscribed and subscribed in between. Default 2 s.
   */
  labelLinger?: number;
}

/** What monitoring reads: is the cluster link usable, and what went through it. */
export interface ClusterStatus {
  node: string;
  /** Broker and registry both up. While not, pushes reach this node's connections only. */
  up: boolean;
  reason?: string;
  broker: { up: boolean; reason?: string; since: string };
  registry: { up: boolean; reason?: string; since: string };
  /** Times the broker or the registry went down. */
  outages: number;
  published: number;
  received: number;
  publishFailures: number;
  registryFailures: number;
  /** Times this node re-sent its users to the registry and re-read the store after an outage. */
  resyncs: number;
  /** Label channels this node is subscribed to (the labels it holds members of). */
  labelChannels: number;
  /** Pushes received twice (on two of their labels' channels) and run once. */
  duplicates: number;
}

/** The cluster a gateway joined, if it is one of these (for the admin API). */
export function clusterOf(gateway: { readonly cluster?: ClusterLink | undefined }): Cluster | undefined {
  return gateway.cluster instanceof Cluster ? gateway.cluster : undefined;
}

/**
 * The cluster adapter: joins a gateway to other gateways through a Broker (messages) and a
 * Registry (who is where). Every operation runs first on the node that accepted it; `publish`
 * carries it to the nodes it concerns, which run it through `ClusterNode.run`:
 * - to a user/users → only the nodes holding them (registry); a connection → its node (the id's
 *   prefix); labels → the channels of the labels, which a node subscribes to while it holds
 *   members of them (interest routing, src/cluster/interest.ts); `{all: true}` → every node;
 * - qos 1 to users → the accepting node stored it (shared store) and sent it to its own
 *   connections; the nodes holding the users get a nudge (`qos1`) and send it from the store;
 *   qos 1 to labels → each node stores it for its members under the push's id, and the store's
 *   append is idempotent by id: a user on two nodes gets one seq;
 * - kick and label changes → the nodes of the user; bans and revocations → every node.
 * Everything is at most once (Broker): when the broker or registry is away, local delivery goes
 * on, qos-0 pushes that could not leave this node are reported as failed, and when they come
 * back each node re-registers its users and re-reads the store for them (no qos-1 loss).
 */
export class Cluster implements ClusterLink {
  /** Resolves once subscribed and registered (or after logging why not; it retries by itself). */
  ready: Promise<void> = Promise.resolve();
  private gateway: ClusterNode | undefined;
  private id = '';
  private readonly ch: ReturnType<typeof channels>;
  private membership: Membership | undefined;
  private interest: Interest | undefined;
  private stopped = false;
  /** qos-1 users whose nudge could not be published: re-sent when the broker is back. */
  private unsent = new Set<string>();
  private retryTimer: WheelTimer | undefined;
  /** Ids of the label pushes run lately, to run a push that came on two label channels once. */
  private readonly recent = new Set<string>();
  private counters = {
    outages: 0,
    published: 0,
    received: 0,
    publishFailures: 0,
    registryFailures: 0,
    resyncs: 0,
    duplicates: 0,
  };

  constructor(private readonly options: ClusterOptions) {
    this.ch = channels(options.prefix ?? 'pylon:');
  }

  get broker(): Broker {
    return this.options.broker;
  }

  get registry(): Registry {
    return this.options.registry;
  }

  /** Idempotency keys live in the registry: one window for every node. */
  get keys(): IdempotencyKeys {
    return this.options.registry;
  }

  /** This node's id (the gateway's nodeId). */
  get nodeId(): string {
    return this.id;
  }

  attach(gateway: ClusterNode): void {
    if (this.gateway) throw new Error('cluster: already attached to a gateway');
    if (this.options.sharedStore !== true) checkStoreReach(gateway.store, this.broker.reach, gateway.logger);
    this.gateway = gateway;
    this.id = gateway.nodeId;
    const o = this.options;
    const membership = new Membership(gateway, this.registry, {
      ttl: o.ttl ?? 15_000,
      ...(o.node ? { node: o.node } : {}),
      ...(o.maxLabelsInStats !== undefined ? { maxLabelsInStats: o.maxLabelsInStats } : {}),
      counters: this.counters,
      log: (msg, err, level) => this.log(msg, err, level),
    });
    this.membership = membership;
    this.interest = new Interest(this.broker, gateway, {
      channel: this.ch.label,
      handler: (m) => this.receive(m),
      linger: o.labelLinger ?? 2000,
      log: (msg, err) => this.log(msg, err, 'debug'),
    });
    this.watch('broker', this.broker.health);
    this.watch('registry', this.registry.health);
    this.ready = this.start(membership).catch((err: unknown) => {
      membership.needResync = true;
      gateway.logger.error({ err, node: this.id }, 'cluster: could not join; retrying on the next heartbeat');
    });
  }

  async publish(op: Operation): Promise<void> {
    if (op.op === 'deny') {
      await this.send(this.ch.all, { t: 'op', op, origin: this.id }, 0);
      return;
    }
    if (op.op === 'post') {
      await this.route({ connection: op.session }, { t: 'op', op, origin: this.id });
      return;
    }
    if (op.op !== 'push') {
      await this.route(op.op === 'kick' ? op.target : { user: op.user }, { t: 'op', op, origin: this.id });
      return;
    }
    const target = op.target;
    const qos = op.options.qos ?? 0;
    const m = (t: Target): ClusterMessage => ({
      t: 'op',
      op: t === target ? op : { ...op, target: t },
      origin: this.id,
    });
    if ('connection' in target) {
      const node = nodeOfConnection(target.connection);
      if (node !== undefined && node !== this.id) await this.send(this.ch.node(node), m(target), qos);
      return;
    }
    if ('all' in target) {
      await this.send(this.ch.all, m(target), qos);
      return;
    }
    if ('labels' in target) {
      await Promise.all(labelChannels(target.labels, this.ch).map((c) => this.send(c, m(target), qos)));
      return;
    }
    const users = 'user' in target ? [target.user] : target.users;
    const byNode = await this.locate(users);
    const sends: Promise<void>[] = [];
    if (byNode === undefined) {
      // Registry away: every node gets it and keeps what is for its own users.
      const msg: ClusterMessage = qos === 1 ? nudge(users, this.id, op) : m(target);
      sends.push(this.send(this.ch.all, msg, qos, users));
    } else {
      for (const [node, list] of byNode) {
        if (node === this.id) continue;
        const t: Target = list.length === 1 ? { user: list[0] as string } : { users: list };
        const msg: ClusterMessage = qos === 1 ? nudge(list, this.id, op) : m(t);
        sends.push(this.send(this.ch.node(node), msg, qos, list));
      }
    }
    await Promise.all(sends);
  }

  async detach(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.retryTimer?.cancel();
    await this.ready;
    this.interest?.stop();
    await this.membership?.stop();
    await Promise.allSettled([this.broker.close(), this.registry.close()]);
  }

  status(): ClusterStatus {
    const b = this.broker.health;
    const r = this.registry.health;
    const s: ClusterStatus = {
      node: this.id,
      up: b.up && r.up,
      broker: { up: b.up, since: new Date(b.since).toISOString() },
      registry: { up: r.up, since: new Date(r.since).toISOString() },
      ...this.counters,
      labelChannels: this.interest?.size ?? 0,
    };
    if (b.reason !== undefined) s.broker.reason = b.reason;
    if (r.reason !== undefined) s.registry.reason = r.reason;
    if (!s.up) s.reason = b.up ? `registry down: ${r.reason}` : `broker down: ${b.reason}`;
    return s;
  }

  /** Cluster-wide: live nodes with their last reports, connections, distinct online users, labels. */
  stats(): Promise<ClusterStats> {
    return this.registry.stats();
  }

  /**
   * Live gateways ordered by load (fewest connections first), with the user's current nodes and
   * then the node it was last seen on first (to resume a session there after a flash disconnect).
   */
  dispatch(user?: string): Promise<DispatchEntry[]> {
    return this.member().dispatch(user);
  }

  // ---- inside ----

  private async start(membership: Membership): Promise<void> {
    membership.start();
    const handler = (m: ClusterMessage) => this.receive(m);
    await this.broker.subscribe([this.ch.node(this.id), this.ch.all], handler);
    this.interest?.start();
    await membership.join();
  }

  /** To every other node, in messages of at most 1,000 sessions. */
  async handOffSessions(sessions: HandedSession[]): Promise<void> {
    for (let i = 0; i < sessions.length; i += 1000) {
      await this.send(this.ch.all, { t: 'sessions', sessions: sessions.slice(i, i + 1000), origin: this.id });
    }
  }

  private member(): Membership {
    if (this.membership === undefined) throw new Error('cluster: not attached to a gateway');
    return this.membership;
  }

  private receive(m: ClusterMessage): void {
    const g = this.gateway;
    if (g === undefined || m.origin === this.id || this.stopped) return;
    this.counters.received++;
    try {
      switch (m.t) {
        case 'op':
          if (m.op.op === 'push' && 'labels' in m.op.target && this.seen(m.op.id)) return;
          g.run(m.op).catch((err: unknown) =>
            this.log(`a ${m.op.op} from node ${m.origin} failed here`, err),
          );
          return;
        case 'qos1':
          for (const u of m.users) g.notify(u, m.trace);
          return;
        case 'sessions':
          g.adoptSessions(m.sessions);
          return;
      }
    } catch (err) {
      this.log(`a ${m.t} from node ${m.origin} failed here`, err);
    }
  }

  /** Whether a label push came already (on another of its labels' channels). Remembers the last 10,000. */
  private seen(id: string): boolean {
    if (this.recent.has(id)) {
      this.counters.duplicates++;
      return true;
    }
    this.recent.add(id);
    if (this.recent.size > 10_000) this.recent.delete(this.recent.values().next().value as string);
    return false;
  }

  /** Publish; a qos-0 push that cannot leave this node is reported to the caller, a qos-1 nudge is kept for later. */
  private async send(channel: string, m: ClusterMessage, qos: 0 | 1 = 0, users?: string[]): Promise<void> {
    try {
      await this.broker.publish(channel, m);
      this.counters.published++;
    } catch (err) {
      this.counters.publishFailures++;
      if (m.t === 'qos1') {
        // Stored already: it goes out when the broker is back (or when the users reconnect).
        for (const u of users ?? []) if (this.unsent.size < 100_000) this.unsent.add(u);
        this.log('qos-1 nudge not published; re-sent when the broker is back', err, 'debug');
        // A failure without an outage (a lost reply) gets no "back" event: retry on a timer too.
        if (this.broker.health.up && this.retryTimer === undefined && this.gateway) {
          this.retryTimer = this.gateway.after(1000, () => this.flushUnsent());
        }
        return;
      }
      const reason = err instanceof Error ? err.message : String(err);
      throw new PylonError(
        'UNAVAILABLE',
        `cluster: delivered on this node only, the other nodes were not reached (${reason})${qos === 1 ? "; stored for this node's users only" : ''}`,
        { cause: err },
      );
    }
  }

  /** Users → the live nodes holding them; undefined while the registry is away. */
  private async locate(users: readonly string[]): Promise<Map<string, string[]> | undefined> {
    try {
      return await this.registry.locate(users);
    } catch (err) {
      this.counters.registryFailures++;
      this.log('registry lookup failed; sending to every node', err, 'debug');
      return undefined;
    }
  }

  private async route(target: { user: string } | { connection: string }, m: ClusterMessage): Promise<void> {
    if ('connection' in target) {
      const node = nodeOfConnection(target.connection);
      if (node !== undefined && node !== this.id) await this.send(this.ch.node(node), m);
      return;
    }
    const nodes = await this.locate([target.user]);
    if (nodes === undefined) await this.send(this.ch.all, m);
    else
      await Promise.all(
        [...nodes.keys()].filter((n) => n !== this.id).map((n) => this.send(this.ch.node(n), m)),
      );
  }

  /** After the broker was away: nudges it could not publish go out, and every local user is re-read from the store. */
  private catchUp(): void {
    const g = this.gateway;
    if (g === undefined || this.stopped) return;
    this.counters.resyncs++;
    this.flushUnsent();
    forEachChunked([...g.localUsers()], 500, (u) => g.notify(u));
  }

  /** Publishes the qos-1 nudges that failed, to every node (they may have moved meanwhile). */
  private flushUnsent(): void {
    this.retryTimer = undefined;
    if (this.unsent.size === 0 || this.stopped) return;
    const users = [...this.unsent];
    this.unsent.clear();
    this.send(this.ch.all, { t: 'qos1', users, origin: this.id }, 1, users).catch(() => {});
  }

  private watch(what: 'broker' | 'registry', health: Broker['health']): void {
    let downAt = 0;
    health.onChange((up, reason) => {
      const g = this.gateway;
      if (g === undefined || this.stopped) return;
      if (!up) {
        downAt = Date.now();
        this.counters.outages++;
        g.logger.warn(
          { node: this.id, reason },
          `cluster: ${what} down; pushes reach this node's connections only`,
        );
        return;
      }
      g.logger.warn({ node: this.id, downMs: Date.now() - downAt }, `cluster: ${what} back`);
      if (what === 'broker') {
        this.catchUp();
        const again = this.options.recheckAfter ?? 5000;
        if (again > 0) g.after(again, () => this.catchUp());
      } else {
        this.member().needResync = true;
        void this.member().beat();
      }
    });
  }

  private log(msg: string, err: unknown, level: 'warn' | 'debug' = 'warn'): void {
    this.gateway?.logger[level]({ err, node: this.id }, `cluster: ${msg}`);
  }
}

/**
 * The channels a label push goes to: a member has every `all` label, so the first one's channel
 * reaches every node with members; `any` needs each label's channel (a node on two of them runs
 * the push once); a query of `not` only matches nodes without labels too: every node.
 */
export function labelChannels(q: LabelQuery, ch: { all: string; label(l: string): string }): string[] {
  if (q.all !== undefined && q.all.length > 0) return [ch.label(q.all[0] as string)];
  if (q.any !== undefined && q.any.length > 0) return [...new Set(q.any)].map((l) => ch.label(l));
  return [ch.all];
}

/** The node of a connection id (`{nodeId}-{n}`). */
export function nodeOfConnection(connection: string): string | undefined {
  const i = connection.indexOf('-');
  return i > 0 ? connection.slice(0, i) : undefined;
}

/** The qos-1 nudge for the users of a push on one node, with the push's trace when it has one. */
function nudge(users: string[], origin: string, op: Extract<Operation, { op: 'push' }>): ClusterMessage {
  const traceparent = op.options.trace;
  return traceparent === undefined
    ? { t: 'qos1', users, origin }
    : { t: 'qos1', users, origin, trace: { push: op.id, traceparent } };
}
