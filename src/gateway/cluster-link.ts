import type { Target } from '../hub/member.js';
import type { Logger } from '../log/logger.js';
import type { MessageStore } from '../store/store.js';
import type { WheelTimer } from '../timer/wheel.js';
import type { GatewayAddresses, GatewayStats, HandedSession, PushOptions, PushResult } from './types.js';

/**
 * What a cluster (several gateways joined through a broker, src/cluster) plugs into a gateway:
 * the gateway serves its own connections itself and hands the cluster what it accepted; the
 * cluster carries it to the other nodes that need it and calls back through `ClusterNode`.
 */
export interface ClusterLink {
  /** Called once by the gateway's constructor. */
  attach(node: ClusterNode): void;
  /**
   * A push this node accepted (already delivered to this node's connections; for qos 1 already
   * stored). Carries it to the other nodes: label and all targets to every node, user targets
   * to the nodes holding the users, qos 1 as a nudge to the nodes holding the users.
   */
  push(id: string, target: Target, type: string, data: unknown, options: PushOptions): Promise<void>;
  kick(target: { user: string } | { connection: string }, reason: string | undefined): void;
  updateUserLabels(user: string, change: { add?: string[]; remove?: string[] }): void;
  /** Called by gateway.close(). */
  detach(): Promise<void>;
  /**
   * This node is going away (a reload drains it, or a stop): hand its sessions to the other
   * nodes, which call `node.adoptSessions` so that its clients resume there. Optional.
   */
  handOffSessions?(sessions: HandedSession[]): Promise<void>;
}

/**
 * The gateway as its cluster sees it: what the cluster may ask of the node it is attached to,
 * and nothing else (not the Gateway class). The gateway implements it with an internal object.
 */
export interface ClusterNode {
  /** This gateway's id: the prefix of its connection ids. */
  readonly nodeId: string;
  /** Wall-clock start (ms since the epoch). */
  readonly startedAt: number;
  readonly logger: Logger;
  /** Where qos-1 messages wait (every node of a cluster must reach the same one). */
  readonly store: MessageStore;
  /** The listeners' addresses, once listening. */
  readonly addresses: GatewayAddresses;
  /** Stopped accepting (a reload or a stop drains it). */
  readonly draining: boolean;
  stats(): GatewayStats;
  /** Open connections per label. */
  labelCounts(): Map<string, number>;
  online(user: string): boolean;
  /** Users with an open connection on this node. */
  localUsers(): Set<string>;
  /** Calls `listener` with the user of each connection that opens or closes. Returns the unsubscribe. */
  watchUsers(listener: (user: string) => void): () => void;
  after(ms: number, fn: () => void): WheelTimer;
  every(ms: number, fn: () => void): WheelTimer;
  /** A push another node accepted: to this node's connections only. */
  pushLocal(target: Target, type: string, data: unknown, options: PushOptions): Promise<PushResult>;
  /** Close this node's connections of a user, or one of its connections. */
  kickLocal(target: { user: string } | { connection: string }, reason?: string): number;
  /** Change the labels of this node's connections of `user`. */
  updateUserLabelsLocal(user: string, change: { add?: string[]; remove?: string[] }): number;
  /** Sessions another node handed over as it went away. */
  adoptSessions(sessions: readonly HandedSession[]): void;
  /** New qos-1 messages for `user` were stored elsewhere: send them to this node's connections. */
  notify(user: string): void;
}
