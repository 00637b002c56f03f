import type { IdempotencyKeys } from '../gateway/cluster-link.js';
import { MemoryKeys } from '../gateway/idempotency.js';
import { ALWAYS_UP, type Health } from './health.js';

/** A gateway node as the cluster knows it. */
export interface NodeInfo {
  /** The gateway's nodeId: the prefix of its connection ids. */
  id: string;
  /** For people: hostname:pid unless configured. */
  name: string;
  /** Where clients connect (what the dispatcher hands out), when the node listens there. */
  wsUrl?: string;
  tcpUrl?: string;
  /** Wall-clock ms. */
  startedAt: number;
}

/** What a node reports on each heartbeat. */
export interface NodeLoad {
  /** Open connections: the load the dispatcher orders by. */
  connections: number;
  /** The node's own stats (gateway.stats() and more), as it last reported them. */
  stats?: Record<string, unknown>;
  /** Connections per label on the node (the largest labels, capped by the cluster). */
  labels?: Record<string, number>;
}

export interface LiveNode extends NodeInfo {
  load: NodeLoad;
  /** Wall-clock ms of its last heartbeat. */
  seenAt: number;
}

export interface OnlineChange {
  user: string;
  /** Whether the user now has at least one open connection on the node. */
  online: boolean;
}

export interface ClusterStats {
  nodes: LiveNode[];
  /** Open connections on live nodes, summed (as of their last reports). */
  connections: number;
  /** Distinct users with a connection on a live node. */
  online: number;
  /** Connections per label across the live nodes (each node's largest labels). */
  labels: Record<string, number>;
}

/**
 * Who is online where, and which nodes are alive. Nodes join with a TTL and heartbeat well
 * within it; a node that stops (SIGKILL, partition) is forgotten once its TTL has passed since
 * its last heartbeat, and its users stop counting as online: `nodesOf`, `locate` and `stats`
 * never answer a dead node. A node leaves explicitly on a clean shutdown.
 *
 * Separate from the Broker on purpose: a registry stores state, a broker moves messages. It also
 * holds the idempotency keys of pushes (claim/settle/release), one window for every node.
 */
export interface Registry extends IdempotencyKeys {
  readonly health: Health;
  /** Register (or re-register) `node`, alive for `ttlMs` from now unless it heartbeats. */
  join(node: NodeInfo, ttlMs: number): Promise<void>;
  /**
   * Extend the node's life by its TTL and record its load. Resolves false when the registry had
   * forgotten the node (its TTL passed, or the registry lost its data): the node must join again
   * and send all its users (`usersOn` tells what the registry still has).
   */
  heartbeat(node: string, load: NodeLoad): Promise<boolean>;
  /** Forget the node and its users now (clean shutdown). */
  leave(node: string): Promise<void>;
  /**
   * Record users coming online or going offline on `node`, in one batch, and (when given) the
   * node's current number of open connections.
   */
  setOnline(node: string, changes: readonly OnlineChange[], connections?: number): Promise<void>;
  /** The live nodes where `user` has connections. */
  nodesOf(user: string): Promise<string[]>;
  /** The live nodes holding any of `users`, each with the users it holds. */
  locate(users: readonly string[]): Promise<Map<string, string[]>>;
  /** The node `user` was last seen on (connect or disconnect), for a short while; for the dispatcher. */
  lastNodeOf(user: string): Promise<string | undefined>;
  /** The users the registry has on `node` (to resynchronise after an outage). */
  usersOn(node: string): Promise<string[]>;
  /** The live nodes with their info and last load. */
  nodes(): Promise<LiveNode[]>;
  stats(): Promise<ClusterStats>;
  close(): Promise<void>;
}

/** How long `lastNodeOf` remembers a user's node by default: the resume window. */
export const DEFAULT_LAST_NODE_TTL = 120_000;

/** Sums the live nodes' reports into cluster stats. */
export function summarize(nodes: LiveNode[], online: number): ClusterStats {
  let connections = 0;
  const labels: Record<string, number> = {};
  for (const n of nodes) {
    connections += n.load.connections;
    for (const [label, count] of Object.entries(n.load.labels ?? {}))
      labels[label] = (labels[label] ?? 0) + count;
  }
  return { nodes, connections, online, labels };
}

interface LocalNode {
  info: NodeInfo;
  ttl: number;
  expiresAt: number;
  seenAt: number;
  load: NodeLoad;
  users: Set<string>;
}

/**
 * The registry in memory: for several gateways in one process (tests), and held by the primary
 * process for `--workers` (workers reach it over IPC). Same semantics as the Redis registry,
 * including TTL expiry, on an injectable clock.
 */
export class LocalRegistry implements Registry {
  readonly health: Health = ALWAYS_UP;
  private readonly byNode = new Map<string, LocalNode>();
  private readonly byUser = new Map<string, Set<string>>();
  private readonly last = new Map<string, { node: string; until: number }>();
  private readonly lastTtl: number;
  private readonly now: () => number;
  /** Idempotency keys of pushes ("push:…"). */
  private readonly keys: MemoryKeys;
  /** Every other key (e.g. "undelivered:…" claims): their own bound, so they never push out push keys. */
  private readonly otherKeys: MemoryKeys;

  constructor(options: { lastNodeTtl?: number; now?: () => number } = {}) {
    this.lastTtl = options.lastNodeTtl ?? DEFAULT_LAST_NODE_TTL;
    this.now = options.now ?? Date.now;
    this.keys = new MemoryKeys(100_000, this.now);
    this.otherKeys = new MemoryKeys(200_000, this.now);
  }

  claim(key: string, value: string, ttlMs: number): Promise<string | undefined> {
    return this.keysOf(key).claim(key, value, ttlMs);
  }

  settle(key: string, value: string, ttlMs: number): Promise<void> {
    return this.keysOf(key).settle(key, value, ttlMs);
  }

  release(key: string): Promise<void> {
    return this.keysOf(key).release(key);
  }

  private keysOf(key: string): MemoryKeys {
    return key.startsWith('push:') ? this.keys : this.otherKeys;
  }

  async join(node: NodeInfo, ttlMs: number): Promise<void> {
    this.sweep();
    const now = this.now();
    const existing = this.byNode.get(node.id);
    if (existing) {
      existing.info = { ...node };
      existing.ttl = ttlMs;
      existing.expiresAt = now + ttlMs;
      existing.seenAt = now;
      return;
    }
    const load = { connections: 0 };
    this.byNode.set(node.id, {
      info: { ...node },
      ttl: ttlMs,
      expiresAt: now + ttlMs,
      seenAt: now,
      load,
      users: new Set(),
    });
  }

  async heartbeat(node: string, load: NodeLoad): Promise<boolean> {
    this.sweep();
    const n = this.byNode.get(node);
    if (n === undefined) return false;
    const now = this.now();
    n.expiresAt = now + n.ttl;
    n.seenAt = now;
    n.load = load;
    return true;
  }

  async leave(node: string): Promise<void> {
    this.forget(node);
  }

  async setOnline(node: string, changes: readonly OnlineChange[], connections?: number): Promise<void> {
    const n = this.byNode.get(node);
    if (n !== undefined && connections !== undefined) n.load = { ...n.load, connections };
    const until = this.now() + this.lastTtl;
    for (const { user, online } of changes) {
      this.last.set(user, { node, until });
      if (online && n !== undefined) {
        n.users.add(user);
        let nodes = this.byUser.get(user);
        if (nodes === undefined) {
          nodes = new Set();
          this.byUser.set(user, nodes);
        }
        nodes.add(node);
      } else if (!online) {
        n?.users.delete(user);
        this.unlink(user, node);
      }
    }
  }

  async nodesOf(user: string): Promise<string[]> {
    this.sweep();
    return [...(this.byUser.get(user) ?? [])];
  }

  async locate(users: readonly string[]): Promise<Map<string, string[]>> {
    this.sweep();
    const out = new Map<string, string[]>();
    for (const user of new Set(users)) {
      for (const node of this.byUser.get(user) ?? []) {
        const list = out.get(node);
        if (list) list.push(user);
        else out.set(node, [user]);
      }
    }
    return out;
  }

  async lastNodeOf(user: string): Promise<string | undefined> {
    const l = this.last.get(user);
    if (l === undefined) return undefined;
    if (l.until < this.now()) {
      this.last.delete(user);
      return undefined;
    }
    return l.node;
  }

  async usersOn(node: string): Promise<string[]> {
    return [...(this.byNode.get(node)?.users ?? [])];
  }

  async nodes(): Promise<LiveNode[]> {
    this.sweep();
    return [...this.byNode.values()].map((n) => ({ ...n.info, load: n.load, seenAt: n.seenAt }));
  }

  async stats(): Promise<ClusterStats> {
    return summarize(await this.nodes(), this.byUser.size);
  }

  async close(): Promise<void> {}

  /** Forget nodes whose TTL has passed, with their users. */
  sweep(): void {
    const now = this.now();
    for (const [id, n] of this.byNode) if (n.expiresAt < now) this.forget(id);
    if (this.last.size > 10_000) for (const [u, l] of this.last) if (l.until < now) this.last.delete(u);
  }

  private forget(node: string): void {
    const n = this.byNode.get(node);
    if (n === undefined) return;
    this.byNode.delete(node);
    for (const user of n.users) this.unlink(user, node);
  }

  private unlink(user: string, node: string): void {
    const nodes = this.byUser.get(user);
    if (nodes === undefined) return;
    nodes.delete(node);
    if (nodes.size === 0) this.byUser.delete(user);
  }
}
