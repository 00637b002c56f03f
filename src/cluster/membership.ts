import { hostname } from 'node:os';
import type { ClusterNode } from '../gateway/cluster-link.js';
import type { WheelTimer } from '../timer/wheel.js';
import { processStats } from '../util/process-stats.js';
import type { LiveNode, NodeInfo, NodeLoad, OnlineChange, Registry } from './registry.js';
import { labelSnapshot, nodeUrls } from './support.js';

export interface ClusterNodeOptions {
  /** For people (stats, logs). Default hostname:pid. */
  name?: string;
  /** The host clients reach this node at. Default: the address the listeners are bound to (a wildcard: the hostname). */
  address?: string;
  /** Override the advertised URLs (e.g. behind a load balancer or TLS terminator). */
  wsUrl?: string;
  tcpUrl?: string;
  /** The WebSocket path. Default /ws. */
  wsPath?: string;
  /** The node's load for the dispatcher. Default: its open connections. */
  load?: () => number;
}

export interface DispatchEntry {
  node: string;
  name: string;
  wsUrl?: string;
  tcpUrl?: string;
  connections: number;
  /** The user has connections on this node now. */
  current?: true;
  /** The user was last seen on this node (flash-disconnect resume). */
  previous?: true;
}

export interface MembershipCounters {
  registryFailures: number;
  resyncs: number;
}

export interface MembershipOptions {
  ttl: number;
  node?: ClusterNodeOptions;
  maxLabelsInStats?: number;
  counters: MembershipCounters;
  log(msg: string, err: unknown, level?: 'warn' | 'debug'): void;
}

/**
 * One node's side of the registry: joins with a TTL, heartbeats on the gateway's wheel with its
 * load, reports users coming and going (connect/disconnect events, batched per event-loop turn),
 * and re-registers exactly its users when the registry forgot it or a write failed.
 */
export class Membership {
  readonly name: string;
  needResync = false;
  private timer: WheelTimer | undefined;
  private dirty = new Set<string>();
  private flushScheduled = false;
  private flushing: Promise<void> | undefined;
  private beating = false;
  private beatAgain = false;
  private stopped = false;
  private infoSent = '';
  private unwatch: (() => void) | undefined;

  constructor(
    private readonly gateway: ClusterNode,
    private readonly registry: Registry,
    private readonly o: MembershipOptions,
  ) {
    this.name = o.node?.name ?? `${hostname()}:${process.pid}`;
  }

  private get id(): string {
    return this.gateway.nodeId;
  }

  /** Listens to the gateway and starts the heartbeat; `join` registers. */
  start(): void {
    const g = this.gateway;
    this.unwatch = g.watchUsers((user) => this.touch(user));
    this.timer = g.every(Math.max(100, Math.floor(this.o.ttl / 3)), () => void this.beat());
    // The gateway announces no 'listening': watch for its addresses, to register the URLs the
    // dispatcher hands out as soon as they exist.
    let checks = 0;
    const watch = g.every(50, () => {
      if (this.stopped || ++checks > 1200) watch.cancel();
      else if (g.addresses.tcp !== undefined || g.addresses.ws !== undefined) {
        watch.cancel();
        void this.beat();
      }
    });
  }

  /** Stops reporting and leaves the registry (its TTL would forget the node too). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.unwatch?.();
    this.unwatch = undefined;
    await this.flushing;
    try {
      await this.registry.leave(this.id);
    } catch (err) {
      this.o.log('could not leave the registry (the TTL will)', err);
    }
  }

  async join(): Promise<void> {
    const info = this.info();
    await this.registry.join(info, this.o.ttl);
    this.infoSent = JSON.stringify(info);
  }

  async beat(): Promise<void> {
    if (this.stopped) return;
    if (this.beating) {
      this.beatAgain = true;
      return;
    }
    this.beating = true;
    try {
      if (JSON.stringify(this.info()) !== this.infoSent) await this.join();
      const known = await this.registry.heartbeat(this.id, this.load(true));
      if (!known || this.needResync)
        await this.resync(known ? 'after a registry error' : 'the registry had forgotten this node');
    } catch (err) {
      this.o.counters.registryFailures++;
      this.needResync = true;
      this.o.log('heartbeat failed', err, 'debug');
    } finally {
      this.beating = false;
      if (this.beatAgain) {
        this.beatAgain = false;
        void this.beat();
      }
    }
  }

  /**
   * Live gateways ordered by load (fewest connections first), with the user's current nodes and
   * then the node it was last seen on first (to resume a session there after a flash disconnect).
   */
  async dispatch(user?: string): Promise<DispatchEntry[]> {
    let nodes: LiveNode[];
    try {
      nodes = await this.registry.nodes();
    } catch {
      nodes = [];
    }
    if (!nodes.some((n) => n.id === this.id))
      nodes.push({ ...this.info(), load: this.load(false), seenAt: Date.now() });
    const current = new Set(user === undefined ? [] : await this.registry.nodesOf(user).catch(() => []));
    const previous =
      user === undefined || current.size > 0
        ? undefined
        : await this.registry.lastNodeOf(user).catch(() => undefined);
    const rank = (n: LiveNode) => (current.has(n.id) ? 0 : n.id === previous ? 1 : 2);
    nodes.sort(
      (a, b) => rank(a) - rank(b) || a.load.connections - b.load.connections || (a.id < b.id ? -1 : 1),
    );
    const seen = new Set<string>();
    const out: DispatchEntry[] = [];
    for (const n of nodes) {
      const key = `${n.wsUrl ?? ''} ${n.tcpUrl ?? ''}`;
      if (key !== ' ' && seen.has(key)) continue; // workers of one machine share their ports
      seen.add(key);
      const e: DispatchEntry = { node: n.id, name: n.name, connections: n.load.connections };
      if (n.wsUrl !== undefined) e.wsUrl = n.wsUrl;
      if (n.tcpUrl !== undefined) e.tcpUrl = n.tcpUrl;
      if (current.has(n.id)) e.current = true;
      else if (n.id === previous) e.previous = true;
      out.push(e);
    }
    return out;
  }

  private touch(user: string): void {
    if (this.stopped) return;
    this.dirty.add(user);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Sends the users whose presence here changed since the last flush, in one batch. */
  private flush(): void {
    this.flushScheduled = false;
    const g = this.gateway;
    if (this.flushing !== undefined || this.dirty.size === 0 || this.stopped) return;
    const changes = [...this.dirty].map((user) => ({ user, online: g.online(user) }));
    this.dirty = new Set();
    this.flushing = this.registry
      .setOnline(this.id, changes, g.stats().connections)
      .then(
        () => {
          // A qos-1 push stored elsewhere while this registration was in flight found no node
          // for the user: read the store once more now that the registry knows.
          for (const c of changes) if (c.online) g.notify(c.user);
        },
        (err: unknown) => {
          this.o.counters.registryFailures++;
          this.needResync = true;
          this.o.log('registry update failed; resynchronising on the next heartbeat', err, 'debug');
        },
      )
      .finally(() => {
        this.flushing = undefined;
        if (this.dirty.size > 0 && !this.flushScheduled) {
          this.flushScheduled = true;
          setImmediate(() => this.flush());
        }
      });
  }

  /** Re-registers this node and exactly its current users (adds what is missing, removes what is stale). */
  private async resync(why: string): Promise<void> {
    const g = this.gateway;
    this.needResync = false;
    this.o.counters.resyncs++;
    g.logger.info({ node: this.id, why }, 'cluster: resynchronising the registry');
    await this.join();
    const had = new Set(await this.registry.usersOn(this.id));
    const now = g.localUsers();
    const changes: OnlineChange[] = [];
    for (const u of now) if (!had.has(u)) changes.push({ user: u, online: true });
    for (const u of had) if (!now.has(u)) changes.push({ user: u, online: false });
    await this.registry.setOnline(this.id, changes, g.stats().connections);
  }

  private info(): NodeInfo {
    const g = this.gateway;
    const o = this.o.node ?? {};
    return { id: this.id, name: this.name, startedAt: g.startedAt, ...nodeUrls(g.addresses, o) };
  }

  private load(full: boolean): NodeLoad {
    const g = this.gateway;
    const stats = g.stats();
    const connections = this.o.node?.load?.() ?? stats.connections;
    if (!full) return { connections };
    const uptime = (Date.now() - g.startedAt) / 1000;
    return {
      connections,
      stats: { node: this.name, id: this.id, uptime, ...stats, process: processStats(g) },
      labels: labelSnapshot(g.labelCounts(), this.o.maxLabelsInStats ?? 1000),
    };
  }
}
